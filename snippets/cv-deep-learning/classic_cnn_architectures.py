"""AlexNet, VGG, Inception, DenseNet and SENet in numbers: parameters counted layer by layer, stacked 3x3 convs,
1x1 reductions, SE blocks and dense channel growth.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def macs(m: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        m(x)
    return counter.get_total_flops() // 2


# --8<-- [start:vgg]
def vgg(config: list, n_classes: int = 1000) -> nn.Sequential:
    """VGG as in Simonyan and Zisserman (2015): 3x3 convs (padding 1) with ReLU, 2x2 max pools, three FC layers."""
    layers, c = [], 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    layers += [nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
               nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, n_classes)]
    return nn.Sequential(*layers)


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
with torch.device("meta"):                     # shapes only: 138M parameters, no memory allocated
    vgg16, vgg19 = vgg(VGG16), vgg(VGG19)
    image = torch.empty(1, 3, 224, 224)
claim("138,357,544", n_params(vgg16))          # the torchvision / Keras count, from the paper's Table 1, config D
claim("143,667,240", n_params(vgg19))
conv_part = sum(n_params(m) for m in vgg16 if isinstance(m, nn.Conv2d))
fc_part = sum(n_params(m) for m in vgg16 if isinstance(m, nn.Linear))
assert conv_part + fc_part == n_params(vgg16)
claim("14.7M", conv_part)
claim("89%", fc_part / n_params(vgg16))        # the three FC layers
claim("15.5 GMACs", macs(vgg16, image) / 1e9)
conv_macs = sum(macs(m, torch.empty(1, m.in_channels, s, s, device="meta"))
                for m, s in zip([m for m in vgg16 if isinstance(m, nn.Conv2d)],
                                [224] * 2 + [112] * 2 + [56] * 3 + [28] * 3 + [14] * 3))
claim("99%", conv_macs / macs(vgg16, image))   # ... while the convs hold the compute


# AlexNet as published: 5 convs, 3 FC, conv2/4/5 split into 2 groups (one per GPU).
with torch.device("meta"):
    alexnet = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.MaxPool2d(3, 2),        # overlapping pooling
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 1000))
    assert alexnet(torch.empty(1, 3, 227, 227)).shape == (1, 1000)   # 227, not the paper's "224"
claim("60,965,224", n_params(alexnet))
claim("96%", sum(n_params(m) for m in alexnet if isinstance(m, nn.Linear)) / n_params(alexnet))
# --8<-- [end:vgg]


# --8<-- [start:stacking]
# Two 3x3 convs see a 5x5 window: the gradient of one output pixel is non-zero on exactly 5x5 inputs.
C = 64
conv1, conv2 = nn.Conv2d(C, C, 3, bias=False), nn.Conv2d(C, C, 3, bias=False)
x = torch.randn(1, C, 9, 9, requires_grad=True)
conv2(F.relu(conv1(x)))[0, :, 2, 2].sum().backward()          # the centre output pixel
support = x.grad[0].abs().sum(0) > 0
assert support.sum() == 25 and support[2:7, 2:7].all()

# Without the ReLU the stack IS one 5x5 conv: its kernel is the full convolution of the two kernels,
# summed over the middle channel.
with torch.no_grad():
    k1, k2 = conv1.weight, conv2.weight                         # (C_mid, C_in, 3, 3), (C_out, C_mid, 3, 3)
    k5 = F.conv2d(F.pad(k1.transpose(0, 1), (2, 2, 2, 2)), k2.flip(-1, -2)).transpose(0, 1)
    assert k5.shape == (C, C, 5, 5)
    assert torch.allclose(F.conv2d(x, k5), conv2(conv1(x)), atol=1e-5)

# ... with 18 C^2 weights instead of 25 C^2, and an extra non-linearity when the ReLU is kept.
two_3x3 = n_params(conv1) + n_params(conv2)
one_5x5 = n_params(nn.Conv2d(C, C, 5, bias=False))
assert two_3x3 == 18 * C * C and one_5x5 == 25 * C * C
claim("28%", 1 - two_3x3 / one_5x5)
claim("1,179,648", 18 * 256 * 256), claim("1,638,400", 25 * 256 * 256)   # at 256 channels
# --8<-- [end:stacking]


# --8<-- [start:inception]
class Inception(nn.Module):
    """GoogLeNet's module: four parallel branches concatenated along the channels."""

    def __init__(self, c_in: int, c1: int, r3: int, c3: int, r5: int, c5: int, pool_proj: int, reduce: bool = True):
        super().__init__()
        relu = nn.ReLU()
        self.b1 = nn.Sequential(nn.Conv2d(c_in, c1, 1), relu)
        self.b3 = nn.Sequential(*([nn.Conv2d(c_in, r3, 1), relu] if reduce else []),
                                nn.Conv2d(r3 if reduce else c_in, c3, 3, padding=1), relu)
        self.b5 = nn.Sequential(*([nn.Conv2d(c_in, r5, 1), relu] if reduce else []),
                                nn.Conv2d(r5 if reduce else c_in, c5, 5, padding=2), relu)
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(c_in, pool_proj, 1), relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


