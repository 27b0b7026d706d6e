"""Weight initialisation: zero init keeps every hidden unit identical, Xavier and He keep the activation
scale through 50 layers where N(0, 1) does not, and the formulas equal torch.nn.init."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)

# --8<-- [start:symmetry]
# Two concentric rings: a task no linear model solves, so it needs several distinct hidden units.
n = 400
radius = torch.where(torch.rand(n) < 0.5, 1.0, 2.0)
angle = 2 * math.pi * torch.rand(n)
X = torch.stack([radius * angle.cos(), radius * angle.sin()], 1) + 0.15 * torch.randn(n, 2)
y = (radius > 1.5).long()


def make_net(init: str, act: nn.Module, dtype=torch.float64) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 32), act, nn.Linear(32, 2)).to(dtype)
    for layer in (net[0], net[2]):
        if init == "zero":
            nn.init.zeros_(layer.weight)
        elif init == "constant":                 # any constant is as symmetric as zero
            nn.init.constant_(layer.weight, 0.3)
        elif init == "zero last layer" and layer is net[2]:
            nn.init.zeros_(layer.weight)         # random first layer, zero output layer
        nn.init.zeros_(layer.bias)
    return net


STEPS = 1000


def train(net: nn.Module, steps: int = STEPS, lr: float = 0.5) -> float:
    """Full-batch gradient descent; returns the training accuracy."""
    x = X.to(net[0].weight.dtype)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return (net(x).argmax(1) == y).sum().item() / len(y)


def unit_spread(net: nn.Sequential) -> float:
    """How different the hidden units are: max |row_i - row_0| of (W1, b1), relative to the largest weight."""
    rows = torch.cat([net[0].weight, net[0].bias[:, None]], 1).detach()
    return ((rows - rows[0]).abs().max() / rows.abs().max().clamp_min(1e-300)).item()


def one_unit(net: nn.Sequential) -> nn.Sequential:
    """The same function with a single hidden unit: unit 0, its output weights summed over the copies."""
    small = nn.Sequential(nn.Linear(2, 1), net[1], nn.Linear(1, 2)).to(net[0].weight.dtype)
    with torch.no_grad():
        small[0].weight.copy_(net[0].weight[:1]), small[0].bias.copy_(net[0].bias[:1])
        small[2].weight.copy_(net[2].weight.sum(1, keepdim=True)), small[2].bias.copy_(net[2].bias)
    return small


acc, spread, collapses, agree = {}, {}, {}, {}
for init, act in [("zero", nn.Tanh()), ("zero", nn.Sigmoid()), ("constant", nn.Tanh()),
                  ("constant", nn.Sigmoid()), ("zero last layer", nn.Tanh()), ("random", nn.Tanh())]:
    torch.manual_seed(0)
    net = make_net(init, act)
    key = f"{init}, {type(act).__name__}"
    acc[key] = train(net)
    spread[key] = unit_spread(net)
    with torch.no_grad():
        out, out_one = net(X.double()), one_unit(net)(X.double())
    collapses[key] = torch.allclose(out, out_one, atol=1e-10)
    agree[key] = (out.argmax(1) == out_one.argmax(1)).double().mean().item()   # same predicted class
    if key == "zero, Tanh":                   # tanh(0) = 0 and W2 = 0: no gradient reaches any weight
        assert net[0].weight.abs().max() == 0 and net[2].weight.abs().max() == 0

# Symmetric starts: after 1,000 steps the 32 hidden units are still one unit, copied 32 times.
# Zero starts and all-0.3 sigmoid stay equal to float64 rounding: the net computes what a 1-unit
# net computes (to 1e-10), and one unit (one line) cannot separate two rings.
SYMMETRIC = ["zero, Tanh", "zero, Sigmoid", "constant, Tanh", "constant, Sigmoid"]
for key in ["zero, Tanh", "zero, Sigmoid", "constant, Sigmoid"]:
    assert spread[key] < 1e-12 and collapses[key] and acc[key] <= 0.67, key
# All 0.3 with tanh is an unstable symmetric state: on matmul kernels that round some rows differently,
# the float64 rounding noise grows during training (to a few per cent of the largest weight), but it
# is noise, not learning: the net still predicts almost everywhere what its one-unit collapse predicts
# (100% of the points, or 99% on the kernels where it drifts), so it is no more accurate than the
# symmetric net. A net whose units had learned to differ would fail this: the random start's
# one-unit collapse agrees with it on half the points.
assert spread["constant, Tanh"] < 0.1 and acc["constant, Tanh"] <= 0.67
claim("at least 95%", agree["constant, Tanh"])
assert agree["random, Tanh"] < 0.9 and agree["zero last layer, Tanh"] < 0.9
# A random start breaks the symmetry: the units differ by O(1) and the rings are separated.
assert spread["random, Tanh"] > 0.5 and not collapses["random, Tanh"] and acc["random, Tanh"] > 0.99
# Zero in the *last* layer only is harmless: the hidden units already differ.
assert spread["zero last layer, Tanh"] > 0.5 and acc["zero last layer, Tanh"] > 0.99
# In float32, some matmul kernels round some rows differently (others do not); any difference between
# the units is rounding noise, not anything learned, and the accuracy is that of the float64 net.
# (A non-zero spread32, under 1e-4, was seen only on Intel's AVX2 branch; every code path make spread
# tries on the AMD machine gives exactly 0.)
torch.manual_seed(0)
net32 = make_net("zero", nn.Sigmoid(), torch.float32)
acc32 = train(net32)
spread32 = unit_spread(net32)
assert spread32 < 1e-4 and acc32 == acc["zero, Sigmoid"]
claim("1,000", STEPS)
claim("32", net[0].out_features)
claim("50%", acc["zero, Tanh"])
claim("at most 67%", max(acc[k] for k in SYMMETRIC))
claim("under 10%", spread["constant, Tanh"])
claim("100%", acc["random, Tanh"])
claim("under $10^{-4}$", spread32)
# --8<-- [end:symmetry]

# --8<-- [start:depth]
DEPTH, WIDTH = 50, 256                          # square layers: fan_in = fan_out = 256
INITS = {                                        # std of the weights
    "N(0, 1)": 1.0,
    "Xavier": math.sqrt(2 / (WIDTH + WIDTH)),   # Var w = 2 / (fan_in + fan_out) = 1/256
    "He": math.sqrt(2 / WIDTH),                 # Var w = 2 / fan_in
}
ACTS = {"tanh": torch.tanh, "ReLU": torch.relu}


def activation_std(act, std: float, seed: int = 0) -> np.ndarray:
    """Std of the activations after each of DEPTH layers (float64, so nothing overflows)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(256, WIDTH, generator=g, dtype=torch.float64)
    out = []
    for _ in range(DEPTH):
        W = std * torch.randn(WIDTH, WIDTH, generator=g, dtype=torch.float64)
        h = act(h @ W.T)
        out.append(h.std().item())
    return np.array(out)


