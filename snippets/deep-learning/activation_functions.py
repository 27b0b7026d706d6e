"""Activation functions and their derivatives: saturation, dead ReLUs, and the modern smooth variants."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from torch import nn

from vault.claims import claim

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
claim(r"4.5\times10^{-5}", dsig(10.0))                          # saturated
assert dtanh(0.0) == 1.0
claim(r"8.2\times10^{-9}", dtanh(10.0))
assert np.allclose(np.tanh(x), 2 * sigmoid(2 * x) - 1)         # tanh is a rescaled sigmoid ...
assert np.isclose(sigmoid(0.0), 0.5)                           # ... but sigmoid is centred at 0.5
# Ten sigmoid derivatives, even at their best operating point, multiply to 0.25**10 ~ 1e-6
# (the weights contribute their own factor; see the Vanishing gradients page).
claim("10^{-6}", np.prod([dsig(0.0)] * 10))
# --8<-- [end:saturation]

# --8<-- [start:smooth]
xt = torch.linspace(-6, 6, 12001)
gelu = nn.functional.gelu(xt)
gelu_tanh = nn.functional.gelu(xt, approximate="tanh")         # the approximation BERT/GPT-2 used
silu = nn.functional.silu(xt)
claim(r"less than $5\times10^{-4}$", (gelu - gelu_tanh).abs().max())
claim("−0.170", gelu.min())
claim("-0.75", xt[gelu.argmin()])
claim("−0.278", silu.min())
claim("-1.28", xt[silu.argmin()])
# Both are non-monotone just below zero and become ReLU for large |x|.
assert torch.allclose(gelu[xt > 5], xt[xt > 5], atol=1e-5) and gelu[xt < -5].abs().max() < 1e-5
# Hard-swish: x times a piecewise-linear hard sigmoid, so x(x+3)/6 (a parabola) on (-3, 3).
hswish = nn.functional.hardswish(xt)
assert torch.allclose(hswish, xt * nn.functional.relu6(xt + 3) / 6)
inner = xt.abs() < 3
assert torch.allclose(hswish[inner], xt[inner] * (xt[inner] + 3) / 6, atol=1e-6)
# SwiGLU has three weight matrices, so its hidden width is 2/3 of 4d: the same weights as a 4d GELU MLP.
d = 768
gelu_mlp = [nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)]
swiglu_mlp = [nn.Linear(d, 2 * 4 * d // 3, bias=False) for _ in range(2)] + [nn.Linear(2 * 4 * d // 3, d, bias=False)]
n_gelu, n_swiglu = (sum(p.numel() for m in mlp for p in m.parameters()) for mlp in (gelu_mlp, swiglu_mlp))
assert n_swiglu == n_gelu
claim("4,718,592", n_swiglu)
# --8<-- [end:smooth]


# --8<-- [start:dead-relu]
def dead_fraction(layer: nn.Linear, act: nn.Module, X: torch.Tensor) -> float:
    """Share of units whose activation gradient is exactly zero on every input in X."""
    z = layer(X).detach().requires_grad_()
    (g,) = torch.autograd.grad(act(z).sum(), z)
    return (g.abs().max(dim=0).values == 0).float().mean().item()


torch.manual_seed(0)
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
    claim("about 3 standard deviations", 2.0 / net[0](X).std().item(), tol=0.5)
    with torch.no_grad():
        net[0].bias -= 2.0                                      # one step with a huge gradient
    killed = dead_fraction(net[0], act, X)
    before = net[0].weight.detach().clone()
    train(net, steps=100, lr=0.1)                               # keep training at a sane rate
    moved = (net[0].weight.detach() - before).abs().max(dim=1).values > 0
    if expect_dead:
        claim("53%", killed)                                    # a large share is now silent ...
        dead_units = (net[0](X).max(dim=0).values <= 0)
        assert dead_units.float().mean() >= killed - 0.05      # ... and stays silent:
        assert not moved[dead_units].any()                      # their weights never changed
        relu_killed = killed
    else:
        assert killed == 0.0 and moved.all()                    # leaky units all still learn


# (2) The usual cause in practice: a learning rate that is far too high. Training at lr 0.3 is
# chaotic (the share depends on the seed), so it is measured over 8 seeds.
def dead_after_adam(lr: float, seed: int, steps: int = 300) -> float:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(10, 256), nn.ReLU(), nn.Linear(256, 2))
    train(net, steps, lr, adam=True)
    return dead_fraction(net[0], nn.ReLU(), X)


dead_ok = [dead_after_adam(1e-3, seed) for seed in range(8)]
dead_high = [dead_after_adam(0.3, seed) for seed in range(8)]
assert max(dead_ok) == 0.0                                      # no unit dies at a sane rate
for share in dead_high:
    claim("1–21%", share)                                       # every seed loses some units
claim("8–12%", np.mean(dead_high))


# (3) Dead for good only in the first layer, whose inputs are fixed. A deeper unit can come back
# when the layers before it change what it sees.
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
with torch.no_grad():
    net[2].bias -= 0.5                                          # silence some second-layer units


def dead_second_layer() -> torch.Tensor:
    return net[2](net[1](net[0](X))).max(dim=0).values <= 0


dead_before = dead_second_layer()
train(net, steps=500, lr=0.1)
revived = dead_before & ~dead_second_layer()
claim("12 second-layer units", dead_before.sum())
claim("5 of them", revived.sum())
# --8<-- [end:dead-relu]

print(f"sigmoid'(10) = {dsig(10.0):.3e}, tanh'(10) = {dtanh(10.0):.3e}; "
      f"GELU min {gelu.min():.4f} at {xt[gelu.argmin()]:.3f}, SiLU min {silu.min():.4f} at {xt[silu.argmin()]:.3f}; "
      f"max |GELU - tanh approx| {(gelu - gelu_tanh).abs().max():.1e}")
print(f"bias shift -2: {relu_killed:.1%} of ReLU units dead, 0% of leaky; "
      f"Adam lr 1e-3: {max(dead_ok):.1%} dead, lr 0.3: {min(dead_high):.1%}-{max(dead_high):.1%} dead "
      f"(mean {np.mean(dead_high):.1%}); layer 2: {int(revived.sum())} of {int(dead_before.sum())} revived")

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