inception_3a = Inception(192, 64, 96, 128, 16, 32, 32)             # GoogLeNet's Table 1, row "inception (3a)"
no_reduction = Inception(192, 64, 96, 128, 16, 32, 32, reduce=False)
feat = torch.randn(1, 192, 28, 28)
assert inception_3a(feat).shape == no_reduction(feat).shape == (1, 64 + 128 + 32 + 32, 28, 28)
claim("163,696", n_params(inception_3a))
claim("2.4×", n_params(no_reduction) / n_params(inception_3a))   # the 1x1 "reduce" convs save this much
claim("2.4 times", macs(no_reduction, feat) / macs(inception_3a, feat))
# --8<-- [end:inception]


# --8<-- [start:se]
class SqueezeExcite(nn.Module):
    """Squeeze (global average pool), excite (FC C -> C/r, ReLU, FC C/r -> C, sigmoid), rescale the channels."""

    def __init__(self, c: int, r: int = 16, bias: bool = True):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, c // r, bias=bias), nn.Linear(c // r, c, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))   # (N, C), each in (0, 1)
        return x * s[:, :, None, None]


se = SqueezeExcite(256)
assert n_params(se) == 2 * 256 * 256 // 16 + 256 // 16 + 256
claim("8,464", n_params(se))
u = torch.randn(2, 256, 14, 14)
scale = se(u) / u                                   # one factor per image and channel, the same at every pixel
assert torch.allclose(scale, scale[:, :, :1, :1].expand_as(scale), atol=1e-5)
assert (scale > 0).all() and (scale < 1).all()


class Bottleneck(nn.Module):
    """ResNet-50's block (stride in the 3x3, as in torchvision), optionally with SE before the addition."""

    def __init__(self, c_in: int, d: int, stride: int, se: bool):
        super().__init__()
        bn = nn.BatchNorm2d
        self.f = nn.Sequential(nn.Conv2d(c_in, d, 1, bias=False), bn(d), nn.ReLU(),
                               nn.Conv2d(d, d, 3, stride, 1, bias=False), bn(d), nn.ReLU(),
                               nn.Conv2d(d, 4 * d, 1, bias=False), bn(4 * d))
        self.se = SqueezeExcite(4 * d, bias=False) if se else nn.Identity()
        self.shortcut = (nn.Identity() if stride == 1 and c_in == 4 * d else
                         nn.Sequential(nn.Conv2d(c_in, 4 * d, 1, stride, bias=False), bn(4 * d)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.se(self.f(x)) + self.shortcut(x))


def resnet50(se: bool = False) -> nn.Sequential:
    layers, c = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
    for n, d, stride in [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]:
        for i in range(n):
            layers.append(Bottleneck(c, d, stride if i == 0 else 1, se))
            c = 4 * d
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000))


with torch.device("meta"):
    r50, se_r50 = resnet50(), resnet50(se=True)
