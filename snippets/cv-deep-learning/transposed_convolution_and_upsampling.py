"""Transposed convolution as the adjoint of a convolution; its output size; where checkerboards come from;
bilinear, sub-pixel and resize-conv upsampling.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
torch.set_default_dtype(torch.float64)   # exact comparisons of linear maps

# --8<-- [start:adjoint]
# A stride-2 3x3 convolution, 2 -> 3 channels, on a 7x7 input: a linear map A from R^98 to R^48.
w = torch.randn(3, 2, 3, 3)                        # Conv2d layout: (C_out, C_in, k, k)
conv = lambda x: F.conv2d(x, w, stride=2, padding=1)
convT = lambda y: F.conv_transpose2d(y, w, stride=2, padding=1)   # the SAME tensor w

# Build A column by column: the conv applied to each basis image.
basis = torch.eye(2 * 7 * 7).reshape(-1, 2, 7, 7)
A = conv(basis).reshape(98, -1).T                  # shape (48, 98)
assert A.shape == (3 * 4 * 4, 2 * 7 * 7)

# conv_transpose2d is A^T, exactly: it maps the 3x4x4 output space back to 2x7x7.
y = torch.randn(1, 3, 4, 4)
assert torch.allclose(convT(y).flatten(), A.T @ y.flatten())
# The defining identity of the adjoint, <Ax, y> = <x, A^T y>, for random x and y.
x = torch.randn(1, 2, 7, 7)
lhs, rhs = (conv(x) * y).sum(), (x * convT(y)).sum()
assert torch.allclose(lhs, rhs, rtol=1e-12)
# It is also what backprop computes: the gradient of a conv with respect to its input.
xg = x.clone().requires_grad_()
(g,) = torch.autograd.grad(conv(xg), xg, grad_outputs=y)
assert torch.allclose(g, convT(y))

# The "fractionally strided" view: insert s-1 zeros between input pixels, pad by k-1-p,
# and run an ordinary stride-1 conv with the kernel flipped and its in/out channels swapped.
def zero_insert(y: torch.Tensor, s: int) -> torch.Tensor:
    n, c, h, w_ = y.shape
    out = y.new_zeros(n, c, (h - 1) * s + 1, (w_ - 1) * s + 1)
    out[..., ::s, ::s] = y
    return out


w_flip = w.flip(-1, -2).transpose(0, 1)            # (C_in, C_out, k, k) -> a conv from 3 to 2 channels
assert torch.allclose(F.conv2d(zero_insert(y, 2), w_flip, padding=3 - 1 - 1), convT(y))

# Transposed is not inverse: A^T A is not the identity, so convT(conv(x)) does not give x back.
rel_err = ((convT(conv(x)) - x).norm() / x.norm()).item()
assert not torch.allclose(A.T @ A, torch.eye(98)) and rel_err > 0.5
# --8<-- [end:adjoint]

# --8<-- [start:sizes]
def conv_transpose_out(n: int, k: int, s: int = 1, p: int = 0, op: int = 0, d: int = 1) -> int:
    """PyTorch's ConvTranspose2d output size along one axis."""
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


checked = 0
for n in (1, 4, 7, 13):
    for k in (1, 2, 3, 4, 5):
        for s in (1, 2, 3):
            for p in range(k):
                for op in range(s):                 # PyTorch: output_padding < stride
                    for d in (1, 2):
                        layer = nn.ConvTranspose2d(1, 1, k, s, p, output_padding=op, dilation=d)
                        expected = conv_transpose_out(n, k, s, p, op, d)
                        if expected < 1:
                            continue
                        assert layer(torch.zeros(1, 1, n, n)).shape[-1] == expected
                        checked += 1
claim("691 combinations", checked)

