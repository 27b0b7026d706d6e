"""MobileNetV2's inverted residual, ShuffleNet's channel shuffle and EfficientNet's compound scaling, counted and
checked.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save
from torch.utils.flop_counter import FlopCounterMode

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of the convs and linear layers, counted with forward hooks (checked below
    against PyTorch's FlopCounterMode, which is slower on large models)."""
    total = 0

    def count(m: nn.Module, inp, out: torch.Tensor) -> None:
        nonlocal total
        conv = isinstance(m, nn.Conv2d)
        per_output = (m.in_channels // m.groups) * math.prod(m.kernel_size) if conv else m.in_features
        total += out.numel() * per_output

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return total


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


# --8<-- [start:inverted-residual]
class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (x t) + ReLU6, 3x3 depthwise + ReLU6, 1x1 project with NO activation.
    The shortcut joins the narrow ends, when the shapes allow it."""

    def __init__(self, c_in: int, c_out: int, stride: int, t: int):
        super().__init__()
        hidden = c_in * t
        layers = [] if t == 1 else [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]      # linear bottleneck
        self.f = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x) if self.residual else self.f(x)


# A stage-2 block of MobileNetV2: 24 channels at 56 x 56, expansion 6.
c, t, hw = 24, 6, 56
block = InvertedResidual(c, c, 1, t)
x = torch.randn(1, c, hw, hw)
weights = c * t * c + 9 * t * c + t * c * c             # expand + depthwise + project
assert sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d)) == weights
claim("8,208", weights)
claim("8,832", n_params(block))                          # with BatchNorm's 2 parameters per channel
assert macs(block, x) == flop_counter_macs(block, x) == hw * hw * weights   # every weight once per pixel
claim("25.7M", macs(block, x))
# The ResNet-style alternative at the same stream width, a 3x3 conv pair, costs more and is narrower inside.
basic = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.Conv2d(c, c, 3, padding=1, bias=False))
assert macs(basic, x) == hw * hw * 2 * 9 * c * c
# What persists between blocks is the thin stream: the 6x wider tensor lives only inside the block.
expanded = block.f[:3](x)
assert expanded.shape[1] == t * x.shape[1] == 144


def mobilenet_v2(n_classes: int = 1000) -> nn.Sequential:
    """The paper's Table 2: (t, c, n, s) per stage, a 3x3 stem with 32 channels, a 1x1 head with 1,280."""
    layers, c_in = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()], 32
    for t_, c_, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                         (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            layers.append(InvertedResidual(c_in, c_, s if i == 0 else 1, t_))
            c_in = c_
    layers += [nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, n_classes)]
    return nn.Sequential(*layers)


with torch.device("meta"):
    mnv2 = mobilenet_v2()
    mnv2_macs = macs(mnv2, torch.empty(1, 3, 224, 224))
claim("3,504,872", n_params(mnv2))                       # torchvision's mobilenet_v2
claim("301M", mnv2_macs)                                 # the paper's "300M multiply-adds"
# --8<-- [end:inverted-residual]

# --8<-- [start:linear-bottleneck]
# Why the projection is linear (MobileNetV2, Sec. 3.2): embed a 2-D spiral in n dimensions with a
# random matrix T and apply ReLU. A point survives if it can be recovered exactly, which needs at
# least 2 active (positive) coordinates: on those, ReLU was the identity, and 2 rows of T determine x.
g = torch.Generator().manual_seed(0)
theta = torch.linspace(0.1, 4 * math.pi, 400)
spiral = torch.stack([theta * torch.cos(theta), theta * torch.sin(theta)], dim=1)    # (400, 2)


def recovered_share(n: int, trials: int = 50) -> float:
    shares = []
    for _ in range(trials):
        T = torch.randn(n, 2, dtype=torch.float64, generator=g)
        y = F.relu(T @ spiral.double().T)                              # (n, 400)
        active = y > 0
        ok = active.sum(dim=0) >= 2
        for j in torch.nonzero(ok).flatten()[:5]:                      # recovered from the active rows alone
            sol = torch.linalg.lstsq(T[active[:, j]], y[active[:, j], j, None]).solution.flatten()
            assert torch.allclose(sol, spiral[j].double(), atol=1e-6)
        shares.append(ok.double().mean().item())
    return sum(shares) / trials


