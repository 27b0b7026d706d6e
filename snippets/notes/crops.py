"""Train a small fully convolutional network on 32x32 crops, run it on a whole large image, and
compare with tiled inference: exact with enough overlap, wrong near the seams without it."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)


# --8<-- [start:data]
def make_scene(h: int, w: int, rng) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright disks (radius 3-6 px) on a smooth background with noise; the target is the disk mask."""
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for _ in range(h * w // 600):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 6)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    background = 0.3 * np.sin(xx / rng.uniform(8, 20)) * np.cos(yy / rng.uniform(8, 20))
    img = background + 1.0 * mask + rng.normal(0, 0.35, (h, w))
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)[None, None]
    return as_t(img), as_t(mask)
# --8<-- [end:data]


# --8<-- [start:model]
def fcn() -> nn.Sequential:
    """Four 3x3 convs, no pooling, no linear layer: any input size works."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 1, 3, padding=1))


model = fcn()
HALO = 4                               # 4 stacked 3x3 convs: receptive field 9x9, i.e. 4 px each side

# Train on random 32x32 crops of three 128x128 scenes.
scenes = [make_scene(128, 128, rng) for _ in range(3)]
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for step in range(100):
    crops, masks = [], []
    for _ in range(16):
        img, mask = scenes[rng.integers(3)]
        y, x = rng.integers(0, 128 - 32, size=2)
        crops.append(img[..., y:y + 32, x:x + 32])
        masks.append(mask[..., y:y + 32, x:x + 32])
    loss = nn.functional.binary_cross_entropy_with_logits(model(torch.cat(crops)), torch.cat(masks))
    opt.zero_grad()
    loss.backward()
    opt.step()
model.eval()                           # fixed BN statistics: every pixel is processed the same way
# --8<-- [end:model]


# --8<-- [start:whole]
big_img, big_mask = make_scene(200, 328, rng)         # never seen, not square, not a multiple of 32
with torch.no_grad():
    whole = model(big_img)
assert whole.shape == big_img.shape                    # fully convolutional: output follows input
pred = whole > 0
iou = (pred & (big_mask > 0)).sum() / (pred | (big_mask > 0)).sum()
claim("above 0.9", iou)                               # what was learned on crops transfers

# The receptive field: one output pixel depends on exactly a 9x9 input window.
probe = big_img.clone().requires_grad_()
model(probe)[0, 0, 100, 100].backward()
support = probe.grad[0, 0].abs() > 0
rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (2 * HALO + 1, 2 * HALO + 1)
# --8<-- [end:whole]


# --8<-- [start:receptive-field]
def receptive_field(layers: list[tuple[int, int, int]]) -> int:
    """r = 1 + sum_l (k_l - 1) d_l prod_{i<l} s_i, for layers given as (kernel, stride, dilation)."""
    r, jump = 1, 1
    for k, s, d in layers:
        r += (k - 1) * d * jump
        jump *= s
    return r


assert receptive_field([(3, 1, 1)] * 4) == 2 * HALO + 1                  # the toy network: 9
assert receptive_field([(3, 1, 1), (3, 2, 1), (3, 1, 1)]) == 1 + 2 + 2 + 4   # a stride doubles later terms


def resnet50_layers(stride_in_3x3: bool = True, dilate: tuple[bool, bool] = (False, False)):
    """(k, s, d) of the main path of ResNet-50: stem, max-pool, then 1x1-3x3-1x1 bottlenecks.
    `dilate` replaces the strides of conv4_x and conv5_x with dilation, as torchvision's
    replace_stride_with_dilation=[False, *dilate] does (first block keeps the old dilation)."""
    layers, dilation = [(7, 2, 1), (3, 2, 1)], 1
    for stage, n in enumerate([3, 4, 6, 3]):
        stride, first_dilation = (2 if stage else 1), dilation
        if stage >= 2 and dilate[stage - 2]:
            dilation, stride = dilation * 2, 1
        for b in range(n):
            s, d = (stride, first_dilation) if b == 0 else (1, dilation)
            layers += [(1, 1, 1), (3, s, d), (1, 1, 1)] if stride_in_3x3 else [(1, s, 1), (3, 1, d), (1, 1, 1)]
    return layers


claim("427", receptive_field(resnet50_layers()))                          # torchvision (v1.5)
claim("483", receptive_field(resnet50_layers(stride_in_3x3=False)))       # the paper's v1
# A dilated ResNet-50 (output stride 8, DeepLab-style) keeps the same theoretical receptive field.
assert receptive_field(resnet50_layers(dilate=(True, True))) == 427
# --8<-- [end:receptive-field]


# --8<-- [start:tiled]
def tiled(model: nn.Module, img: torch.Tensor, tile: int, halo: int) -> torch.Tensor:
    """Predict tile by tile; each tile is read with `halo` extra pixels of context on every side
    (clipped at the image border) and only its centre is kept."""
    H, W = img.shape[-2:]
    out = torch.empty_like(img)
    for y0 in range(0, H, tile):
        for x0 in range(0, W, tile):
            y1, x1 = min(y0 + tile, H), min(x0 + tile, W)
            ya, xa, yb, xb = max(y0 - halo, 0), max(x0 - halo, 0), min(y1 + halo, H), min(x1 + halo, W)
            with torch.no_grad():
                p = model(img[..., ya:yb, xa:xb])
            out[..., y0:y1, x0:x1] = p[..., y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return out


T = 64
prob = lambda logits: logits.sigmoid()[0, 0]          # compare foreground probabilities
no_overlap = (prob(tiled(model, big_img, T, halo=0)) - prob(whole)).abs()
with_overlap = (prob(tiled(model, big_img, T, halo=HALO)) - prob(whole)).abs()

# Pixels within HALO of a tile seam (the image border is not a seam).
near_seam = torch.zeros(200, 328, dtype=torch.bool)
for k in range(T, 200, T):
    near_seam[max(k - HALO, 0):k + HALO] = True
for k in range(T, 328, T):
    near_seam[:, max(k - HALO, 0):k + HALO] = True

claim("within $10^{-6}$", no_overlap[~near_seam].max())   # away from the seams: identical
claim("more than 0.8", no_overlap[near_seam].max())       # within 4 px of a seam: wrong pixels
assert with_overlap.max() < 1e-6                          # with a 4-px halo: identical everywhere
# Overlap costs compute: each tile reads (T + 2h)^2 pixels to produce T^2.
claim("1.27×", ((T + 2 * HALO) / T) ** 2)
claim("1.56×", ((512 + 2 * 64) / 512) ** 2)
# Why tile at all: one 64-channel float32 feature map of a 4000x3000 image, and of a 512x512
# tile read with a 64-px halo.
claim("3.07 GB", 4000 * 3000 * 64 * 4 / 1e9)
claim("105 MB", 640 * 640 * 64 * 4 / 1e6)
# --8<-- [end:tiled]


# --8<-- [start:bn-trap]
# The same tiling with batch norm left in training mode: every tile normalises with its own
# statistics, so tiles disagree with the whole image even far from any seam. (On a copy: a
# forward pass in training mode would also overwrite the model's running statistics.)
careless = copy.deepcopy(model).train()
with torch.no_grad():
    bad = (prob(tiled(careless, big_img, T, halo=HALO)) - prob(careless(big_img))).abs()
claim("0.90", bad[~near_seam].max())                  # the worst pixel away from the seams
claim("0.006", bad.mean())                            # but most pixels are only slightly off
assert not torch.equal(careless[1].running_mean, model[1].running_mean)   # the copy's stats moved
# --8<-- [end:bn-trap]

print(f"IoU on the 200x328 image: {iou:.3f}; final crop loss {loss.item():.3f}")
print(f"tiled, no overlap: max error {no_overlap[near_seam].max():.3f} near seams, "
      f"{no_overlap[~near_seam].max():.1e} elsewhere; with a {HALO}-px halo: {with_overlap.max():.1e}")
print(f"BN in training mode: max error away from seams {bad[~near_seam].max():.3f}, mean {bad.mean():.4f}")