# A stride-2 conv maps 7 and 8 to the same 4, so its transpose must be told which one to restore.
down = nn.Conv2d(1, 1, 3, stride=2, padding=1)
assert down(torch.zeros(1, 1, 7, 7)).shape[-1] == down(torch.zeros(1, 1, 8, 8)).shape[-1] == 4
up = nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1)
assert up(torch.zeros(1, 1, 4, 4)).shape[-1] == 7                       # the default picks 7
assert nn.ConvTranspose2d(1, 1, 3, 2, 1, output_padding=1)(torch.zeros(1, 1, 4, 4)).shape[-1] == 8
assert up(torch.zeros(1, 1, 4, 4), output_size=[8, 8]).shape[-1] == 8   # or pass output_size

# The settings that double the size exactly: (k, s, p, output_padding) = (4,2,1,0), (2,2,0,0), (3,2,1,1).
for k, s, p, op in [(4, 2, 1, 0), (2, 2, 0, 0), (3, 2, 1, 1)]:
    assert all(conv_transpose_out(n, k, s, p, op) == 2 * n for n in range(1, 64))
# --8<-- [end:sizes]

# --8<-- [start:overlap]
def contributions(layer: nn.Module, n: int = 12) -> torch.Tensor:
    """How many (input pixel, kernel tap) pairs land on each output pixel: all-ones weights and input."""
    for prm in layer.parameters():
        nn.init.ones_(prm) if prm.dim() > 1 else nn.init.zeros_(prm)
    with torch.no_grad():
        out = layer(torch.ones(1, 1, n, n))[0, 0]
    return out[4:-4, 4:-4]                          # the interior: borders see fewer taps anyway


def resize_conv(k: int = 3) -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(1, 1, k, padding=k // 2))


t3 = contributions(nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1))
t4 = contributions(nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1))
rc = contributions(resize_conv())
assert sorted(t3.unique().tolist()) == [1.0, 2.0, 4.0]     # k=3, s=2: uneven, a checkerboard
assert t3[0::2, 0::2].unique().numel() == 1 and t3[0, 0] != t3[0, 1] != t3[1, 1]
assert t4.unique().tolist() == [4.0]                       # k=4, s=2: every pixel gets 2 x 2 taps
assert rc.unique().tolist() == [9.0]                       # resize, then 3x3 conv: 9 taps everywhere
claim("4 times", t3.max() / t3.min())                      # the densest pixels get 4x the sparsest


# The rule: along one axis, output pixel i receives the taps j = i + p - s*m, i.e. those with
# j = i + p (mod s): ceil(k/s) or floor(k/s) of them. Even overlap <=> s divides k.
def taps_per_pixel(k: int, s: int) -> set[int]:
    return {sum(1 for j in range(k) if j % s == r) for r in range(s)}


for k in range(1, 8):
    for s in range(1, 5):
        assert (len(taps_per_pixel(k, s)) == 1) == (k % s == 0)
        line = nn.ConvTranspose1d(1, 1, k, stride=s, bias=False)
        nn.init.ones_(line.weight)
        with torch.no_grad():
            interior = line(torch.ones(1, 1, 20))[0, 0, k:-k]
        assert set(interior.unique().int().tolist()) == taps_per_pixel(k, s)

# The same pattern appears in the backward pass of a strided conv: its input gradient is A^T of a
# uniform upstream gradient, so a k=3, s=2 conv (e.g. in a discriminator) hands its input a 1/2/4 grid.
xin = torch.ones(1, 1, 12, 12, requires_grad=True)
F.conv2d(xin, torch.ones(1, 1, 3, 3), stride=2, padding=1).sum().backward()
assert sorted(xin.grad[0, 0, 3:-3, 3:-3].unique().tolist()) == [1.0, 2.0, 4.0]
# --8<-- [end:overlap]

