"""A small CNN: output shapes and parameter counts by formula, receptive field by recurrence and by gradient."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save
from scipy.signal import convolve2d, correlate2d

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:formulas]
def conv_out(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Output length of a convolution or pooling along one axis (floor mode)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    """One k x k filter per output channel, spanning every input channel, plus an optional bias."""
    return c_out * (c_in * k * k + int(bias))


def conv_macs(h_out: int, w_out: int, c_in: int, c_out: int, k: int) -> int:
    """Multiply-accumulates: every output value is a dot product of length c_in * k * k."""
    return h_out * w_out * c_out * c_in * k * k
# --8<-- [end:formulas]


# --8<-- [start:model]
def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    # No conv bias: the BatchNorm shift that follows makes it redundant (checked below).
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


model = nn.Sequential(
    conv_bn_relu(3, 32), nn.MaxPool2d(2),     # 3x32x32  -> 32x16x16
    conv_bn_relu(32, 64), nn.MaxPool2d(2),    # 32x16x16 -> 64x8x8
    conv_bn_relu(64, 128),                    # 64x8x8   -> 128x8x8
    nn.AdaptiveAvgPool2d(1), nn.Flatten(),    # 128x8x8  -> 128
    nn.Linear(128, 10),                       # 128      -> 10 class logits
)
# --8<-- [end:model]


# --8<-- [start:shapes]
# Shapes by formula, then by running the model and recording every stage's output.
expected, (c, n) = [], (3, 32)
for c_out, pool in [(32, True), (64, True), (128, False)]:
    c, n = c_out, conv_out(n, k=3, s=1, p=1)            # 'same' 3x3 conv keeps the size
    expected.append((c, n, n))
    if pool:
        n = conv_out(n, k=2, s=2)                       # 2x2 max pool halves it
        expected.append((c, n, n))
expected += [(128, 1, 1), (128,), (10,)]

seen = []
hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:]))) for m in model]
model.eval()
with torch.no_grad():
    model(torch.randn(2, 3, 32, 32))
for h in hooks:
    h.remove()
assert seen == expected, (seen, expected)

# Parameter counts by formula against PyTorch's count.
bn = lambda ch: 2 * ch                                  # BatchNorm: one scale and one shift per channel
by_formula = {
    "conv1": conv_params(3, 32, 3, bias=False) + bn(32),      # 864 + 64
    "conv2": conv_params(32, 64, 3, bias=False) + bn(64),     # 18,432 + 128
    "conv3": conv_params(64, 128, 3, bias=False) + bn(128),   # 73,728 + 256
    "fc": 128 * 10 + 10,                                      # 1,290
}
counted = [sum(p.numel() for p in m.parameters()) for m in (model[0], model[2], model[4], model[7])]
assert list(by_formula.values()) == counted
claim("864", conv_params(3, 32, 3, bias=False))
claim("18,432", conv_params(32, 64, 3, bias=False))
claim("73,728", conv_params(64, 128, 3, bias=False))
claim("1,290", counted[3])
total = sum(p.numel() for p in model.parameters())
assert total == sum(by_formula.values())
claim("94,762", total)
# --8<-- [end:shapes]


# --8<-- [start:dense-vs-conv]
# The first layer as a dense layer with the same input and output sizes: 3x32x32 -> 32x32x32.
dense_first = (3 * 32 * 32 + 1) * (32 * 32 * 32)
claim("100.7M", dense_first)                            # 100,696,064, vs 864 for the conv

# Compute per conv: doubling channels while halving resolution keeps MACs per stage flat.
macs = [conv_macs(32, 32, 3, 32, 3), conv_macs(16, 16, 32, 64, 3), conv_macs(8, 8, 64, 128, 3)]
claim("0.88M", macs[0])
claim("4.72M", macs[1])
assert macs[2] == macs[1]                               # 8x8x128 costs the same as 16x16x64

# A conv bias followed by BatchNorm (training mode) has no effect: BN subtracts the batch mean.
x = torch.randn(8, 16, 10, 10)
conv_b = nn.Conv2d(16, 8, 3, bias=True)
conv_nb = nn.Conv2d(16, 8, 3, bias=False)
conv_nb.weight.data.copy_(conv_b.weight.data)
norm = nn.BatchNorm2d(8).train()
out = norm(conv_b(x))
assert torch.allclose(out, norm(conv_nb(x)), atol=1e-5)
# ... so its gradient is zero: weight decay can only shrink it towards 0, it never learns anything.
(out * torch.randn_like(out)).sum().backward()
assert conv_b.bias.grad.abs().max() < 1e-6 * conv_b.weight.grad.abs().max()   # zero up to float rounding
# --8<-- [end:dense-vs-conv]


# --8<-- [start:sharing]
# Weight sharing makes a conv layer translation-equivariant: shift the input, the output shifts too.
conv = nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular")
x = torch.randn(1, 3, 20, 20)
shift = lambda t: torch.roll(t, shifts=(2, 5), dims=(2, 3))
assert torch.allclose(conv(shift(x)), shift(conv(x)), atol=1e-5)

# Depthwise separable conv (MobileNet): a 3x3 filter per channel, then a 1x1 conv to mix channels.
standard = nn.Conv2d(128, 128, 3, padding=1, bias=False)
separable = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1, groups=128, bias=False),
                          nn.Conv2d(128, 128, 1, bias=False))
n_std = sum(p.numel() for p in standard.parameters())
n_sep = sum(p.numel() for p in separable.parameters())
assert n_sep == 128 * 9 + 128 * 128                     # k^2 C + C C'
claim("147,456", n_std)
claim("17,536", n_sep)
claim("8.4×", n_std / n_sep)                            # fewer weights, and fewer MACs by the same factor

# Grouped conv (ResNeXt) sits between the two: g groups divide the weights (and MACs) by g.
grouped = nn.Conv2d(128, 128, 3, padding=1, groups=32, bias=False)
assert grouped.weight.numel() * 32 == n_std

# VGG-16: the convolutions hold the compute, the first FC layer holds the parameters.
claim("102.8M", 512 * 7 * 7 * 4096 + 4096)              # of VGG-16's 138M in total
# --8<-- [end:sharing]


# --8<-- [start:conventions]
# Deep-learning "convolution" is cross-correlation: the kernel is not flipped.
img, ker = np.random.default_rng(0).standard_normal((2, 9, 9)), np.arange(9.0).reshape(3, 3)
torch_out = F.conv2d(torch.from_numpy(img[0])[None, None], torch.from_numpy(ker)[None, None])[0, 0].numpy()
assert np.allclose(torch_out, correlate2d(img[0], ker, mode="valid"))
assert not np.allclose(torch_out, convolve2d(img[0], ker, mode="valid"))   # true convolution flips it

# Transposed conv: out = (n - 1)s - 2p + k. With k = 3, s = 2 the kernel footprints overlap
# unevenly (1, 2, 1, 2 ... contributions): the checkerboard. k = 4 (divisible by s) overlaps evenly.
def overlap(k: int) -> torch.Tensor:
    up = nn.ConvTranspose2d(1, 1, k, stride=2, padding=(k - 2) // 2, bias=False)
    nn.init.ones_(up.weight)
    with torch.no_grad():
        return up(torch.ones(1, 1, 8, 8))[0, 0, 2:-2, 2:-2]   # the interior, away from the borders
assert overlap(3).shape[-1] + 4 == (8 - 1) * 2 - 2 * 0 + 3
assert set(overlap(3).unique().tolist()) == {1.0, 2.0, 4.0}   # uneven: a checkerboard pattern
assert set(overlap(4).unique().tolist()) == {4.0}             # even: flat
# --8<-- [end:conventions]


# --8<-- [start:receptive-field]
def receptive_field(layers: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(kernel, stride) per layer -> (receptive field r_l, jump j_l) after each layer.

    r_l = r_{l-1} + (k_l - 1) * j_{l-1},   j_l = j_{l-1} * s_l,   r_0 = j_0 = 1.
    """
    r, j, out = 1, 1, []
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
        out.append((r, j))
    return out


