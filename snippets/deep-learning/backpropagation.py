"""Backpropagation by hand for a two-layer network, checked against finite differences and autograd."""
from __future__ import annotations

import numpy as np
import torch

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)


# --8<-- [start:model]
def init_params(d_in: int, d_hidden: int, n_classes: int, rng) -> dict[str, np.ndarray]:
    """He-initialised weights for x -> Linear -> ReLU -> Linear -> softmax cross-entropy."""
    return {
        "W1": rng.normal(0, np.sqrt(2 / d_in), (d_in, d_hidden)),
        "b1": np.zeros(d_hidden),
        "W2": rng.normal(0, np.sqrt(2 / d_hidden), (d_hidden, n_classes)),
        "b2": np.zeros(n_classes),
    }


def forward(p: dict, X: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """Mean cross-entropy loss, plus the intermediates the backward pass needs."""
    z1 = X @ p["W1"] + p["b1"]                   # (N, H) pre-activation
    h = np.maximum(z1, 0.0)                      # (N, H) ReLU
    logits = h @ p["W2"] + p["b2"]               # (N, C)
    logits = logits - logits.max(axis=1, keepdims=True)      # numerically stable softmax
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(len(y)), y]).mean()
    return float(loss), {"X": X, "z1": z1, "h": h, "probs": probs, "y": y}


def backward(p: dict, cache: dict) -> dict[str, np.ndarray]:
    """Reverse-mode chain rule: one local Jacobian-vector product per operation, last to first."""
    X, z1, h, probs, y = (cache[k] for k in ("X", "z1", "h", "probs", "y"))
    n = len(y)
    d_logits = probs.copy()
    d_logits[np.arange(n), y] -= 1.0             # dL/dlogits = softmax - one_hot ...
    d_logits /= n                                # ... averaged over the batch
    d_W2 = h.T @ d_logits                        # (H, C)
    d_b2 = d_logits.sum(axis=0)                  # (C,)
    d_h = d_logits @ p["W2"].T                   # (N, H): the error sent back to layer 1
    d_z1 = d_h * (z1 > 0)                        # ReLU passes gradient only where it was active
    d_W1 = X.T @ d_z1                            # (D, H)
    d_b1 = d_z1.sum(axis=0)                      # (H,)
    return {"W1": d_W1, "b1": d_b1, "W2": d_W2, "b2": d_b2}
# --8<-- [end:model]


# --8<-- [start:check]
def finite_difference_grads(p: dict, X, y, eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Central differences, one parameter at a time: 2 forward passes per parameter."""
    grads = {}
    for name, value in p.items():
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            old = value[idx]
            value[idx] = old + eps
            plus, _ = forward(p, X, y)
            value[idx] = old - eps
            minus, _ = forward(p, X, y)
            value[idx] = old
            g[idx] = (plus - minus) / (2 * eps)
        grads[name] = g
    return grads


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||): scale-free, and not fooled by a few near-zero entries."""
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)))


X = rng.normal(size=(32, 5))                     # float64 throughout
y = rng.integers(0, 3, size=32)
params = init_params(d_in=5, d_hidden=16, n_classes=3, rng=rng)
n_params = sum(v.size for v in params.values())
assert n_params == 5 * 16 + 16 + 16 * 3 + 3
claim("147", n_params)

loss, cache = forward(params, X, y)
ours = backward(params, cache)
numeric = finite_difference_grads(params, X, y)

torch_params = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
logits = torch.relu(torch.tensor(X) @ torch_params["W1"] + torch_params["b1"]) \
    @ torch_params["W2"] + torch_params["b2"]
torch_loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
torch_loss.backward()

assert abs(torch_loss.item() - loss) < 1e-12
for name in params:
    assert ours[name].shape == params[name].shape
    assert rel_error(ours[name], numeric[name]) < 1e-7, name                      # finite differences
    assert np.abs(ours[name] - torch_params[name].grad.numpy()).max() < 1e-12, name  # autograd
worst_fd = max(rel_error(ours[k], numeric[k]) for k in params)
worst_torch = max(float(np.abs(ours[k] - torch_params[k].grad.numpy()).max()) for k in params)
claim("10^{-9}", worst_fd)                       # round-off level: u / eps
claim("below $10^{-15}$", worst_torch)           # the same arithmetic, up to round-off