# --8<-- [start:phases]
# Even overlap is not enough. A stride-2 transposed conv is four independent sub-kernels, one per
# output phase (even/odd row x even/odd column). Written out for k=4, s=2, p=1: output pixel 2a+r
# takes input a-1+t with kernel index r + 3 - 2t (when it lies in 0..3).
def transposed_as_subpixel(wt: torch.Tensor) -> torch.Tensor:
    """ConvTranspose2d(k=4, s=2, p=1) weights (C_in, C_out, 4, 4) -> a 3x3 conv to 4*C_out channels."""
    c_in, c_out = wt.shape[:2]
    kernel = wt.new_zeros(c_out, 2, 2, c_in, 3, 3)
    for ry in range(2):
        for rx in range(2):
            for ty in range(3):
                for tx in range(3):
                    iy, ix = ry + 3 - 2 * ty, rx + 3 - 2 * tx
                    if 0 <= iy < 4 and 0 <= ix < 4:
                        kernel[:, ry, rx, :, ty, tx] = wt[:, :, iy, ix].T
    return kernel.reshape(4 * c_out, c_in, 3, 3)   # channel order c*4 + ry*2 + rx, as pixel_shuffle reads it


wt = torch.randn(5, 2, 4, 4)
z = torch.randn(1, 5, 9, 9)
ref = F.conv_transpose2d(z, wt, stride=2, padding=1)
sub = F.pixel_shuffle(F.conv2d(z, transposed_as_subpixel(wt), padding=1), 2)
assert torch.allclose(ref, sub)                    # transposed conv == LR conv + pixel shuffle

# On a flat input, each phase outputs the sum of its own sub-kernel. With random weights the four
# sums differ, so even k=4, s=2 paints a 2x2-periodic pattern; resize-then-conv shares one kernel
# across the phases and stays flat, whatever its weights.
def phase_values(layer: nn.Module) -> int:
    with torch.no_grad():
        out = layer(torch.ones(1, 1, 12, 12))[0, 0, 4:-4, 4:-4]
    return out.round(decimals=9).unique().numel()


torch.manual_seed(1)
claim("4 distinct values", phase_values(nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1)))
assert phase_values(resize_conv()) == 1

# ICNR (Aitken et al., 2017): initialise a sub-pixel conv with the same kernel in all four phases.
# It then equals "conv at low resolution, then nearest-neighbour resize": no checkerboard at init.
lr_conv = nn.Conv2d(1, 1, 3, padding=1)
icnr = nn.Conv2d(1, 4, 3, padding=1)
with torch.no_grad():
    icnr.weight.copy_(lr_conv.weight.repeat(4, 1, 1, 1))
    icnr.bias.copy_(lr_conv.bias.repeat(4))
img = torch.randn(1, 1, 9, 9)
assert torch.allclose(F.pixel_shuffle(icnr(img), 2), F.interpolate(lr_conv(img), scale_factor=2, mode="nearest"))

# The frequency view, in 1-D. Zero insertion repeats the spectrum: the DFT of the zero-inserted
# signal is the input's DFT tiled twice, so an image of the signal sits at the new Nyquist frequency.
sig = torch.randn(16)
up = torch.zeros(32)
up[::2] = sig
assert torch.allclose(torch.fft.fft(up), torch.fft.fft(sig).repeat(2))
# On a flat input the output's Nyquist component is the kernel's response at pi, the alternating sum
# w0 - w1 + w2 - w3: the difference of the two phase sums. Flat in, flat out <=> W(pi) = 0.
def nyquist_response(k1: torch.Tensor) -> float:
    return (k1 * (-1.0) ** torch.arange(k1.numel())).sum().item()


def flat_output_values(k1: torch.Tensor) -> int:
    out = F.conv_transpose1d(torch.ones(1, 1, 16), k1.view(1, 1, -1), stride=2, padding=1)[0, 0, 4:-4]
    return out.round(decimals=9).unique().numel()


for k1 in [torch.randn(4), torch.tensor([0.25, 0.75, 0.75, 0.25]), torch.ones(3)]:
    assert (flat_output_values(k1) == 1) == (abs(nyquist_response(k1)) < 1e-12)
assert nyquist_response(torch.tensor([0.25, 0.75, 0.75, 0.25])) == 0       # bilinear: no image left
# --8<-- [end:phases]

