"""Dense vs convolutional layers: parameter counts, translation equivariance, and a conv as a matrix."""
from __future__ import annotations

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


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --8<-- [start:params]
# Map a 3x32x32 image to 16x32x32 feature maps, two ways.
C_in, C_out, H, W, k = 3, 16, 32, 32, 3
conv = nn.Conv2d(C_in, C_out, kernel_size=k, padding=1)
dense = nn.Linear(C_in * H * W, C_out * H * W, device="meta")     # shapes only, no 200 MB

assert n_params(conv) == C_out * C_in * k * k + C_out
assert n_params(dense) == (C_in * H * W) * (C_out * H * W) + C_out * H * W
claim("448", n_params(conv))
claim("50,348,032", n_params(dense))
claim("about 50 million", n_params(dense) / 1e6)                  # in millions
claim("112,384", n_params(dense) / n_params(conv))              # five orders of magnitude

# Multiply-accumulates: the conv's weights are reused at every one of the H*W positions.
conv_macs = C_out * H * W * C_in * k * k
dense_macs = (C_in * H * W) * (C_out * H * W)
claim("442,368", conv_macs)
claim("50,331,648", dense_macs)
claim("987", conv_macs // n_params(conv))                        # multiply-adds per weight
assert dense_macs // n_params(dense) == 0                        # under one per weight (the bias)
# The conv's count does not depend on the image size; the dense layer's grows with (H*W)^2.
assert n_params(nn.Conv2d(C_in, C_out, k, padding=1)) == n_params(conv)
claim("about 121 billion", (C_in * 224 * 224) * (C_out * 224 * 224) / 1e9)   # in billions
# Even as a classifier head, a dense layer is where the parameters go: VGG-16's first FC layer
# (7x7x512 -> 4096) alone holds 102.8M of the network's 138M (Simonyan and Zisserman, 2015).
claim("102.8M", n_params(nn.Linear(7 * 7 * 512, 4096, device="meta")))
# Each kernel spans all input channels: 64 -> 128 and 256 -> 256 channels, 3x3.
claim("73,856", n_params(nn.Conv2d(64, 128, 3)))
claim("590,080", n_params(nn.Conv2d(256, 256, 3)))
# --8<-- [end:params]

# --8<-- [start:equivariance]
x = torch.randn(1, C_in, H, W)


def shift(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.roll(t, shifts=(dy, dx), dims=(-2, -1))


# With circular padding, conv(shift(x)) == shift(conv(x)) exactly, for every shift.
circ = nn.Conv2d(C_in, C_out, k, padding=1, padding_mode="circular")
with torch.no_grad():
    for dy, dx in [(1, 0), (0, 5), (7, -3)]:
        assert torch.allclose(circ(shift(x, dy, dx)), shift(circ(x), dy, dx), atol=1e-5)

    # With zero padding it holds away from the image border (where padding and wrap-around differ).
    a, b = conv(shift(x, 2, 3)), shift(conv(x), 2, 3)
    assert torch.allclose(a[..., 3:-1, 4:-1], b[..., 3:-1, 4:-1], atol=1e-5)
    assert not torch.allclose(a, b, atol=1e-3)

    # A dense layer has no such structure: shifting the input scrambles the output (8x8 maps here).
    small, fc_map = x[..., :8, :8], nn.Linear(C_in * 64, C_out * 64)
    d_shift = fc_map(shift(small, 2, 3).flatten(1)).view(1, C_out, 8, 8)
    shift_d = shift(fc_map(small.flatten(1)).view(1, C_out, 8, 8), 2, 3)
    rel = ((d_shift - shift_d).norm() / shift_d.norm()).item()
    claim("above 100%", rel)            # off by more than the output's own size

    # Stride breaks exact equivariance: a stride-2 conv commutes with 2-pixel shifts only.
    s2 = nn.Conv2d(C_in, C_out, k, stride=2, padding=1, padding_mode="circular")
    assert torch.allclose(s2(shift(x, 2, 2)), shift(s2(x), 1, 1), atol=1e-5)
    one_px = s2(shift(x, 1, 1))
    assert min((one_px - shift(s2(x), dy, dx)).abs().max().item()
               for dy in range(-2, 3) for dx in range(-2, 3)) > 0.1
# --8<-- [end:equivariance]


# --8<-- [start:toeplitz]
def conv_as_matrix(weight: np.ndarray, h: int, w: int, pad: int) -> np.ndarray:
    """The dense matrix M with M @ x.ravel() == conv2d(x, weight, padding=pad).ravel(), stride 1.

    Row (o, i, j) holds the kernel of output channel o, placed so that it multiplies the input
    pixels around (i, j). Rows of one channel repeat the same numbers shifted one column per pixel:
    each block is a Toeplitz matrix, and the blocks themselves form a Toeplitz pattern.
    """
    c_out, c_in, kh, kw = weight.shape
    h_out, w_out = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    M = np.zeros((c_out, h_out, w_out, c_in, h, w))
    for i in range(h_out):
        for j in range(w_out):
            for u in range(kh):
                for v in range(kw):
                    r, c = i + u - pad, j + v - pad          # input pixel under kernel tap (u, v)
                    if 0 <= r < h and 0 <= c < w:            # zero padding: taps off the image drop
                        M[:, i, j, :, r, c] = weight[:, :, u, v]
    return M.reshape(c_out * h_out * w_out, c_in * h * w)


rng = np.random.default_rng(0)
weight = rng.normal(size=(4, 2, 3, 3))                        # C_out=4, C_in=2, 3x3 kernel
bias = rng.normal(size=4)
img = rng.normal(size=(2, 6, 6))
M = conv_as_matrix(weight, 6, 6, pad=1)
dense_out = (M @ img.ravel()).reshape(4, 6, 6) + bias[:, None, None]
torch_out = F.conv2d(torch.tensor(img)[None], torch.tensor(weight), torch.tensor(bias), padding=1)[0]

assert M.shape == (4 * 36, 2 * 36)
assert np.abs(dense_out - torch_out.numpy()).max() < 1e-12   # same output as torch, float64
claim("below $10^{-14}$", np.abs(dense_out - torch_out.numpy()).max())
# Weight sharing and locality, read off the matrix: 72 distinct numbers fill 144x72 = 10,368 slots,
# and at most 18 of each row's 72 entries are non-zero.
assert len(np.unique(M[M != 0])) == weight.size
claim("72 distinct numbers", len(np.unique(M[M != 0])))
claim("18 of each row", (M != 0).sum(axis=1).max())
assert (M != 0).mean() < 0.25
# --8<-- [end:toeplitz]

# --8<-- [start:fc-as-conv]
# The converse: a dense layer on a CxHxW map is a conv whose kernel covers the whole map.
fc = nn.Linear(C_in * 7 * 7, 10)
as_conv = nn.Conv2d(C_in, 10, kernel_size=7)
with torch.no_grad():
    as_conv.weight.copy_(fc.weight.view(10, C_in, 7, 7))
    as_conv.bias.copy_(fc.bias)
    feat = torch.randn(2, C_in, 7, 7)
    assert torch.allclose(fc(feat.flatten(1)), as_conv(feat).flatten(1), atol=1e-5)
    # ... and on a larger map the same weights slide, giving a map of class scores (as in FCN).
    assert as_conv(torch.randn(1, C_in, 12, 12)).shape == (1, 10, 6, 6)
# And a 1x1 conv is one dense layer applied at every pixel.
pw = nn.Conv2d(C_in, C_out, kernel_size=1)
lin = nn.Linear(C_in, C_out)
with torch.no_grad():
    lin.weight.copy_(pw.weight.view(C_out, C_in))
    lin.bias.copy_(pw.bias)
    assert torch.allclose(pw(x), lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), atol=1e-5)
# --8<-- [end:fc-as-conv]

# --8<-- [start:im2col]
# How conv2d runs on CPUs and GPUs: im2col (unfold the input) and one matrix multiply (GEMM).
xb = torch.randn(2, C_in, H, W, dtype=torch.float64)
wb = torch.randn(C_out, C_in, k, k, dtype=torch.float64, requires_grad=True)
cols = F.unfold(xb, kernel_size=k, padding=1)   # (N, C_in*k*k, H*W): one column per output pixel
out = (wb.view(C_out, -1) @ cols).view(2, C_out, H, W)   # (C_out, C_in k^2) @ (C_in k^2, H W)
ref = F.conv2d(xb, wb, padding=1)
assert torch.allclose(out, ref, atol=1e-12)
claim("9×", cols[0].numel() / xb[0].numel())   # im2col copies each pixel k*k times
# The weight gradient is the same product with the upstream gradient: delta @ cols^T (a^T delta).
delta = torch.randn_like(ref)
(g_w,) = torch.autograd.grad(ref, wb, delta)
g_im2col = (delta.flatten(2) @ cols.transpose(1, 2)).sum(0).view_as(wb)
assert torch.allclose(g_w, g_im2col, atol=1e-10)
# Locality without weight sharing (a locally connected layer): one kernel and bias per position.
claim("458,752", C_out * H * W * (C_in * k * k + 1))
# --8<-- [end:im2col]


# --8<-- [start:receptive-field]
def receptive_field(layers: list[tuple[int, int, int]]) -> int:
    """r_l = r_(l-1) + (k_l - 1) * d_l * (product of the strides before layer l), r_0 = 1."""
    r, jump = 1, 1
    for k_, s_, d_ in layers:                  # (kernel, stride, dilation)
        r += (k_ - 1) * d_ * jump
        jump *= s_
    return r


stack = [(3, 1, 1), (3, 2, 1), (3, 1, 2), (3, 2, 1), (3, 1, 1)]
net = nn.Sequential(*[nn.Conv2d(1, 1, k_, stride=s_, dilation=d_, bias=False) for k_, s_, d_ in stack])
net = net.double()
for m in net:
    nn.init.constant_(m.weight, 1.0)           # all positive: no gradient cancels by chance
probe = torch.zeros(1, 1, 64, 64, dtype=torch.float64, requires_grad=True)
y_rf = net(probe)
y_rf[0, 0, y_rf.shape[2] // 2, y_rf.shape[3] // 2].backward()   # which inputs reach one output?
rows = probe.grad[0, 0].abs().sum(dim=1).nonzero()
assert rows.max() - rows.min() + 1 == receptive_field(stack)
claim("25 pixels wide", receptive_field(stack))
# --8<-- [end:receptive-field]

print(f"params: conv {n_params(conv):,}, dense {n_params(dense):,}; MACs: conv {conv_macs:,}, "
      f"dense {dense_macs:,}")
print(f"dense layer under a shift: relative mismatch {rel:.2f}; conv-as-matrix error "
      f"{np.abs(dense_out - torch_out.numpy()).max():.1e}; matrix fill {(M != 0).mean():.3f}")

# Figure: the matrix of a 1-channel 3x3 conv on a 4x4 image, zero padding 1.
M1 = conv_as_matrix(np.arange(1, 10, dtype=float).reshape(1, 1, 3, 3), 4, 4, pad=1)
fig, ax = plt.subplots(figsize=(5.2, 4.2))
shown = np.ma.masked_equal(M1, 0)
im = ax.imshow(shown, cmap="viridis", interpolation="nearest")
for r in range(1, 4):
    ax.axhline(4 * r - 0.5, c="0.6", lw=0.8)
    ax.axvline(4 * r - 0.5, c="0.6", lw=0.8)
for (r, c), val in np.ndenumerate(M1):
    if val:
        ax.text(c, r, int(val), ha="center", va="center", fontsize=6.5, color="w" if val < 6 else "k")
ax.set(xlabel="input pixel (row-major, 4x4 image)", ylabel="output pixel",
       title="3x3 conv as a 16x16 matrix: kernel taps 1..9", xticks=range(0, 16, 4), yticks=range(0, 16, 4))
save(fig, "deep-learning", "conv-as-matrix")