stds = {(a, i): activation_std(ACTS[a], s) for a in ACTS for i, s in INITS.items()}
last = {k: v[-1] for k, v in stds.items()}

# ReLU: He keeps the scale (about 1 after 50 layers); Xavier halves the second moment per
# layer (2^-50 in variance, 2^-25 in std); N(0, 1) multiplies it by fan_in/2 = 128 per layer.
assert 0.5 < last["ReLU", "He"] < 2
assert np.isclose(last["ReLU", "Xavier"] / last["ReLU", "He"], 2 ** -25, rtol=0.5)
assert last["ReLU", "N(0, 1)"] > 1e50
per_layer = (stds["ReLU", "N(0, 1)"][-1] / stds["ReLU", "N(0, 1)"][0]) ** (1 / (DEPTH - 1))
assert np.isclose(per_layer, math.sqrt(WIDTH / 2), rtol=0.01)      # sqrt(128) = 11.3 per layer
g = torch.Generator().manual_seed(0)                               # the same in float32:
h32 = torch.randn(256, WIDTH, generator=g)
for overflow_layer in range(1, DEPTH + 1):
    h32 = torch.relu(h32 @ torch.randn(WIDTH, WIDTH, generator=g).T)
    if not torch.isfinite(h32).all():
        break
assert overflow_layer < DEPTH                                      # inf long before layer 50
# tanh: N(0, 1) drives most units to +-1 (saturated); Xavier shrinks slowly; He settles at a fixed scale.
torch.manual_seed(0)
h = torch.randn(256, WIDTH, dtype=torch.float64)
for _ in range(DEPTH):
    h = torch.tanh(h @ torch.randn(WIDTH, WIDTH, dtype=torch.float64).T)
