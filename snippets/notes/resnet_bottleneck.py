"""The ResNet bottleneck block: parameter and FLOP counts against the basic block, where the stride
sits (v1 against v1.5), the projection shortcut, and whole ResNet-34/50 networks built from them."""
from __future__ import annotations

import torch
from torch import nn

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:blocks]
def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    """Conv without bias (the BN shift makes a bias redundant), then BN."""
    return [nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=False), nn.BatchNorm2d(c_out)]


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a 1x1 projection with the block's stride (option B)."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(*conv_bn(c_in, c_out, 1, stride))


class BasicBlock(nn.Module):
    """3x3 -> 3x3, used by ResNet-18/34."""
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c_in, width, 3, stride), nn.ReLU(),
                                  *conv_bn(width, width, 3))
        self.short = shortcut(c_in, width, stride)

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 at the narrow width -> 1x1 expand (x4), used by ResNet-50/101/152.
    v1 (the paper's Caffe models) strides the first 1x1; v1.5 (torchvision) strides the 3x3."""
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1, stride_in_1x1: bool = False):
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        c_out = width * self.expansion
        self.body = nn.Sequential(*conv_bn(c_in, width, 1, s1), nn.ReLU(),
                                  *conv_bn(width, width, 3, s3), nn.ReLU(),
                                  *conv_bn(width, c_out, 1))
        self.short = shortcut(c_in, c_out, stride)

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))
# --8<-- [end:blocks]


