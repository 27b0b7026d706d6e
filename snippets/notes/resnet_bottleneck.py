"""The ResNet bottleneck block: parameter and FLOP counts against the basic block, where the stride
sits (v1 against v1.5), the projection shortcut, and whole ResNet-34/50 networks built from them."""
from __future__ import annotations

import torch
from torch import nn

from vault.claims import claim

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
    v1 (the paper's Caffe models) strides the first 1x1; v1.5 (torchvision) strides the 3x3.
    groups and width_per_group are torchvision's knobs for ResNeXt and Wide ResNet-50-2."""
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1, stride_in_1x1: bool = False,
                 groups: int = 1, width_per_group: int = 64):
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        c_out = width * self.expansion
        inner = width * width_per_group // 64 * groups            # = width for ResNet-50
        self.body = nn.Sequential(*conv_bn(c_in, inner, 1, s1), nn.ReLU(),
                                  nn.Conv2d(inner, inner, 3, s3, 1, groups=groups, bias=False),
                                  nn.BatchNorm2d(inner), nn.ReLU(),
                                  *conv_bn(inner, c_out, 1))
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
assert conv_w(bottleneck) == 17 * d**2 == claim("69,632", conv_w(bottleneck))
assert conv_w(basic_narrow) == 18 * d**2 == claim("73,728", conv_w(basic_narrow))
assert conv_w(basic_wide) == 18 * (4 * d) ** 2 == claim("1,179,648", conv_w(basic_wide))
claim("17×", conv_w(basic_wide) / conv_w(bottleneck))             # 16.9x the bottleneck
claim("53%", 9 * d**2 / conv_w(bottleneck))                      # the 3x3's share: 9 of the 17 parts
# BN adds 2 parameters per channel: 2 * (d + d + 4d) = 12 d.
assert n_params(bottleneck) == 17 * d**2 + 12 * d == claim("70,400", n_params(bottleneck))
assert n_params(basic_narrow) == 18 * d**2 + 4 * d == claim("73,984", n_params(basic_narrow))
claim("1,180,672", n_params(basic_wide))

# With stride 1 every weight is used once per output pixel: MACs = conv weights x H x W.
mac = {name: macs(m, (m.body[0].in_channels, 56, 56))[0]
       for name, m in [("bottleneck", bottleneck), ("narrow", basic_narrow), ("wide", basic_wide)]}
assert mac["bottleneck"] == 17 * d**2 * 56 * 56 and mac["narrow"] == 18 * d**2 * 56 * 56
claim("218 M", mac["bottleneck"] / 1e6)
claim("231 M", mac["narrow"] / 1e6)
claim("3.70 G", mac["wide"] / 1e9)
claim("16×", mac["wide"] / mac["narrow"])                        # exactly 16: 4x the channels, squared
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
claim("75%", 1 - seen["v1"])                                   # of the input never reaches the output
# v1.5 pays for it: the first 1x1 runs at 56x56 instead of 28x28.
assert seen["v1.5 MACs"] - seen["v1 MACs"] == 256 * 128 * (56 * 56 - 28 * 28)
claim("77 M", (seen["v1.5 MACs"] - seen["v1 MACs"]) / 1e6)
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
assert n_params(all_proj) == 70_400 + 256 * 256 + 2 * 256 == claim("136,448", n_params(all_proj))
claim("1.94×", n_params(all_proj) / n_params(Bottleneck(256, 64)))

# Zero-init the last BN scale (torchvision's zero_init_residual): the block starts as the identity.
block = Bottleneck(256, 64).eval()
nn.init.zeros_(block.body[-1].weight)
x_relu = torch.relu(torch.randn(2, 256, 14, 14))      # block inputs are post-ReLU, so x >= 0
assert torch.equal(block(x_relu), x_relu)
# --8<-- [end:shortcut]