geometry = [(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)]    # conv, pool, conv, pool, conv
rf = receptive_field(geometry)
assert [r for r, _ in rf] == [3, 4, 8, 10, 18]
claim("finally 18 pixels", rf[-1][0])
claim("a final jump of 4", rf[-1][1])

# Check it empirically: the gradient of one output pixel of the trunk (before global pooling)
# is non-zero exactly on the input pixels that pixel can see. Eval mode, so BatchNorm does not mix
# the images of the batch; many random images, so max pooling's argmax reaches every position.
trunk = model[:5].eval()
x = torch.randn(64, 3, 48, 48, generator=torch.Generator().manual_seed(0), requires_grad=True)
trunk(x)[:, :, 6, 6].sum().backward()                   # output is 12x12; pick an inner pixel
grad = x.grad.abs().sum(dim=(0, 1))                     # 48x48 map of total sensitivity
rows = torch.nonzero(grad.sum(1)).flatten()
cols = torch.nonzero(grad.sum(0)).flatten()
rf_h, rf_w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
assert rf_h == rf_w == rf[-1][0]
claim("exactly 18 pixels wide", rf_h)

# Stacking small kernels: three 3x3 convs see 7x7, like one 7x7 conv, with 27C^2 vs 49C^2 weights.
C = 64
assert receptive_field([(3, 1)] * 3)[-1][0] == receptive_field([(7, 1)])[-1][0] == 7
claim("110,592", 3 * conv_params(C, C, 3, bias=False))
claim("200,704", conv_params(C, C, 7, bias=False))