# --8<-- [start:bilinear]
# Bilinear x2 (align_corners=False) is a FIXED transposed conv: kernel [1, 3, 3, 1]/4 in each axis,
# stride 2, padding 1, applied per channel, on the input padded by edge replication.
C = 3
taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
bil_w = torch.outer(taps, taps).expand(C, 1, 4, 4)          # groups=C: one fixed filter per channel
feat = torch.randn(1, C, 8, 8)
padded = F.pad(feat, (1, 1, 1, 1), mode="replicate")
as_convT = F.conv_transpose2d(padded, bil_w, stride=2, padding=1, groups=C)[..., 2:-2, 2:-2]
assert torch.allclose(as_convT, F.interpolate(feat, scale_factor=2, mode="bilinear", align_corners=False))
# align_corners=True samples a different grid (corner pixels aligned): not the same upsampling.
assert not torch.allclose(as_convT, F.interpolate(feat, scale_factor=2, mode="bilinear", align_corners=True))
# Each of its four sub-kernels sums to 1, so it never paints a checkerboard. FCN initialises its
# learned upsampling with exactly this kernel (Long et al., 2015).
assert torch.allclose(bil_w[0, 0].reshape(2, 2, 2, 2).sum(dim=(0, 2)), torch.ones(2, 2))

# Cost of a 2x upsampling of an n x n map, C -> C channels (MACs):
n, c = 32, 64
macs = {
    "transposed k=4, s=2": n * n * c * c * 16,      # every input pixel scatters a 4x4 footprint
    "resize + conv 3x3": (2 * n) ** 2 * c * c * 9,  # the conv runs at the high resolution
    "sub-pixel conv 3x3": n * n * c * (4 * c) * 9,  # the conv runs at low resolution, with 4C outputs
}
claim("2.25×", macs["resize + conv 3x3"] / macs["transposed k=4, s=2"])
assert macs["sub-pixel conv 3x3"] == macs["resize + conv 3x3"]
# Sub-pixel conv: the same MACs as resize-conv but 4x the weights (Shi et al., 2016).
assert nn.Conv2d(c, 4 * c, 3).weight.numel() == 4 * nn.Conv2d(c, c, 3).weight.numel()
# --8<-- [end:bilinear]

print(f"adjoint: <Ax,y> = {lhs:.6f}, <x,A^T y> = {rhs:.6f}; ||convT(conv(x)) - x|| / ||x|| = {rel_err:.2f}")
print(f"sizes checked: {checked}; k3s2 taps {sorted(t3.unique().tolist())}, k4s2 {t4.unique().tolist()}, "
      f"resize-conv {rc.unique().tolist()}")

# The figure: a flat input through four 2x upsamplers.
torch.manual_seed(1)
panels = [  # title, layer, all-ones weights?, distinct values the panel must show
    ("transposed k=3, s=2\nall-ones weights: 1/2/4 taps", nn.ConvTranspose2d(1, 1, 3, 2, 1), True, 3),
    ("transposed k=4, s=2\nrandom weights: 4 phase values", nn.ConvTranspose2d(1, 1, 4, 2, 1), False, 4),
    ("nearest resize + conv 3x3\nrandom weights: flat", resize_conv(), False, 1),
    ("sub-pixel conv, ICNR init\nrandom weights: flat", nn.Sequential(icnr, nn.PixelShuffle(2)), False, 1),
]
fig, axes = plt.subplots(1, 4, figsize=(11, 3.1))
for ax, (title, layer, ones, n_values) in zip(axes, panels):
    if ones:
        out = contributions(layer)
    else:
        with torch.no_grad():
            out = layer(torch.ones(1, 1, 12, 12))[0, 0, 4:-4, 4:-4]
    assert out.round(decimals=9).unique().numel() == n_values, title
    ax.imshow(out.numpy(), cmap="gray", vmin=out.min().item() - 1e-3, vmax=out.max().item() + 1e-3)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
save(fig, "cv-deep-learning", "transposed-conv-checkerboard")