kept = {n: recovered_share(n) for n in (2, 3, 5, 15, 30)}
claim("23%", kept[2])                                    # about 1/4: both half-planes must be active
claim("50%", kept[3])
claim("over 99.9%", kept[15]), claim("over 99.9%", kept[30])   # in a wide space, ReLU loses almost nothing
assert kept[2] < kept[3] < kept[5] < kept[15] <= kept[30]
# --8<-- [end:linear-bottleneck]


# --8<-- [start:shuffle]
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, g*k, H, W) -> view (N, g, k, H, W) -> swap g and k -> flatten back: channel i*k + j moves to j*g + i."""
    n, ch, h, w = x.shape
    return x.view(n, groups, ch // groups, h, w).transpose(1, 2).reshape(n, ch, h, w)


C, G = 12, 3
perm = channel_shuffle(torch.arange(C).float().view(1, C, 1, 1), G).flatten().long()
assert perm.tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
assert sorted(perm.tolist()) == list(range(C))                        # a permutation: nothing lost or copied
P = torch.eye(C)[perm]                                                # as a permutation matrix
assert torch.equal(P @ P.T, torch.eye(C))                             # orthogonal, so it is invertible ...
z = torch.randn(2, C, 5, 5)
assert torch.equal(channel_shuffle(channel_shuffle(z, G), C // G), z) # ... by shuffling with C/g groups
# After the shuffle, every group of the next group conv holds channels from every previous group,
# as evenly as the counts allow (C/g^2 from each when g^2 divides C).
for ch, gr in [(12, 3), (18, 3), (24, 4), (64, 8)]:
    p = channel_shuffle(torch.arange(ch).float().view(1, ch, 1, 1), gr).flatten().long()
    for grp in range(gr):
        counts = torch.bincount(p[grp * ch // gr:(grp + 1) * ch // gr] // (ch // gr), minlength=gr)
        assert counts.min() >= 1 and counts.max() - counts.min() <= 1


def input_groups_reached(shuffle: bool) -> int:
    """Two stacked 3-group 1x1 convs: how many input groups can output channel 0 see?"""
    torch.manual_seed(0)
    gc1, gc2 = nn.Conv2d(C, C, 1, groups=G), nn.Conv2d(C, C, 1, groups=G)
    inp = torch.randn(1, C, 4, 4, requires_grad=True)
    mid = gc1(inp)
    out = gc2(channel_shuffle(mid, G) if shuffle else mid)
    out[0, 0].sum().backward()
    touched = inp.grad[0].abs().sum(dim=(1, 2)) > 0
    return int(touched.view(G, C // G).any(dim=1).sum())


assert input_groups_reached(shuffle=False) == 1                       # stacked groups never mix
assert input_groups_reached(shuffle=True) == G                        # one shuffle connects all of them

# ShuffleNet unit vs ResNet and ResNeXt bottlenecks, c channels in/out, m in the bottleneck, g groups
# (Zhang et al., 2018): hw(2cm + 9m^2), hw(2cm + 9m^2/g), hw(2cm/g + 9m).
c_, m_, g_, s_ = 240, 60, 3, 28
units = {
    "ResNet": nn.Sequential(nn.Conv2d(c_, m_, 1), nn.Conv2d(m_, m_, 3, padding=1), nn.Conv2d(m_, c_, 1)),
    "ResNeXt": nn.Sequential(nn.Conv2d(c_, m_, 1), nn.Conv2d(m_, m_, 3, padding=1, groups=g_), nn.Conv2d(m_, c_, 1)),
    "ShuffleNet": nn.Sequential(nn.Conv2d(c_, m_, 1, groups=g_), nn.Conv2d(m_, m_, 3, padding=1, groups=m_),
                                nn.Conv2d(m_, c_, 1, groups=g_)),
}
feat = torch.randn(1, c_, s_, s_)
unit_macs = {k: flop_counter_macs(v, feat) for k, v in units.items()}
assert unit_macs["ResNet"] == s_ * s_ * (2 * c_ * m_ + 9 * m_ * m_)
assert unit_macs["ResNeXt"] == s_ * s_ * (2 * c_ * m_ + 9 * m_ * m_ // g_)
assert unit_macs["ShuffleNet"] == s_ * s_ * (2 * c_ * m_ // g_ + 9 * m_)
claim("6.0×", unit_macs["ResNet"] / unit_macs["ShuffleNet"])
claim("1.5×", unit_macs["ResNet"] / unit_macs["ResNeXt"])
# --8<-- [end:shuffle]


# --8<-- [start:efficientnet]
alpha, beta, gamma = 1.2, 1.1, 1.15                     # depth, width, resolution (Tan and Le, 2019)
claim("1.92", alpha * beta**2 * gamma**2)               # "approximately 2": FLOPs grow about 2^phi


def make_divisible(v: float, d: int = 8) -> int:
    """Channel rounding used by the reference EfficientNet and MobileNet code."""
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


class MBConv(nn.Module):
    """EfficientNet block: expand 1x1, depthwise k x k, SE (a quarter of the input width), project 1x1."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, t: int):
        super().__init__()
        hid, sq = make_divisible(c_in * t), max(1, c_in // 4)
        act = nn.SiLU()
        self.expand = (nn.Identity() if t == 1 else
                       nn.Sequential(nn.Conv2d(c_in, hid, 1, bias=False), nn.BatchNorm2d(hid), act))
        self.dw = nn.Sequential(nn.Conv2d(hid, hid, k, stride, k // 2, groups=hid, bias=False),
                                nn.BatchNorm2d(hid), act)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hid, sq, 1), act,
                                nn.Conv2d(sq, hid, 1), nn.Sigmoid())
        self.project = nn.Sequential(nn.Conv2d(hid, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(self.expand(x))
        h = self.project(h * self.se(h))
        return x + h if self.residual else h


B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]   # t, k, s, c_in, c_out, repeats


def efficientnet(width: float, depth: float, n_classes: int = 1000) -> nn.Sequential:
    stem = make_divisible(32 * width)
    layers = [nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.SiLU()]
    for t_, k, s, ci, co, n in B0:
        ci, co = make_divisible(ci * width), make_divisible(co * width)
        for i in range(math.ceil(n * depth)):
            layers.append(MBConv(ci if i == 0 else co, co, k, s if i == 0 else 1, t_))
    head_in = make_divisible(320 * width)
    layers += [nn.Conv2d(head_in, 4 * head_in, 1, bias=False), nn.BatchNorm2d(4 * head_in), nn.SiLU(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * head_in, n_classes)]
    return nn.Sequential(*layers)


def efficientnet_macs(width: float, depth: float, r: int) -> int:
    """The same network's conv and FC multiply-accumulates, layer by layer, without running it."""
    size = (r - 1) // 2 + 1                              # after the stride-2 stem
    stem = make_divisible(32 * width)
    total = size * size * 3 * stem * 9
    for t_, k, s, ci, co, n in B0:
        ci, co = make_divisible(ci * width), make_divisible(co * width)
        for i in range(math.ceil(n * depth)):
            c_in, stride = (ci, s) if i == 0 else (co, 1)
            hid, sq = make_divisible(c_in * t_), max(1, c_in // 4)
            total += 0 if t_ == 1 else size * size * c_in * hid      # expand 1x1, at the input size
            size = (size - 1) // stride + 1                           # "same" padding k // 2
            total += size * size * (hid * k * k + hid * co) + 2 * hid * sq   # depthwise, project, SE
    head_in = make_divisible(320 * width)
    return total + size * size * head_in * 4 * head_in + 4 * head_in * 1000


# The formula agrees with PyTorch's counter on the built B0 (one forward pass on the meta device).
with torch.device("meta"):
    b0 = efficientnet(1.0, 1.0)
assert flop_counter_macs(b0, torch.empty(1, 3, 224, 224, device="meta")) == efficientnet_macs(1.0, 1.0, 224)
with torch.device("meta"):                               # and on a scaled one (width and depth rounding)
    assert macs(efficientnet(1.1, 1.2), torch.empty(1, 3, 260, 260)) == efficientnet_macs(1.1, 1.2, 260)

# B0 to B7 as released: (width, depth, resolution). They are hand-rounded, not exact powers of 1.1, 1.2, 1.15.
RELEASED = {"B0": (1.0, 1.0, 224), "B1": (1.0, 1.1, 240), "B2": (1.1, 1.2, 260), "B3": (1.2, 1.4, 300),
            "B4": (1.4, 1.8, 380), "B5": (1.6, 2.2, 456), "B6": (1.8, 2.6, 528), "B7": (2.0, 3.1, 600)}
stats = {}
with torch.device("meta"):
    for name, (w, d, r) in RELEASED.items():
        stats[name] = (n_params(efficientnet(w, d)), efficientnet_macs(w, d, r))
claim("5,288,548", stats["B0"][0])                       # torchvision's efficientnet_b0
claim("66,347,960", stats["B7"][0])                      # torchvision's efficientnet_b7
# Parameters (M) and GMACs of each released model, for the page's table (the paper's Table 2 rounds them).
claim("5.29", stats["B0"][0] / 1e6), claim("0.39", stats["B0"][1] / 1e9)
claim("7.79", stats["B1"][0] / 1e6), claim("0.69", stats["B1"][1] / 1e9)
claim("9.11", stats["B2"][0] / 1e6), claim("0.99", stats["B2"][1] / 1e9)
claim("12.23", stats["B3"][0] / 1e6), claim("1.83", stats["B3"][1] / 1e9)
claim("19.34", stats["B4"][0] / 1e6), claim("4.39", stats["B4"][1] / 1e9)
claim("30.39", stats["B5"][0] / 1e6), claim("10.27", stats["B5"][1] / 1e9)
claim("43.04", stats["B6"][0] / 1e6), claim("19.07", stats["B6"][1] / 1e9)
claim("66.35", stats["B7"][0] / 1e6), claim("37.75", stats["B7"][1] / 1e9)

# Compound scaling with phi = 1, 2, 3 from the exact coefficients: the measured FLOP growth per step
# stays close to alpha * beta^2 * gamma^2, with channel and layer rounding moving it a little.
growth = {phi: (efficientnet_macs(beta**phi, alpha**phi, round(224 * gamma**phi)) / stats["B0"][1]) ** (1 / phi)
          for phi in (1, 2, 3)}
claim("2.57×", growth[1])       # ceil(1 x 1.2) = 2: every one-block stage doubles at phi = 1
claim("2.17×", growth[2])
claim("2.03×", growth[3])       # the rounding matters less as the net grows
# Each released model sits at (alpha beta^2 gamma^2)^phi of B0's FLOPs for some phi, solved for here:
phis = {name: math.log(m / stats["B0"][1]) / math.log(alpha * beta**2 * gamma**2) for name, (_, m) in stats.items()}
claim("φ ≈ 7.0", phis["B7"])
assert all(phis[a] < phis[b] for a, b in zip(list(phis)[:-1], list(phis)[1:]))
# --8<-- [end:efficientnet]

print(f"inverted residual: {weights:,} weights, {n_params(block):,} params, {macs(block, x) / 1e6:.2f}M MACs; "
      f"MobileNetV2 {n_params(mnv2):,} params, {mnv2_macs / 1e6:.0f}M MACs")
print(f"ReLU: points recovered {', '.join(f'n={n}: {e:.1%}' for n, e in kept.items())}; growth per phi {growth}")
print(f"units (MMACs): {', '.join(f'{k} {v / 1e6:.1f}' for k, v in unit_macs.items())}")
print("EfficientNet:", {k: (f"{p / 1e6:.2f}M", f"{m / 1e9:.2f}G", f"phi {phis[k]:.2f}") for k, (p, m) in stats.items()})

# The figure: the shuffle of 12 channels in 3 groups, as the permutation it is.
colors = ["tab:blue", "tab:orange", "tab:green"]
k = C // G
fig, ax = plt.subplots(figsize=(5.6, 3.4))
for out_pos, src in enumerate(perm.tolist()):
    ax.plot([0, 1], [C - 1 - src, C - 1 - out_pos], c=colors[src // k], lw=1.4, alpha=0.8)
for ch in range(C):
    ax.scatter([0], [C - 1 - ch], c=colors[ch // k], s=40, zorder=3)
    ax.scatter([1], [C - 1 - ch], c=colors[perm[ch].item() // k], s=40, zorder=3)
for grp in range(1, G):                                     # group boundaries, before and after
    ax.axhline(C - grp * k - 0.5, c="0.75", ls="--", lw=0.8)
ax.text(0, C + 0.2, "group conv output\n(3 groups of 4 channels)", ha="center", fontsize=8)
ax.text(1, C + 0.2, "input of the next group conv\n(each group now mixed)", ha="center", fontsize=8)
ax.set(xlim=(-0.5, 1.5), ylim=(-1, C + 1.6), xticks=[], yticks=[],
       title="Channel shuffle: view (g, k), transpose, flatten")
for side in ax.spines.values():
    side.set_visible(False)
save(fig, "cv-deep-learning", "channel-shuffle")