# ResNet stem: 7x7/2 conv then 3x3/2 max pool -> receptive field 11, stride 4, 224 -> 56.
stem = receptive_field([(7, 2), (3, 2)])[-1]
claim("receptive field is 11", stem[0])
assert stem[1] == 4 and conv_out(conv_out(224, 7, s=2, p=3), 3, s=2, p=1) == 56   # stride 4: 224 -> 56
claim("adds 8 pixels", receptive_field([(7, 2), (3, 2), (3, 1)])[-1][0] - stem[0])
# Dilation d: a 3x3 filter with holes spans 2d + 1 pixels, with the same 9 weights.
for d in (1, 2, 4):
    assert conv_out(100, k=3, d=d) == 100 - 2 * d       # output shrinks by span - 1 = 2d
# --8<-- [end:receptive-field]

# --8<-- [start:erf]
# The effective receptive field: sensitivity is concentrated in the centre of the theoretical one.
r0, c0 = int(rows[0]), int(cols[0])
patch = grad[r0:r0 + 18, c0:c0 + 18]
centre_share = float(patch[4:14, 4:14].sum() / patch.sum())
claim("31%", 10 * 10 / (18 * 18))                     # the central 10x10 of the 18x18 window
claim("46–50%", centre_share)   # a uniform spread would give 31%; 46-49% over model and input seeds
# --8<-- [end:erf]

print(f"params {total:,}; dense first layer {dense_first:,} vs conv 864; MACs per conv {macs}")
print(f"receptive field measured {rf_h}x{rf_w} (formula 18); central 31% of it holds {centre_share:.1%} of |grad|")

fig, ax = plt.subplots(figsize=(4.6, 3.8))
im = ax.imshow(grad[r0 - 4:r0 + 22, c0 - 4:c0 + 22].numpy(), cmap="magma")
ax.add_patch(plt.Rectangle((3.5, 3.5), 18, 18, fill=False, ec="cyan", lw=1.5, ls="--"))
ax.set_title("|d output pixel / d input|, summed over 64 images\n"
             "dashed: theoretical receptive field, 18x18", fontsize=9)
ax.set_xticks([]); ax.set_yticks([])
fig.colorbar(im, ax=ax, fraction=0.046)
save(fig, "cv-deep-learning", "cnn-receptive-field")