saturated = (h.abs() > 0.99).double().mean().item()
assert saturated > 0.8                         # tanh'(z) < 0.02 for these units: gradients die
assert last["tanh", "Xavier"] < last["tanh", "He"] < last["tanh", "N(0, 1)"]
# Xavier is tanh's critical point (Var w * fan_in = 1): tanh(z)^2 ~ z^2 - 2z^4/3 gives q' = q - 2q^2,
# so the variance decays only polynomially, q_l ~ 1/(2l), not exponentially.
assert abs(last["tanh", "Xavier"] / math.sqrt(1 / (2 * DEPTH)) - 1) < 0.25


def cosine_after(act, std: float, seed: int = 0) -> tuple[float, float]:
    """Cosine similarity of two nearby inputs before and after DEPTH layers: is their difference kept?"""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(64, WIDTH, generator=g, dtype=torch.float64)
    b = a + 0.1 * torch.randn(64, WIDTH, generator=g, dtype=torch.float64)
    before = nn.functional.cosine_similarity(a, b).mean().item()
    for _ in range(DEPTH):
        W = std * torch.randn(WIDTH, WIDTH, generator=g, dtype=torch.float64)
        a, b = act(a @ W.T), act(b @ W.T)
    return before, nn.functional.cosine_similarity(a, b).mean().item()


# The scale is not the whole story for tanh: above Var w * fan_in = 1 the net is chaotic (Poole et al.,
# 2016): the variance settles, but two nearby inputs decorrelate; at exactly 1 (Xavier) they stay close.
cos0, cos_tanh = cosine_after(torch.tanh, INITS["Xavier"])
cos_tanh_he, cos_tanh_n01 = cosine_after(torch.tanh, INITS["He"])[1], cosine_after(torch.tanh, 1.0)[1]
cos_tanh_53 = cosine_after(torch.tanh, nn.init.calculate_gain("tanh") / math.sqrt(WIDTH))[1]
assert cos_tanh > 0.98 and cos_tanh_he < 0.8 and abs(cos_tanh_n01) < 0.05 and cos_tanh_53 < 0.3
claim("0.995", cos0)
claim("0.99", cos_tanh)
claim("0.67", cos_tanh_he)
claim("0.13", cos_tanh_53)
claim("11.3", per_layer)
claim("36", overflow_layer)
claim("0.63", stds["tanh", "Xavier"][0])
claim("0.088", last["tanh", "Xavier"])
claim("0.55", last["tanh", "He"])
claim("0.97", last["tanh", "N(0, 1)"])
claim("4.5\\times10^{52}", last["ReLU", "N(0, 1)"])
claim("0.93", last["ReLU", "He"])
claim("3\\times10^{-8}", last["ReLU", "Xavier"])
claim("86%", saturated)
# --8<-- [end:depth]

# --8<-- [start:torch]
fan_in, fan_out = 64 * 3 * 3, 128 * 3 * 3       # a 3x3 conv, 64 -> 128 channels
w = torch.empty(128, 64, 3, 3)