# What real bugs look like: errors of order 1.
one_hot = np.eye(3)[y]
no_mask = X.T @ ((cache["probs"] - one_hot) / len(y) @ params["W2"].T)   # forgot ReLU's derivative
no_mean = cache["h"].T @ (cache["probs"] - one_hot)                       # forgot the 1/N
claim("0.33", rel_error(no_mask, ours["W1"]))
claim("0.94", rel_error(no_mean, ours["W2"]))

# The same check in float32: round-off in the loss, O(u/eps), swamps the O(eps^2) truncation error
# once eps is small. At eps = 1e-3 it still separates bugs from round-off; at 1e-6 it no longer does.
p32 = {k: v.astype(np.float32) for k, v in params.items()}
fd32 = {}
for eps in (1e-3, 1e-6):
    num32 = finite_difference_grads(p32, X.astype(np.float32), y, eps=eps)
    fd32[eps] = max(rel_error(ours[k], num32[k]) for k in params)
claim(r"4\times10^{-4}", fd32[1e-3])
claim("about 30%", fd32[1e-6], tol=0.1)          # as large as the forgotten ReLU mask
# --8<-- [end:check]


# --8<-- [start:cost]
# Multiply-accumulates per example for the two matrix products of each pass.
D, H, C = 5, 16, 3
forward_macs = D * H + H * C                     # X @ W1, h @ W2
backward_macs = (H * C + H * C) + D * H          # d_W2 and d_h; d_W1 (no d_X needed for the input)
assert backward_macs == 176 and forward_macs == 128
claim("1.4×", backward_macs / forward_macs)      # ~2x for inner layers, which need d_X too
claim("294", 2 * n_params)                       # forward passes a central-difference check needs
# --8<-- [end:cost]


# --8<-- [start:train]
# The hand-written gradient trains the network: two interleaved noisy spirals, full-batch SGD.
t = rng.uniform(0.25, 1.0, 200)
labels = rng.integers(0, 2, 200)
angle = 3 * np.pi * t + np.pi * labels
Xs = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) + rng.normal(0, 0.02, (200, 2))
net = init_params(d_in=2, d_hidden=64, n_classes=2, rng=rng)
start_loss, _ = forward(net, Xs, labels)
for step in range(1500):
    _, c = forward(net, Xs, labels)
    for k, g in backward(net, c).items():
        net[k] -= 0.5 * g
final_loss, c = forward(net, Xs, labels)
accuracy = float((c["probs"].argmax(axis=1) == labels).mean())
claim("0.75", start_loss)
claim("0.02", final_loss)
claim("100%", accuracy)
# --8<-- [end:train]


# --8<-- [start:fanout]
# Fan-out: a tensor used twice receives the sum of the gradients from both uses (the multivariate
# chain rule). A residual block a = h + ReLU(h @ W3): h feeds the skip and the branch.
g = np.random.default_rng(1)
h0, W3, d_a = g.normal(size=(8, 6)), g.normal(size=(6, 6)), g.normal(size=(8, 6))
u = h0 @ W3
d_u = d_a * (u > 0)
d_h_skip, d_h_branch = d_a, d_u @ W3.T
d_h = d_h_skip + d_h_branch                      # the two paths add up
h_t = torch.tensor(h0, requires_grad=True)
a_t = h_t + torch.relu(h_t @ torch.tensor(W3))
a_t.backward(torch.tensor(d_a))                  # backward from an upstream gradient d_a
assert np.abs(h_t.grad.numpy() - d_h).max() < 1e-12
assert min(rel_error(d_h_skip, d_h), rel_error(d_h_branch, d_h)) > 0.1   # either path alone is wrong

# Backward multiplies by Jacobians without building them: softmax's Jacobian is diag(p) - p p^T
# (C x C), but its vector-Jacobian product v^T J = p * (v - p.v) costs O(C).
s0 = torch.tensor(g.normal(size=5))
p_s = torch.softmax(s0, 0).numpy()
J = torch.autograd.functional.jacobian(lambda s: torch.softmax(s, 0), s0).numpy()
assert np.allclose(J, np.diag(p_s) - np.outer(p_s, p_s), atol=1e-12)
v = g.normal(size=5)
assert np.allclose(v @ J, p_s * (v - p_s @ v), atol=1e-12)
# --8<-- [end:fanout]

print(f"{n_params} parameters; max relative error vs finite differences {worst_fd:.1e}, "
      f"max abs difference vs autograd {worst_torch:.1e}")
print(f"spirals: loss {start_loss:.3f} -> {final_loss:.3f}, train accuracy {accuracy:.3f}")
