"""A small FPN: output strides and shapes, parameters, receptive fields through the top-down path, odd input
sizes; FPN's RoI level assignment on boxes of several sizes; and the cost and arithmetic of small objects."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from _figures import save
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:fpn]
def stage(c_in: int, c_out: int) -> nn.Sequential:
    """One backbone stage: halve the resolution, then a second 3x3 conv."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU())


class Backbone(nn.Module):
    """A tiny ResNet-shaped backbone: C2..C5 at strides 4, 8, 16, 32."""

    def __init__(self, widths=(32, 64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, stride=2, padding=1), nn.ReLU())
        self.stages = nn.ModuleList(stage(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x):
        x, feats = self.stem(x), []
        for s in self.stages:
            x = s(x)
            feats.append(x)
        return feats                                            # [C2, C3, C4, C5]


class FPN(nn.Module):
    """Lin et al. (2017): 1x1 lateral convs to d channels, top-down nearest-neighbour upsampling and
    addition, a 3x3 conv on each merged map, and P6 as a stride-2 subsampling of P5."""

    def __init__(self, in_channels, d: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, d, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in in_channels)

    def forward(self, feats):
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        merged = [laterals[-1]]                                 # start at the top, C5
        for lat in reversed(laterals[:-1]):
            up = F.interpolate(merged[0], size=lat.shape[-2:], mode="nearest")   # size=, not scale_factor=2
            merged.insert(0, lat + up)
        outs = [conv(m) for conv, m in zip(self.smooth, merged)]            # P2..P5
        return outs + [F.max_pool2d(outs[-1], kernel_size=1, stride=2)]     # + P6


backbone, fpn = Backbone(), FPN(in_channels=(64, 128, 256, 512), d=64)
image = torch.randn(1, 3, 512, 512)
pyramid = fpn(backbone(image))
strides = [512 // p.shape[-1] for p in pyramid]
assert strides == [4, 8, 16, 32, 64]
assert [tuple(p.shape[1:]) for p in pyramid] == [(64, 128, 128), (64, 64, 64), (64, 32, 32), (64, 16, 16), (64, 8, 8)]

# With ResNet-50's stage widths and d = 256, the FPN adds 4 laterals and 4 smoothing convs:
resnet50_fpn = FPN(in_channels=(256, 512, 1024, 2048), d=256)
n_params = sum(p.numel() for p in resnet50_fpn.parameters())
assert n_params == sum(c * 256 + 256 for c in (256, 512, 1024, 2048)) + 4 * (9 * 256 * 256 + 256)
claim("3,344,384", n_params)

# An input size that is not a multiple of 32 gives odd maps: 600 -> 150, 75, 38, 19. Upsampling by a
# fixed factor 2 then misses the lateral's size (38 -> 76, not 75); upsampling to the lateral's size works.
odd = backbone(torch.randn(1, 3, 600, 1000))
assert [f.shape[-2] for f in odd] == [150, 75, 38, 19]
assert F.interpolate(odd[2], scale_factor=2.0).shape[-2] == 76 != odd[1].shape[-2]
assert [p.shape[-2] for p in fpn(odd)] == [150, 75, 38, 19, 10]
# --8<-- [end:fpn]


# --8<-- [start:receptive-field]
def receptive_side(output: torch.Tensor, x: torch.Tensor) -> int:
    """Side of the input window whose pixels change the centre unit of `output` (measured by gradient)."""
    h, w = output.shape[-2:]
    (g,) = torch.autograd.grad(output[0, :, h // 2, w // 2].sum(), x, retain_graph=True)
    rows = torch.nonzero(g[0].abs().sum(0).sum(1))
    return int(rows.max() - rows.min() + 1)


x = torch.randn(1, 3, 512, 512, requires_grad=True)
c2, c3, c4, c5 = backbone(x)
p2 = fpn([c2, c3, c4, c5])[0]
rf_c2, rf_c5, rf_p2 = receptive_side(c2, x), receptive_side(c5, x), receptive_side(p2, x)
claim("15 px", rf_c2)                   # stem 3 -> stage conv 7 -> second conv 15: local texture only
claim("183 px", rf_c5)
claim("over 200 px", rf_p2)             # the same stride-4 resolution, with C5's context added top-down
assert rf_p2 > rf_c5 > rf_c2


# The toy backbone is shallow. ResNet-50's C2, by the textbook recursion r += (k - 1) * jump: a 7x7/2 conv,
# a 3x3/2 max-pool, then three bottlenecks with one 3x3 conv each at stride 4. Still local.
def theoretical_rf(layers: list[tuple[int, int]]) -> int:
    r, jump = 1, 1
    for k, s in layers:
        r, jump = r + (k - 1) * jump, jump * s
    return r


claim("35 px", theoretical_rf([(7, 2), (3, 2)] + [(3, 1)] * 3))
# --8<-- [end:receptive-field]


# --8<-- [start:levels]
def fpn_level(w, h, k0: int = 4, canonical: float = 224.0, k_min: int = 2, k_max: int = 5):
    """FPN's RoI-to-level rule: k = floor(k0 + log2(sqrt(w h) / 224)), clamped to P2..P5."""
    k = np.floor(k0 + np.log2(np.sqrt(np.asarray(w) * np.asarray(h)) / canonical + 1e-8))
    return np.clip(k, k_min, k_max).astype(int)


boxes = {"16 x 16": (16, 16), "32 x 32": (32, 32), "64 x 64": (64, 64), "112 x 112": (112, 112),
         "200 x 100": (200, 100), "224 x 224": (224, 224), "448 x 112": (448, 112), "300 x 300": (300, 300),
         "448 x 448": (448, 448), "1000 x 800": (1000, 800)}
levels = {name: int(fpn_level(w, h)) for name, (w, h) in boxes.items()}
assert levels == {"16 x 16": 2, "32 x 32": 2, "64 x 64": 2, "112 x 112": 3, "200 x 100": 3, "224 x 224": 4,
                  "448 x 112": 4, "300 x 300": 4, "448 x 448": 5, "1000 x 800": 5}
cells = {name: math.sqrt(w * h) / 2 ** levels[name] for name, (w, h) in boxes.items()}   # RoI side in cells

# Away from the clamps, every RoI spans 14 to 28 cells of its level: the 224-px canonical box spans
# 224 / 16 = 14 cells of P4, two per bin of a 7 x 7 RoIAlign.
sides = np.arange(8, 2048, 0.25)
span = sides / 2.0 ** fpn_level(sides, sides)
unclamped = (span >= 14) & (span < 28)
claim("56 px", sides[unclamped].min()), claim("896 px", sides[unclamped].max() + 0.25)
assert unclamped[(sides >= 56) & (sides < 896)].all()
claim("4 cells", cells["16 x 16"])                              # below 56 px the clamp at P2 leaves fewer
claim("14 cells", cells["224 x 224"])
# --8<-- [end:levels]


# --8<-- [start:cost]
# The FPN's own multiply-accumulates on an 800 x 1344 input (C2..C5 at 200 x 336 down to 25 x 42):
# the stride-4 level dominates, which is why RetinaNet starts at P3.
d, widths = 256, (256, 512, 1024, 2048)
hw = [(800 // s) * (1344 // s) for s in (4, 8, 16, 32)]
macs = [c * d * n + 9 * d * d * n for c, n in zip(widths, hw)]          # lateral 1x1 + smoothing 3x3
claim("72%", macs[0] / sum(macs))
claim("61G", sum(macs))
claim("3.6 times", sum(macs) / sum(macs[1:]))                     # P2-P5 against P3-P5 alone

# A 2-px error in x and y costs a 16-px box far more IoU than a 64-px one.
iou_shift = lambda side, e: (side - e) ** 2 / (2 * side**2 - (side - e) ** 2)
claim("0.62", iou_shift(16, 2)), claim("0.88", iou_shift(64, 2))

# Downscaling a 4K frame to a 640-px input shrinks a 30-px object to 5 px, less than a stride-8 cell.
# Tiling at native resolution instead: 640-px tiles with 128 px of overlap.
scale = 3840 / 640
claim("5 px", 30 / scale)
tiles = math.ceil((3840 - 128) / (640 - 128)) * math.ceil((2160 - 128) / (640 - 128))
claim("32 tiles", tiles)
# --8<-- [end:cost]
print(f"FPN (ResNet-50 widths): {n_params:,} parameters; RF C2 {rf_c2}, C5 {rf_c5}, P2 {rf_p2} px; "
      f"levels {levels}; P2 share of FPN MACs {macs[0] / sum(macs):.1%} of {sum(macs) / 1e9:.1f}G")

# Figure: the level-assignment rule and the RoI side in cells of the chosen level.
fig, ax1 = plt.subplots(figsize=(7.5, 3.4))
ax1.step(sides, fpn_level(sides, sides), where="post", color="tab:blue", lw=1.8)
ax1.set(xscale="log", xlabel="box side sqrt(w h), px", ylabel="FPN level k (P_k)", yticks=[2, 3, 4, 5],
        xlim=(8, 2048))
ax1.tick_params(axis="y", colors="tab:blue")
ax2 = ax1.twinx()
ax2.plot(sides, span, color="tab:red", lw=1.2)
ax2.axhspan(14, 28, color="tab:red", alpha=0.08)
ax2.set_ylabel("RoI side in cells of its level", color="tab:red")
ax2.set(yscale="log", ylim=(1, 200))
ax2.tick_params(axis="y", colors="tab:red")
for x0 in (56, 896):
    ax1.axvline(x0, color="0.5", ls=":", lw=1)
ax1.text(120, 2.25, "red band: 14-28 cells, reached between 56 and 896 px", fontsize=8, color="tab:red")
ax1.set_title("k = floor(4 + log2(sqrt(wh) / 224)), clamped to P2-P5", fontsize=9)
save(fig, "detection-and-segmentation", "fpn-levels")