assert n_params(r50) == 25_557_032                 # torchvision's ResNet-50, and the ResNet note
claim("25.6M", n_params(r50))
se_weights = n_params(se_r50) - n_params(r50)
stages = [(3, 256, 56), (4, 512, 28), (6, 1024, 14), (3, 2048, 7)]     # blocks, channels, map size
assert se_weights == sum(n * 2 * c * c // 16 for n, c, _ in stages)   # the paper's (2/r) sum N_s C_s^2
claim("2,514,944", se_weights)
claim("9.8%", se_weights / n_params(r50))
last_stage = 3 * 2 * 2048**2 // 16
claim("62.5%", last_stage / se_weights)                               # the last stage holds most of it
claim("3.7%", (se_weights - last_stage) / n_params(r50))             # SE removed from the last stage
# Compute: pool (HWC adds), two FCs (2C^2/r) and the rescale (HWC multiplies) per block.
r50_macs = macs(r50, torch.empty(1, 3, 224, 224, device="meta"))
claim("4.1 GMACs", r50_macs / 1e9)
se_macs = sum(n * (2 * s * s * c + 2 * c * c // 16) for n, c, s in stages)
claim("under 0.4%", se_macs / r50_macs)
# --8<-- [end:se]


# --8<-- [start:densenet]
class DenseLayer(nn.Module):
    """DenseNet-B layer: BN-ReLU-1x1 conv to 4k channels, BN-ReLU-3x3 conv to k; output concatenated to the input."""

    def __init__(self, c_in: int, k: int):
        super().__init__()
        self.f = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, 4 * k, 1, bias=False),
                               nn.BatchNorm2d(4 * k), nn.ReLU(), nn.Conv2d(4 * k, k, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.f(x)], dim=1)


def densenet(blocks=(6, 12, 24, 16), k: int = 32, c0: int = 64, theta: float = 0.5, n_classes: int = 1000):
    """DenseNet-BC: stem, dense blocks with growth rate k, transitions compressing the channels by theta."""
    layers, c, widths = [nn.Conv2d(3, c0, 7, 2, 3, bias=False), nn.BatchNorm2d(c0), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1)], c0, []
    for i, n in enumerate(blocks):
        for _ in range(n):
            layers.append(DenseLayer(c, k))
            c += k                                   # every layer adds k channels to what the next one sees
        widths.append(c)
        if i < len(blocks) - 1:                      # transition: BN-ReLU-1x1 conv (x theta), 2x2 avg pool
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, int(c * theta), 1, bias=False), nn.AvgPool2d(2)]
            c = int(c * theta)
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_classes)]
    return nn.Sequential(*layers), widths


# Channel growth inside one block: layer l sees c0 + k (l - 1) channels.
block = nn.Sequential(*[DenseLayer(64 + 32 * i, 32) for i in range(6)])
h = torch.randn(1, 64, 56, 56)
seen = []
for layer in block:
    seen.append(h.shape[1])
    h = layer(h)
assert seen == [64, 96, 128, 160, 192, 224] and h.shape[1] == 64 + 6 * 32 == 256

with torch.device("meta"):
    densenet121, widths = densenet()
    assert densenet121(torch.empty(1, 3, 224, 224)).shape == (1, 1000)
assert widths == [256, 512, 1024, 1024]              # block outputs; transitions halve them
claim("7,978,856", n_params(densenet121))            # the torchvision count for DenseNet-121
# A naive implementation copies the growing concatenation for every layer: in block 3 (24 layers,
# 256 channels in) the inputs add up to this many times the block's 1,024 output channels.
copies = sum(256 + 32 * i for i in range(24))
claim("14.6×", copies / 1024)
# --8<-- [end:densenet]

print(f"VGG-16 {n_params(vgg16):,} params ({fc_part / n_params(vgg16):.1%} in FC), "
      f"{macs(vgg16, image) / 1e9:.2f} GMACs; "
      f"AlexNet {n_params(alexnet):,}; inception 3a {n_params(inception_3a):,} vs {n_params(no_reduction):,}; "
      f"SE-ResNet-50 +{se_weights:,} ({se_weights / n_params(r50):.1%}), SE MACs {se_macs / r50_macs:.2%}; "
      f"DenseNet-121 {n_params(densenet121):,}")