# --8<-- [start:convnext]
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel, for an (N, C, H, W) tensor."""
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """The inverted bottleneck of ConvNeXt (Liu et al. 2022): depthwise 7x7 at the stream width C,
    LN, 1x1 up to 4C, GELU, 1x1 back to C, a learned per-channel layer scale, then the addition."""
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 7, padding=3, groups=c), LayerNorm2d(c),
                                  nn.Conv2d(c, 4 * c, 1), nn.GELU(), nn.Conv2d(4 * c, c, 1))
        self.scale = nn.Parameter(torch.full((c, 1, 1), 1e-6))

    def forward(self, x):
        return x + self.scale * self.body(x)


# ConvNeXt-T's first stage (96 channels at 56x56) against ResNet-50's conv2_x (256 channels).
cnx = ConvNeXtBlock(96)
cnx_macs = macs(cnx, (96, 56, 56))[0]
assert conv_w(cnx) == 49 * 96 + 8 * 96**2                      # depthwise 49C, the two 1x1s 8C^2
claim("246 M", cnx_macs / 1e6)                                 # against the bottleneck's 218 M
claim("94%", 8 * 96**2 / conv_w(cnx))                          # of its weights are in the 1x1s
assert cnx(torch.randn(1, 96, 56, 56)).shape == (1, 96, 56, 56)
# --8<-- [end:convnext]


# --8<-- [start:resnet]
class ResNet(nn.Module):
    def __init__(self, block, depths, n_classes=1000, **block_kw):
        super().__init__()
        layers = [*conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        c_in = 64
        for i, (width, n) in enumerate(zip([64, 128, 256, 512], depths)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(c_in, width, stride, **block_kw))
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
params, v1, v15 = {}, {}, {}
for name, (block, depths, tv_params, gflops) in table.items():
    with torch.device("meta"):
        kw = {"stride_in_1x1": True} if block is Bottleneck else {}
        net_v1, net_v15 = ResNet(block, depths, **kw), ResNet(block, depths)    # paper, torchvision
    params[name] = n_params(net_v15)
    assert params[name] == n_params(net_v1) == tv_params, name  # moving the stride moves no weight
    v1[name], v15[name] = (macs(n, (3, 224, 224))[0] / 1e9 for n in (net_v1, net_v15))
    assert abs(v1[name] - gflops) < 0.07, name                  # the paper's Table 1, to its rounding

claim("11,689,512", params["ResNet-18"]); claim("1.81", v1["ResNet-18"])
claim("21,797,672", params["ResNet-34"]); claim("3.66", v1["ResNet-34"])
claim("25,557,032", params["ResNet-50"]); claim("3.86", v1["ResNet-50"]); claim("4.09", v15["ResNet-50"])
claim("44,549,160", params["ResNet-101"]); claim("7.57", v1["ResNet-101"]); claim("7.80", v15["ResNet-101"])
claim("60,192,808", params["ResNet-152"]); claim("11.28", v1["ResNet-152"]); claim("11.51", v15["ResNet-152"])
assert v15["ResNet-18"] == v1["ResNet-18"]                      # basic blocks stride their first 3x3
claim("about 6%", v15["ResNet-50"] / v1["ResNet-50"] - 1, tol=0.005)
claim("25.6 M", params["ResNet-50"] / 1e6)
claim("about 5%", v1["ResNet-50"] / v1["ResNet-34"] - 1, tol=0.005)  # 16 more layers for this much

# Where the parameters sit: the last stage (three 2048-channel blocks) plus the classifier.
with torch.device("meta"):
    r50 = ResNet(Bottleneck, [3, 4, 6, 3])
last_stage_and_head = n_params(r50.features[-5:-2]) + n_params(r50.fc)
assert last_stage_and_head == 17_013_736
claim("17.0 M", last_stage_and_head / 1e6)
claim("67%", last_stage_and_head / params["ResNet-50"])

# ResNeXt-50 (32x4d) and Wide ResNet-50-2 are the same Bottleneck with a grouped or wider 3x3:
# torchvision's resnext50_32x4d and wide_resnet50_2 have exactly these parameter counts.
with torch.device("meta"):
    resnext = ResNet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4)
    wide = ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=128)
claim("25,028,904", n_params(resnext))
claim("68,883,240", n_params(wide))
# --8<-- [end:resnet]

print(f"bottleneck(256->64->256): {n_params(bottleneck):,} params, {mac['bottleneck']/1e6:.1f} MMAC at 56x56")
print(f"downsampling block: input pixels used v1 {seen['v1']:.2f}, v1.5 {seen['v1.5']:.2f}")
print("GMAC at 224x224, v1 / v1.5: " + ", ".join(f"{k} {v1[k]:.2f}/{v15[k]:.2f}" for k in v1))