# --8<-- [start:counting]
def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def macs(m: nn.Module, shape: tuple[int, int, int]) -> tuple[int, tuple[int, int, int]]:
    """Multiply-accumulates of the convs and linear layers, from shapes alone: a conv costs
    (C_in / groups) * k_h * k_w MACs per output value. Returns (MACs, output shape (C, H, W))."""
    c, h, w = shape
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
        k, s, p = (m.kernel_size, m.stride, m.padding)
        k, s, p = [(v, v) if isinstance(v, int) else v for v in (k, s, p)]
        h, w = [(n + 2 * p[i] - k[i]) // s[i] + 1 for i, n in enumerate((h, w))]
        if isinstance(m, nn.MaxPool2d):
            return 0, (c, h, w)
        return m.out_channels * h * w * (m.in_channels // m.groups) * k[0] * k[1], (m.out_channels, h, w)
    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features, (m.out_features, 1, 1)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return 0, (c, 1, 1)
    if isinstance(m, (BasicBlock, Bottleneck)):              # body and shortcut both read the input
        (a, out), (b, _) = macs(m.body, shape), macs(m.short, shape)
        return a + b, out
    total = 0                              # containers run their children in order; BN, ReLU,
    for child in m.children():             # Identity and Flatten have none and cost nothing here
        n, shape = macs(child, shape)
        total += n
    return total, shape


d = 64                                               # bottleneck width; in = out = 4d = 256
bottleneck = Bottleneck(4 * d, d)
basic_narrow = BasicBlock(d, d)                      # the block the paper compares it with (64-d)
basic_wide = BasicBlock(4 * d, 4 * d)                # a basic block at the bottleneck's 256-d width

# Conv weights: 4d*d + 9d^2 + d*4d = 17 d^2 against 2 * 9 C^2 = 18 C^2 for a basic block of width C.
conv_w = lambda m: sum(p.numel() for p in m.parameters() if p.dim() == 4)
assert conv_w(bottleneck) == 17 * d**2 == 69_632
assert conv_w(basic_narrow) == 18 * d**2 == 73_728
assert conv_w(basic_wide) == 18 * (4 * d) ** 2 == 1_179_648     # 16.9x the bottleneck
# BN adds 2 parameters per channel: 2 * (d + d + 4d) = 12 d.
assert n_params(bottleneck) == 17 * d**2 + 12 * d == 70_400
assert n_params(basic_narrow) == 18 * d**2 + 4 * d == 73_984

# With stride 1 every weight is used once per output pixel: MACs = conv weights x H x W.
assert macs(bottleneck, (4 * d, 56, 56))[0] == 17 * d**2 * 56 * 56 == 218_365_952     # 0.22 GMAC
assert macs(basic_narrow, (d, 56, 56))[0] == 18 * d**2 * 56 * 56 == 231_211_008
assert macs(basic_wide, (4 * d, 56, 56))[0] == 16 * macs(basic_narrow, (d, 56, 56))[0]
# Channels double when the resolution halves, so every non-downsampling bottleneck of ResNet-50
# costs the same 218 M MACs, whatever its stage.
for width, hw in [(64, 56), (128, 28), (256, 14), (512, 7)]:
    with torch.device("meta"):
        assert macs(Bottleneck(4 * width, width), (4 * width, hw, hw))[0] == 218_365_952
# --8<-- [end:counting]


# --8<-- [start:stride]
# A downsampling bottleneck (256 -> 512 channels, 56x56 -> 28x28), both placements of the stride.
x = torch.randn(1, 256, 56, 56, requires_grad=True)
seen = {}
for name, in_1x1 in [("v1", True), ("v1.5", False)]:
    block = Bottleneck(256, 128, stride=2, stride_in_1x1=in_1x1).eval()
    y = block(x)
    assert y.shape == (1, 512, 28, 28)
    (g,) = torch.autograd.grad(y.sum(), x)
    seen[name] = (g.abs().sum(1) > 0).float().mean().item()     # input pixels that reach the output
    assert n_params(block) == 379_392                           # same weights, only the stride moves
    seen[name + " MACs"], out_shape = macs(block, (256, 56, 56))
    assert out_shape == tuple(y.shape[1:])                      # the shape walk agrees with torch

# v1: a stride-2 1x1 conv and a stride-2 1x1 shortcut never look at 3 of every 4 input pixels.
assert seen["v1"] == 0.25 and seen["v1.5"] == 1.0
# v1.5 pays for it: the first 1x1 runs at 56x56 instead of 28x28.
assert seen["v1.5 MACs"] - seen["v1 MACs"] == 256 * 128 * (56 * 56 - 28 * 28)
# --8<-- [end:stride]


# --8<-- [start:shortcut]
# The projection shortcut: 1x1 conv + BN, only where the shape changes (4 times in ResNet-50).
proj = Bottleneck(64, 64).short                        # conv2_x, block 1: 64 -> 256 channels
assert n_params(proj) == 64 * 256 + 2 * 256 == 16_896
assert isinstance(Bottleneck(256, 64).short, nn.Identity)
# A projection on every block (option C) would almost double a bottleneck: its shortcut joins
# the two 256-d ends.
all_proj = Bottleneck(256, 64)
all_proj.short = nn.Sequential(*conv_bn(256, 256, 1))
assert n_params(all_proj) == 70_400 + 256 * 256 + 2 * 256 == 136_448       # 1.94x

# Zero-init the last BN scale (torchvision's zero_init_residual): the block starts as the identity.
block = Bottleneck(256, 64).eval()
nn.init.zeros_(block.body[-1].weight)
x_relu = torch.relu(torch.randn(2, 256, 14, 14))      # block inputs are post-ReLU, so x >= 0
assert torch.equal(block(x_relu), x_relu)
# --8<-- [end:shortcut]


# --8<-- [start:resnet]
class ResNet(nn.Module):
    def __init__(self, block, depths, stride_in_1x1=False, n_classes=1000):
        super().__init__()
        layers = [*conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        c_in = 64
        for i, (width, n) in enumerate(zip([64, 128, 256, 512], depths)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                kw = {"stride_in_1x1": stride_in_1x1} if block is Bottleneck else {}
                layers.append(block(c_in, width, stride, **kw))
                c_in = width * block.expansion
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x):
        return self.fc(self.features(x))


# name: block, blocks per stage, torchvision's parameter count, "FLOPs" (multiply-adds) in Table 1
# of He et al. 2016. Built on the meta device: shapes only, no memory, no arithmetic.
table = {"ResNet-18": (BasicBlock, [2, 2, 2, 2], 11_689_512, 1.8),
         "ResNet-34": (BasicBlock, [3, 4, 6, 3], 21_797_672, 3.6),
         "ResNet-50": (Bottleneck, [3, 4, 6, 3], 25_557_032, 3.8),
         "ResNet-101": (Bottleneck, [3, 4, 23, 3], 44_549_160, 7.6),
         "ResNet-152": (Bottleneck, [3, 8, 36, 3], 60_192_808, 11.3)}
gmacs = {}
for name, (block, depths, params, gflops) in table.items():
    with torch.device("meta"):
        net = ResNet(block, depths, stride_in_1x1=True)          # v1, as in the paper
    gmacs[name] = macs(net, (3, 224, 224))[0] / 1e9
    assert n_params(net) == params and abs(gmacs[name] - gflops) < 0.07, name

with torch.device("meta"):
    r50_v15 = ResNet(Bottleneck, [3, 4, 6, 3])                   # torchvision's resnet50
gmacs["ResNet-50 v1.5"] = macs(r50_v15, (3, 224, 224))[0] / 1e9
assert n_params(r50_v15) == 25_557_032 and abs(gmacs["ResNet-50 v1.5"] - 4.09) < 0.01   # 6% more
# Where the parameters sit: the last stage (three 2048-channel blocks) plus the classifier.
last_stage_and_head = n_params(r50_v15.features[-5:-2]) + n_params(r50_v15.fc)
assert last_stage_and_head == 17_013_736                 # 67% of 25,557,032
# --8<-- [end:resnet]

print(f"bottleneck(256->64->256): {n_params(bottleneck):,} params, {macs(bottleneck, (256, 56, 56))[0]/1e6:.1f} MMAC at 56x56")
print(f"basic(64): {n_params(basic_narrow):,} params; basic(256): {n_params(basic_wide):,} params")
print(f"downsampling block: input pixels used v1 {seen['v1']:.2f}, v1.5 {seen['v1.5']:.2f}; "
      f"MACs v1 {seen['v1 MACs']/1e6:.0f}M, v1.5 {seen['v1.5 MACs']/1e6:.0f}M")
print(f"ResNet-50 last stage + fc: {last_stage_and_head:,} params ({last_stage_and_head / 25_557_032:.0%})")
print("GMAC at 224x224: " + ", ".join(f"{k} {v:.2f}" for k, v in gmacs.items()))
