"""Per-layer gradient norms in a 20-layer MLP: sigmoid against ReLU + He init, residual and BatchNorm."""
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

# --8<-- [start:net]
DEPTH, WIDTH, BATCH = 20, 64, 256


class DeepMLP(nn.Module):
    """DEPTH blocks of Linear -> [BatchNorm] -> activation, optionally wrapped in x + block(x)."""

    def __init__(self, act, init: str, residual: bool = False, batchnorm: bool = False):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(DEPTH))
        self.norms = nn.ModuleList(nn.BatchNorm1d(WIDTH) if batchnorm else nn.Identity()
                                   for _ in range(DEPTH))
        self.act, self.residual = act, residual
        for lin in self.linears:
            nn.init.zeros_(lin.bias)
            if init == "xavier":        # Var(w) = 2 / (fan_in + fan_out) = 1 / 64 here
                nn.init.xavier_normal_(lin.weight)
            elif init == "he":          # Var(w) = 2 / fan_in: keeps ReLU activations' scale
                nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            elif init == "small":       # Var(w) = 1 / (3 fan_in): nn.Linear's default weights
                bound = 1 / np.sqrt(WIDTH)
                nn.init.uniform_(lin.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin, norm in zip(self.linears, self.norms):
            out = self.act(norm(lin(x)))
            x = x + out if self.residual else out
        return x


def layer_grad_norms(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """||dL/dW_l|| for l = 1..DEPTH after one backward pass of an MSE loss."""
    net.zero_grad()
    nn.functional.mse_loss(net(x), y).backward()
    return np.array([lin.weight.grad.norm().item() for lin in net.linears])


VARIANTS = {
    "sigmoid, Xavier": dict(act=torch.sigmoid, init="xavier"),
    "tanh, Xavier": dict(act=torch.tanh, init="xavier"),
    "ReLU, He": dict(act=torch.relu, init="he"),
    "ReLU, small init": dict(act=torch.relu, init="small"),
    "sigmoid + residual": dict(act=torch.sigmoid, init="xavier", residual=True),
    "sigmoid + BatchNorm": dict(act=torch.sigmoid, init="xavier", batchnorm=True),
}
x, y = torch.randn(BATCH, WIDTH), torch.randn(BATCH, WIDTH)
norms = {}
for name, kwargs in VARIANTS.items():
    torch.manual_seed(0)
    norms[name] = layer_grad_norms(DeepMLP(**kwargs), x, y)
ratio = {name: g[0] / g[-1] for name, g in norms.items()}      # first layer / last layer
# --8<-- [end:net]

# --8<-- [start:asserts]
sig = norms["sigmoid, Xavier"]
# Plain sigmoid: the first layer's gradient is ~1e-13 of the last layer's ...
claim(r"1.9 \times 10^{-13}", ratio["sigmoid, Xavier"])
# ... because every layer multiplies the backward signal by about sigmoid'(z) * gain <= 0.25.
per_layer = np.exp(np.mean(np.diff(np.log(sig[::-1]))))       # geometric-mean decay per layer
claim("0.214", per_layer)
claim("about 0.21", per_layer)
claim(r"5 \times 10^{-14}", 0.2**19)                      # what 0.2 per layer does over 19 layers
claim("32-fold", 1.2**19)                                   # ... and 1.2 per layer
# Its first-layer gradient entries are far below Adam's eps (1e-8): even Adam barely moves them.
torch.manual_seed(0)
net = DeepMLP(**VARIANTS["sigmoid, Xavier"])
nn.functional.mse_loss(net(x), y).backward()
claim("below $10^{-10}$", net.linears[0].weight.grad.abs().max())

# The fixes keep the ratio within about two orders of magnitude of 1: 8+ orders better than sigmoid.
claim("0.93", ratio["tanh, Xavier"])
claim("0.30", ratio["ReLU, He"])
claim(r"2.2 \times 10^{-2}", ratio["sigmoid + residual"])
claim("1.8", ratio["sigmoid + BatchNorm"])
for name in ["tanh, Xavier", "ReLU, He", "sigmoid + residual", "sigmoid + BatchNorm"]:
    assert 5e-3 < ratio[name] < 1e2, name
    assert ratio[name] > 1e8 * ratio["sigmoid, Xavier"], name

# "small" really is nn.Linear's default weight init: uniform in +-1/sqrt(fan_in).
default = nn.Linear(WIDTH, WIDTH).weight
assert default.abs().max() <= 1 / np.sqrt(WIDTH) and abs(default.std() - 1 / np.sqrt(3 * WIDTH)) < 0.005
# A healthy ratio is not enough: with too small an init, ReLU's forward signal and backward
# signal both shrink by ~sqrt(6) per layer. The gradients are flat across depth, and all tiny.
claim("1.2, but", ratio["ReLU, small init"])
for g in norms["ReLU, small init"]:
    claim(r"about $3\times10^{-9}$", g, tol=1e-9)
assert norms["ReLU, small init"].max() < 1e-6 * norms["ReLU, He"].min()
# --8<-- [end:asserts]


# --8<-- [start:isometry]
# Dynamical isometry: the end-to-end Jacobian of 50 linear layers is the product of the weights.
# Gaussian (Xavier) layers keep the average scale but spread its singular values apart; orthogonal
# layers keep every one of them at exactly 1.
spread = {}
for init in ("xavier", "orthogonal"):
    torch.manual_seed(0)
    M = torch.eye(WIDTH, dtype=torch.float64)
    for _ in range(50):
        W = torch.empty(WIDTH, WIDTH, dtype=torch.float64)
        nn.init.xavier_normal_(W) if init == "xavier" else nn.init.orthogonal_(W)
        M = W @ M
    spread[init] = torch.linalg.svdvals(M)
claim("more than 15 orders of magnitude", torch.log10(spread["xavier"].max() / spread["xavier"].min()))
claim(r"within $10^{-12}$", (spread["orthogonal"] - 1).abs().max())
# --8<-- [end:isometry]


# --8<-- [start:attention]
# Why attention divides q.k by sqrt(d_k): with unit-variance q and k, the logits have std sqrt(d_k),
# the softmax saturates, and its Jacobian diag(p) - p p^T, the factor backward multiplies by, collapses.
g = torch.Generator().manual_seed(0)
d_k = 512
q, k = torch.randn(1000, d_k, generator=g), torch.randn(64, d_k, generator=g)
stats = {}
for name, scale in [("unscaled", 1.0), ("scaled", d_k ** -0.5)]:
    logits = q @ k.T * scale
    p = logits.softmax(-1)
    J = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    stats[name] = dict(std=logits.std().item(), one_hot=(p.max(-1).values > 0.99).float().mean().item(),
                       jac=J.norm(dim=(1, 2)).median().item())
claim("22.6", stats["unscaled"]["std"])                 # sqrt(512)
claim("58%", stats["unscaled"]["one_hot"])              # queries with > 99% on one key
assert stats["scaled"]["one_hot"] == 0.0 and abs(stats["scaled"]["std"] - 1) < 0.01
claim("31×", stats["scaled"]["jac"] / stats["unscaled"]["jac"])
# --8<-- [end:attention]

for name, gn in norms.items():
    print(f"{name:20s} first/last {ratio[name]:.1e}   first {gn[0]:.1e}  last {gn[-1]:.1e}")
print(f"sigmoid per-layer decay factor {per_layer:.3f}")

fig, ax = plt.subplots(figsize=(6.4, 3.8))
layers = np.arange(1, DEPTH + 1)
styles = {"sigmoid, Xavier": ("tab:red", "o"), "tanh, Xavier": ("tab:orange", "v"),
          "ReLU, He": ("tab:blue", "s"), "ReLU, small init": ("tab:gray", "x"),
          "sigmoid + residual": ("tab:green", "^"), "sigmoid + BatchNorm": ("tab:purple", "D")}
for name, g in norms.items():
    c, m = styles[name]
    ax.plot(layers, g, marker=m, ms=3.5, c=c, lw=1.2, label=name)
ax.set(yscale="log", xlabel="layer (1 = next to the input)", ylabel=r"$\|\partial L / \partial W_l\|$",
       title="Weight-gradient norm per layer, 20-layer MLP at init", xticks=[1, 5, 10, 15, 20])
ax.legend(fontsize=7, loc="lower right", ncol=2)
save(fig, "deep-learning", "vanishing-gradients")
