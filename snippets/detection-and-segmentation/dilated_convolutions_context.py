"""Dilated convolutions: receptive field by formula and by gradient, the gridding of stacked dilation 2, ASPP and
PPM shapes.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:rf]
def rf_formula(layers: list[tuple[int, int, int]]) -> int:
    """r = 1 + sum_l (k_l - 1) d_l prod_{i<l} s_i, for layers (kernel, stride, dilation)."""
    r, jump = 1, 1
    for k, s, d in layers:
        r += (k - 1) * d * jump
        jump *= s
    return r


def rf_measured(layers: list[tuple[int, int, int]], size: int = 129) -> tuple[int, np.ndarray]:
    """Width of the input region with a non-zero gradient for the centre output, and that region."""
    convs = [nn.Conv2d(1, 1, k, stride=s, dilation=d, padding=d * (k - 1) // 2, bias=False) for k, s, d in layers]
    for c in convs:
        nn.init.constant_(c.weight, 1.0)                  # positive weights: no accidental cancellation
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    y = nn.Sequential(*convs)(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    touched = (x.grad[0, 0] != 0).numpy()
    cols = np.flatnonzero(touched.any(0))
    return int(cols[-1] - cols[0] + 1), touched


stacks = {"three 3×3": [(3, 1, 1)] * 3,
          "3×3 with dilation 1, 2, 4": [(3, 1, 1), (3, 1, 2), (3, 1, 4)],
          "stride 2 then dilation 2": [(3, 2, 1), (3, 1, 2), (3, 1, 2)],
          "dilation 1, 2, 4, 8, 16": [(3, 1, 2**i) for i in range(5)]}
for name, layers in stacks.items():
    assert rf_formula(layers) == rf_measured(layers)[0], name
claim("7", rf_formula(stacks["three 3×3"]))
claim("15", rf_formula(stacks["3×3 with dilation 1, 2, 4"]))
claim("63", rf_formula(stacks["dilation 1, 2, 4, 8, 16"]))
claim("19", rf_formula(stacks["stride 2 then dilation 2"]))
# --8<-- [end:rf]


# --8<-- [start:gridding]
def coverage(dilations: list[int]) -> tuple[int, float, np.ndarray]:
    """Receptive field of stacked 3x3 layers, and the share of it that actually reaches the output."""
    width, touched = rf_measured([(3, 1, d) for d in dilations])
    rows, cols = np.flatnonzero(touched.any(1)), np.flatnonzero(touched.any(0))
    window = touched[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return width, float(window.mean()), window


w_222, share_222, grid_222 = coverage([2, 2, 2])
w_123, share_123, grid_123 = coverage([1, 2, 3])
assert w_222 == w_123                                        # the same receptive field ...
claim("13", w_222)
claim("29%", share_222)                                      # ... but dilation 2 only sees even offsets
assert grid_222[1::2, :].sum() == 0 and grid_222[:, 1::2].sum() == 0
claim("100%", share_123)                                     # HDC-style 1, 2, 3 covers every pixel
# --8<-- [end:gridding]


# --8<-- [start:aspp]
def conv_bn(c_in: int, c_out: int, k: int = 1, d: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=d * (k - 1) // 2, dilation=d, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class ASPP(nn.Module):
    """DeepLabv3: a 1x1 branch, three 3x3 atrous branches and image-level pooling, concatenated."""

    def __init__(self, c_in: int = 2048, c: int = 256, rates=(6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn(c_in, c)] + [conv_bn(c_in, c, 3, r) for r in rates])
        self.pool = conv_bn(c_in, c)
        self.project = conv_bn(c * (len(rates) + 2), c)

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        g = self.pool(F.adaptive_avg_pool2d(x, 1))            # the whole image in one vector
        outs.append(F.interpolate(g, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, 1))


class PyramidPooling(nn.Module):
    """PSPNet: average-pool to 1x1, 2x2, 3x3, 6x6 bins, reduce to C/4, upsample, concatenate with x."""

    def __init__(self, c_in: int = 2048, bins=(1, 2, 3, 6)):
        super().__init__()
        self.bins = bins
        self.reduce = nn.ModuleList([conv_bn(c_in, c_in // len(bins)) for _ in bins])

    def forward(self, x):
        outs = [x] + [F.interpolate(r(F.adaptive_avg_pool2d(x, b)), size=x.shape[-2:], mode="bilinear",
                                    align_corners=False) for b, r in zip(self.bins, self.reduce)]
        return torch.cat(outs, 1)


# Real widths for the parameter counts; a narrow copy (same code) for the forward pass.
with torch.device("meta"):                                     # shapes only: counted, never initialised
    full_aspp, full_ppm = ASPP(), PyramidPooling()
claim("15.5M", sum(p.numel() for p in full_aspp.parameters()))
claim("4.2M", sum(p.numel() for p in full_ppm.parameters()))
x = torch.randn(2, 64, 33, 33)                                 # a 513x513 crop at output stride 16
aspp, ppm = ASPP(64, 16).eval(), PyramidPooling(64).eval()
with torch.no_grad():
    assert aspp(x).shape == (2, 16, 33, 33)                    # same resolution, all branches fused
    assert ppm(x).shape == (2, 128, 33, 33)                    # C + 4 * C/4 = 2C channels
    for b in aspp.branches:
        assert b[0](x).shape == x.shape[:1] + (16, 33, 33)     # padding = rate keeps the size
# --8<-- [end:aspp]


# --8<-- [start:degenerate]
# A 3x3 filter with rate 24 on a 17x17 map: every tap but the centre falls on padding, so it is a 1x1.
conv = nn.Conv2d(8, 8, 3, padding=24, dilation=24, bias=False)
z = torch.randn(1, 8, 17, 17)
with torch.no_grad():
    assert torch.allclose(conv(z), F.conv2d(z, conv.weight[:, :, 1:2, 1:2]), atol=1e-6)
# --8<-- [end:degenerate]

fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
for ax, grid, title in [(axes[0], grid_222, f"dilation 2, 2, 2: {share_222:.0%} of the window"),
                        (axes[1], grid_123, f"dilation 1, 2, 3: {share_123:.0%} of the window")]:
    ax.imshow(grid, cmap="Blues", interpolation="nearest", vmin=0, vmax=1.3)
    ax.set_title(title, fontsize=9)
    ax.set(xticks=[], yticks=[])
fig.suptitle("Input pixels that reach one output of three stacked 3×3 convolutions", fontsize=10)
save(fig, "detection-and-segmentation", "dilation-gridding")
