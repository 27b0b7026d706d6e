"""Activation functions and their derivatives: saturation, dead ReLUs, and the modern smooth variants."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from _figures import save

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)

# --8<-- [start:functions]
def sigmoid(x):
    return 1 / (1 + np.exp(-x))


ACTIVATIONS = {  # name: (f, f')
    "sigmoid": (sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "ReLU": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "Leaky ReLU (0.1)": (lambda x: np.where(x > 0, x, 0.1 * x), lambda x: np.where(x > 0, 1.0, 0.1)),
    "SiLU / Swish": (lambda x: x * sigmoid(x), lambda x: sigmoid(x) * (1 + x * (1 - sigmoid(x)))),
}
TORCH = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "ReLU": torch.relu,
         "Leaky ReLU (0.1)": lambda t: nn.functional.leaky_relu(t, 0.1), "SiLU / Swish": nn.functional.silu}

x = np.linspace(-6, 6, 1201)
x = x[np.abs(x) > 1e-9]                          # skip the kink of ReLU at exactly 0
xt = torch.tensor(x, requires_grad=True)
for name, (f, df) in ACTIVATIONS.items():        # hand-written derivatives == autograd
    y = TORCH[name](xt)
    (g,) = torch.autograd.grad(y.sum(), xt)
    assert np.allclose(f(x), y.detach().numpy(), atol=1e-12), name
    assert np.allclose(df(x), g.numpy(), atol=1e-12), name
# At the kink, PyTorch uses ReLU'(0) = 0 (any value in [0, 1] is a valid subgradient).
zero = torch.zeros(1, requires_grad=True)
torch.relu(zero).backward()
assert zero.grad.item() == 0.0
# --8<-- [end:functions]

# --8<-- [start:saturation]
dsig, dtanh = ACTIVATIONS["sigmoid"][1], ACTIVATIONS["tanh"][1]
assert dsig(0.0) == 0.25 and dsig(x).max() <= 0.25           # the best case is 1/4
assert np.isclose(dsig(10.0), 4.54e-5, rtol=1e-3)              # saturated: ~5e-5
assert dtanh(0.0) == 1.0 and np.isclose(dtanh(10.0), 8.24e-9, rtol=1e-3)
assert np.allclose(np.tanh(x), 2 * sigmoid(2 * x) - 1)         # tanh is a rescaled sigmoid ...
assert np.isclose(sigmoid(0.0), 0.5)                           # ... but sigmoid is centred at 0.5
# Ten sigmoid layers, even at their best operating point, scale the gradient by 0.25**10 ~ 1e-6.
assert 0.25**10 < 1e-6
# --8<-- [end:saturation]

# --8<-- [start:smooth]
xt = torch.linspace(-6, 6, 12001)
gelu = nn.functional.gelu(xt)
gelu_tanh = nn.functional.gelu(xt, approximate="tanh")         # the approximation BERT/GPT-2 used
silu = nn.functional.silu(xt)
assert (gelu - gelu_tanh).abs().max() < 5e-4
assert abs(gelu.min().item() + 0.170) < 1e-3 and abs(xt[gelu.argmin()].item() + 0.75) < 0.01
assert abs(silu.min().item() + 0.278) < 1e-3 and abs(xt[silu.argmin()].item() + 1.28) < 0.01
# Both are non-monotone just below zero and become ReLU for large |x|.
assert torch.allclose(gelu[xt > 5], xt[xt > 5], atol=1e-5) and gelu[xt < -5].abs().max() < 1e-5
# --8<-- [end:smooth]


# --8<-- [start:dead-relu]
def dead_fraction(layer: nn.Linear, act: nn.Module, X: torch.Tensor) -> float:
    """Share of units whose activation gradient is exactly zero on every input in X."""
    z = layer(X).detach().requires_grad_()
    (g,) = torch.autograd.grad(act(z).sum(), z)
    return (g.abs().max(dim=0).values == 0).float().mean().item()


X = torch.randn(2048, 10)
y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).long()   # a small non-linear classification task


def train(net: nn.Module, steps: int, lr: float, adam: bool = False) -> None:
    """Minibatch SGD, or Adam with PyTorch's default betas and eps, written out."""
    params = list(net.parameters())
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        idx = torch.randint(0, len(X), (64,))
        grads = torch.autograd.grad(nn.functional.cross_entropy(net(X[idx]), y[idx]), params)
        with torch.no_grad():
            for p, g, m_, v_ in zip(params, grads, m, v):
                if not adam:
                    p -= lr * g
                    continue
                m_.mul_(0.9).add_(0.1 * g)
                v_.mul_(0.999).add_(0.001 * g * g)
                p -= lr * (m_ / (1 - 0.9**t)) / ((v_ / (1 - 0.999**t)).sqrt() + 1e-8)


