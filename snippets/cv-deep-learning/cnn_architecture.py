"""A small CNN: output shapes and parameter counts by formula, receptive field by recurrence and by gradient."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from _figures import save

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
total = sum(p.numel() for p in model.parameters())
assert total == sum(by_formula.values()) == 94_762
# --8<-- [end:shapes]


# --8<-- [start:dense-vs-conv]
# The first layer as a dense layer with the same input and output sizes: 3x32x32 -> 32x32x32.
dense_first = (3 * 32 * 32 + 1) * (32 * 32 * 32)
assert dense_first == 100_696_064                       # about 100.7M weights
assert dense_first > 100_000 * conv_params(3, 32, 3, bias=False)   # vs 864 for the conv

# Compute per conv: doubling channels while halving resolution keeps MACs per stage flat.
macs = [conv_macs(32, 32, 3, 32, 3), conv_macs(16, 16, 32, 64, 3), conv_macs(8, 8, 64, 128, 3)]
assert macs == [884_736, 4_718_592, 4_718_592]

# A conv bias followed by BatchNorm (training mode) has no effect: BN subtracts the batch mean.
x = torch.randn(8, 16, 10, 10)
conv_b = nn.Conv2d(16, 8, 3, bias=True)
conv_nb = nn.Conv2d(16, 8, 3, bias=False)
conv_nb.weight.data.copy_(conv_b.weight.data)
norm = nn.BatchNorm2d(8).train()
assert torch.allclose(norm(conv_b(x)), norm(conv_nb(x)), atol=1e-5)
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
assert (n_std, n_sep) == (147_456, 1_152 + 16_384)   # 8.4x fewer weights and MACs

# VGG-16: the convolutions hold the compute, the first FC layer holds the parameters.
assert 512 * 7 * 7 * 4096 + 4096 == 102_764_544     # of VGG-16's 138M in total
# --8<-- [end:sharing]


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
assert receptive_field(geometry) == [(3, 1), (4, 2), (8, 2), (10, 4), (18, 4)]

# Check it empirically: the gradient of one output pixel of the trunk (before global pooling)
# is non-zero exactly on the input pixels that pixel can see. Eval mode, so BatchNorm does not mix
# the images of the batch; many random images, so max pooling's argmax reaches every position.
trunk = model[:5].eval()
x = torch.randn(64, 3, 48, 48, requires_grad=True)
trunk(x)[:, :, 6, 6].sum().backward()                   # output is 12x12; pick an inner pixel
grad = x.grad.abs().sum(dim=(0, 1))                     # 48x48 map of total sensitivity
rows = torch.nonzero(grad.sum(1)).flatten()
cols = torch.nonzero(grad.sum(0)).flatten()
rf_h, rf_w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
assert (rf_h, rf_w) == (18, 18)

# Stacking small kernels: three 3x3 convs see 7x7, like one 7x7 conv, with 27C^2 vs 49C^2 weights.
C = 64
assert receptive_field([(3, 1)] * 3)[-1][0] == receptive_field([(7, 1)])[-1][0] == 7
assert 3 * conv_params(C, C, 3, bias=False) == 110_592 and conv_params(C, C, 7, bias=False) == 200_704

# ResNet stem: 7x7/2 conv then 3x3/2 max pool -> receptive field 11, stride 4, 224 -> 56.
assert receptive_field([(7, 2), (3, 2)])[-1] == (11, 4)
assert receptive_field([(7, 2), (3, 2), (3, 1)])[-1] == (19, 4)   # each 3x3 now adds 8
assert conv_out(conv_out(224, 7, s=2, p=3), 3, s=2, p=1) == 56
# --8<-- [end:receptive-field]

# --8<-- [start:erf]
# The effective receptive field: sensitivity is concentrated in the centre of the theoretical one.
r0, c0 = int(rows[0]), int(cols[0])
patch = grad[r0:r0 + 18, c0:c0 + 18]
centre_share = float(patch[4:14, 4:14].sum() / patch.sum())     # central 10x10 = 31% of the area
assert abs(centre_share - 0.487) < 0.01            # 49%; a uniform spread would give 31%
# --8<-- [end:erf]

print(f"params {total:,}; dense first layer {dense_first:,} vs conv 864; MACs per conv {macs}")
print(f"receptive field measured {rf_h}x{rf_w} (formula 18); central 31% of it holds {centre_share:.0%} of |grad|")

fig, ax = plt.subplots(figsize=(4.6, 3.8))
im = ax.imshow(grad[r0 - 4:r0 + 22, c0 - 4:c0 + 22].numpy(), cmap="magma")
ax.add_patch(plt.Rectangle((3.5, 3.5), 18, 18, fill=False, ec="cyan", lw=1.5, ls="--"))
ax.set_title("|d output pixel / d input|, summed over 64 images\n"
             "dashed: theoretical receptive field, 18x18", fontsize=9)
ax.set_xticks([]); ax.set_yticks([])
fig.colorbar(im, ax=ax, fraction=0.046)
save(fig, "cv-deep-learning", "cnn-receptive-field")