def same_draw(init_fn, manual_fn) -> bool:
    """torch.nn.init's result equals our formula applied to the same random stream, bit for bit."""
    torch.manual_seed(1)
    a = init_fn(torch.empty_like(w))
    torch.manual_seed(1)
    b = manual_fn(torch.empty_like(w))
    return torch.equal(a, b)


gain_relu, gain_tanh = nn.init.calculate_gain("relu"), nn.init.calculate_gain("tanh")
assert gain_relu == math.sqrt(2) and gain_tanh == 5 / 3
checks = {
    "xavier_uniform_": (nn.init.xavier_uniform_,
                        lambda t: t.uniform_(-math.sqrt(6 / (fan_in + fan_out)), math.sqrt(6 / (fan_in + fan_out)))),
    "xavier_normal_": (nn.init.xavier_normal_, lambda t: t.normal_(0, math.sqrt(2 / (fan_in + fan_out)))),
    "kaiming_uniform_": (lambda t: nn.init.kaiming_uniform_(t, nonlinearity="relu"),
                         lambda t: t.uniform_(-math.sqrt(6 / fan_in), math.sqrt(6 / fan_in))),
    "kaiming_normal_": (lambda t: nn.init.kaiming_normal_(t, nonlinearity="relu"),
                        lambda t: t.normal_(0, math.sqrt(2 / fan_in))),
    "kaiming_normal_, fan_out": (lambda t: nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"),
                                 lambda t: t.normal_(0, math.sqrt(2 / fan_out))),
}
for name, (init_fn, manual_fn) in checks.items():
    assert same_draw(init_fn, manual_fn), name

# nn.Linear / nn.Conv2d's default is kaiming_uniform_(a=sqrt(5)): bound 1/sqrt(fan_in), Var w = 1/(3 fan_in),
# a sixth of He's variance (2/fan_in) and a third of Xavier's for a square layer.
torch.manual_seed(1)
default = nn.Conv2d(64, 128, 3).weight.detach()
torch.manual_seed(1)
assert torch.equal(default, torch.empty_like(w).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in)))
assert abs(default.var().item() * 3 * fan_in - 1) < 0.01
# trunc_normal_ cuts at a = -2, b = 2 in absolute units: at std 1 that is +-2 sigma (std 0.88), at std
# 0.02 it is +-100 sigma, so nothing is cut and the std stays 0.02.
torch.manual_seed(1)
cut, uncut = nn.init.trunc_normal_(torch.empty(100_000)), nn.init.trunc_normal_(torch.empty(100_000), std=0.02)
assert cut.abs().max() <= 2 and abs(uncut.std().item() / 0.02 - 1) < 0.01
claim("0.88", cut.std().item() / 1.0)
# --8<-- [end:torch]

for k in acc:
    print(f"{k:24s} train acc {acc[k]:.3f}  unit spread {spread[k]:.1e}  agrees with 1 unit {agree[k]:.3f}")
for k, v in last.items():
    print(f"{k[0]:5s} {k[1]:8s} std after {DEPTH} layers: {v:.3e}")
print(f"ReLU N(0,1) growth per layer {per_layer:.2f}; tanh N(0,1) saturated share {saturated:.3f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
colors = {"N(0, 1)": "tab:red", "Xavier": "tab:orange", "He": "tab:blue"}
layers = np.arange(1, DEPTH + 1)
for (a, i), v in stds.items():
    (ax1 if a == "tanh" else ax2).plot(layers, v, c=colors[i], lw=1.5, label=i)
ax1.text(25, 0.9, "N(0, 1): most units saturated at ±1", fontsize=7, ha="center", color="tab:red")
ax1.set(title="tanh, width 256", xlabel="layer", ylabel="activation std", ylim=(0, 1.05))
ax2.set(title="ReLU, width 256", xlabel="layer", ylabel="activation std (log scale)", yscale="log")
for ax in (ax1, ax2):
    ax.legend(fontsize=8)
save(fig, "deep-learning", "weight-initialization")