# (1) The mechanism: one large update drives the biases down.
for act, expect_dead in [(nn.ReLU(), True), (nn.LeakyReLU(0.01), False)]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 256), act, nn.Linear(256, 2))
    assert dead_fraction(net[0], act, X) == 0.0                # healthy at init
    assert 0.5 < net[0](X).std().item() < 0.7                   # pre-activations: std ~0.6
    with torch.no_grad():
        net[0].bias -= 2.0                                      # ~3 std: one step with a huge gradient
    killed = dead_fraction(net[0], act, X)
    before = net[0].weight.detach().clone()
    train(net, steps=100, lr=0.1)                               # keep training at a sane rate
    moved = (net[0].weight.detach() - before).abs().max(dim=1).values > 0
    if expect_dead:
        assert 0.3 < killed < 0.9                               # a large share is now silent ...
        dead_units = (net[0](X).max(dim=0).values <= 0)
        assert dead_units.float().mean() >= killed - 0.05      # ... and stays silent:
        assert not moved[dead_units].any()                      # their weights never changed
        relu_killed = killed
    else:
        assert killed == 0.0 and moved.all()                    # leaky units all still learn


# (2) The usual cause in practice: a learning rate that is far too high.
def dead_after_adam(lr: float, steps: int = 300) -> float:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 256), nn.ReLU(), nn.Linear(256, 2))
    train(net, steps, lr, adam=True)
    return dead_fraction(net[0], nn.ReLU(), X)


dead_ok, dead_high = dead_after_adam(1e-3), dead_after_adam(0.3)
assert dead_ok == 0.0 and dead_high > 0.05
# --8<-- [end:dead-relu]

print(f"sigmoid'(10) = {dsig(10.0):.3e}, tanh'(10) = {dtanh(10.0):.3e}; "
      f"GELU min {gelu.min():.4f} at {xt[gelu.argmin()]:.3f}, SiLU min {silu.min():.4f} at {xt[silu.argmin()]:.3f}; "
      f"max |GELU - tanh approx| {(gelu - gelu_tanh).abs().max():.1e}")
print(f"bias shift -2: {relu_killed:.1%} of ReLU units dead, 0% of leaky; "
      f"Adam lr 1e-3: {dead_ok:.1%} dead, lr 0.3: {dead_high:.1%} dead")

xs = np.linspace(-5, 5, 1001)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
fig.subplots_adjust(wspace=0.25)
xs_t = torch.tensor(xs, requires_grad=True)
g_gelu = nn.functional.gelu(xs_t)
(dg,) = torch.autograd.grad(g_gelu.sum(), xs_t)
colors = ["tab:red", "tab:orange", "tab:blue", "tab:cyan", "tab:green", "tab:purple"]
for (name, (f, df)), c in zip(ACTIVATIONS.items(), colors):
    ls, lw = (":", 2.0) if name.startswith("Leaky") else ("-", 1.4)
    ax1.plot(xs, f(xs), c=c, lw=lw, ls=ls, label=name)
    ax2.plot(xs, df(xs), c=c, lw=lw, ls=ls, label=name)
ax1.plot(xs, g_gelu.detach().numpy(), c=colors[5], lw=1.4, ls="--", label="GELU")
ax2.plot(xs, dg.numpy(), c=colors[5], lw=1.4, ls="--", label="GELU")
ax1.set(xlabel="x", ylabel="f(x)", ylim=(-1.5, 3), title="Activation")
ax2.axhline(0.25, c="0.6", lw=0.8, ls=":")
ax2.text(-4.9, 0.28, "sigmoid' max = 0.25", fontsize=7, color="0.4")
ax2.set(xlabel="x", ylabel="f'(x)", ylim=(-0.2, 1.2), title="Derivative")
ax1.legend(fontsize=7, loc="upper left")
for ax in (ax1, ax2):
    ax.axhline(0, c="0.8", lw=0.6)
    ax.axvline(0, c="0.8", lw=0.6)
save(fig, "deep-learning", "activation-functions")
