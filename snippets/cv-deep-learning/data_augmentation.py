"""Augmentation that keeps labels right: flips, rotations and crops applied to image, masks and boxes
together; MixUp and CutMix label weights; flip test-time augmentation and what it does to a model."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)


# --8<-- [start:scene]
def make_scene(h: int = 96, w: int = 128):
    """An RGB image in [0, 1] with three objects; instance masks (K, H, W) and their class ids."""
    yy, xx = np.mgrid[:h, :w]
    img = np.stack([0.25 + 0.3 * xx / w, 0.35 + 0.2 * yy / h, np.full((h, w), 0.45)], axis=-1)
    img = img + rng.normal(0, 0.01, img.shape)
    masks = np.stack([
        (xx - 30) ** 2 + (yy - 30) ** 2 <= 18**2,                      # disk
        (xx >= 70) & (xx < 115) & (yy >= 15) & (yy < 45),              # rectangle
        (yy < 88) & (yy >= 55) & (abs(xx - 80) <= (yy - 55) * 0.9),    # triangle
    ])
    for m, colour in zip(masks, [(0.9, 0.2, 0.2), (0.2, 0.8, 0.3), (0.95, 0.85, 0.2)]):
        img[m] = colour
    return np.clip(img, 0, 1).astype(np.float32), masks, np.array([0, 1, 2])


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight boxes (x0, y0, x1, y1), end-exclusive, in pixels."""
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(out)


image, masks, labels = make_scene()
boxes = boxes_from_masks(masks)
# --8<-- [end:scene]


# --8<-- [start:geometric]
def hflip(img, masks, boxes):
    w = img.shape[1]
    return img[:, ::-1], masks[:, :, ::-1], np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)


def rot90(img, masks, boxes):
    """90 degrees counter-clockwise: pixel (row r, col c) moves to (W - 1 - c, r)."""
    w = img.shape[1]
    new_boxes = np.stack([boxes[:, 1], w - boxes[:, 2], boxes[:, 3], w - boxes[:, 0]], 1)
    return np.rot90(img, axes=(0, 1)), np.rot90(masks, axes=(1, 2)), new_boxes


def crop(img, masks, boxes, labels, top, left, h, w, min_area=1):
    """Cut a window; shift and clip the boxes; drop objects that leave the window."""
    new = boxes - np.array([left, top, left, top])
    new = np.clip(new, 0, [w, h, w, h])
    area = (new[:, 2] - new[:, 0]) * (new[:, 3] - new[:, 1])
    keep = area >= min_area
    return (img[top : top + h, left : left + w], masks[keep, top : top + h, left : left + w],
            new[keep], labels[keep])


for transform in (hflip, rot90, lambda i, m, b: rot90(*hflip(i, m, b))):
    img2, masks2, boxes2 = transform(image, masks, boxes)
    assert np.array_equal(boxes_from_masks(masks2), boxes2)         # exact for flips and 90 degree turns
    assert np.allclose(img2[masks2[0]], [0.9, 0.2, 0.2])            # the mask still covers the red disk
img2, masks2, boxes2 = hflip(*hflip(image, masks, boxes))
assert np.array_equal(img2, image) and np.array_equal(boxes2, boxes)   # a flip is its own inverse

# A crop that leaves only a sliver of the disk: the clipped box still contains it, but is no longer tight.
img_c, masks_c, boxes_c, labels_c = crop(image, masks, boxes, labels, top=8, left=44, h=84, w=80)
tight = boxes_from_masks(masks_c)
assert list(labels_c) == [0, 1, 2]
assert np.array_equal(tight[1:], boxes_c[1:])                          # untouched objects: exact
assert (tight[0, :2] >= boxes_c[0, :2]).all() and (tight[0, 2:] <= boxes_c[0, 2:]).all()
claim("5 px wide", tight[0, 2] - tight[0, 0])
claim("37 px tall", boxes_c[0, 3] - boxes_c[0, 1]), claim("only 23 px", tight[0, 3] - tight[0, 1])

# The usual rule: drop an object whose clipped box keeps too little of its original box area
# (Albumentations' min_visibility). The sliver keeps 14% of its box and 7% of its mask.
area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
visibility = area(boxes_c) / area(boxes)
claim("14% of its box", visibility[0]), claim("7% of its pixels", masks_c[0].sum() / masks[0].sum())
assert (visibility >= 0.3).tolist() == [False, True, True]          # min_visibility = 0.3 drops only the sliver
# --8<-- [end:geometric]


# --8<-- [start:rotation]
def box_iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# Rotating by 45 degrees: the box of the rotated box corners versus the box of the rotated mask.
M = cv2.getRotationMatrix2D((64.0, 48.0), 45, 1.0)
disk_rot = cv2.warpAffine(masks[0].astype(np.uint8), M, (128, 96), flags=cv2.INTER_NEAREST) > 0
x0, y0, x1, y1 = boxes[0]
corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float) @ M[:, :2].T + M[:, 2]
from_corners = [*corners.min(0), *corners.max(0)]
from_mask = boxes_from_masks(disk_rot[None])[0]
area_ratio = (from_corners[2] - from_corners[0]) * (from_corners[3] - from_corners[1]) / (
    (from_mask[2] - from_mask[0]) * (from_mask[3] - from_mask[1]))
assert abs(area_ratio - 2) < 0.05                                                  # twice the area ...
claim("IoU with the true box is 0.5", box_iou(from_corners, from_mask))            # ... and IoU 0.5
# --8<-- [end:rotation]


# --8<-- [start:photometric]
def colour_jitter(img, rng, strength=0.3):
    """Brightness, contrast and saturation factors in [1 - s, 1 + s]; geometry and labels untouched."""
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    out = img * b
    out = (out - out.mean()) * c + out.mean()
    grey = out.mean(axis=2, keepdims=True)
    out = (out - grey) * s + grey
    return np.clip(out, 0, 1)


def augment(img, masks, boxes, labels, rng, out_h=64, out_w=64):
    """A typical detection / instance-segmentation pipeline: every step moves image, masks and boxes."""
    if rng.random() < 0.5:
        img, masks, boxes = hflip(img, masks, boxes)
    if rng.random() < 0.5:
        img, masks, boxes = rot90(img, masks, boxes)
    h, w = img.shape[:2]
    top, left = rng.integers(0, h - out_h + 1), rng.integers(0, w - out_w + 1)
    img, masks, boxes, labels = crop(img, masks, boxes, labels, top, left, out_h, out_w)
    return colour_jitter(img, rng), masks, boxes, labels


for _ in range(200):
    img_a, masks_a, boxes_a, labels_a = augment(image, masks, boxes, labels, rng)
    assert img_a.shape == (64, 64, 3) and 0 <= img_a.min() and img_a.max() <= 1
    for m, b in zip(masks_a, boxes_a):
        if m.any():
            t = boxes_from_masks(m[None])[0]
            assert (t[:2] >= b[:2]).all() and (t[2:] <= b[2:]).all()   # the box always holds its mask
# --8<-- [end:photometric]


# --8<-- [start:mix]
def mixup(x1, y1, x2, y2, lam):
    """Blend two images and their one-hot labels with the same weight."""
    return lam * x1 + (1 - lam) * x2, lam * y1 + (1 - lam) * y2


def cutmix(x1, y1, x2, y2, lam, rng):
    """Paste a box of x2 covering about 1 - lam of x1; the label weight is the pasted area actually kept."""
    h, w = x1.shape[-2:]
    ch, cw = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
    cy, cx = rng.integers(0, h), rng.integers(0, w)                  # the centre may sit near a border
    y0, y1_, x0, x1_ = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
    out = x1.clone()
    out[..., y0:y1_, x0:x1_] = x2[..., y0:y1_, x0:x1_]
    lam_kept = 1 - (y1_ - y0) * (x1_ - x0) / (h * w)                  # recompute after clipping
    return out, lam_kept * y1 + (1 - lam_kept) * y2


n_classes = 5
y_a, y_b = F.one_hot(torch.tensor(1), n_classes).float(), F.one_hot(torch.tensor(3), n_classes).float()
x_a, x_b = torch.zeros(3, 32, 32), torch.ones(3, 32, 32)              # pixel value = "comes from image b"
logits = torch.randn(n_classes)
gaps = []
for _ in range(300):
    lam = float(rng.beta(0.4, 0.4))
    xm, ym = mixup(x_a, y_a, x_b, y_b, lam)
    assert torch.isclose(ym.sum(), torch.tensor(1.0)) and torch.isclose(ym[1], torch.tensor(lam))
    assert torch.allclose(xm, torch.full_like(xm, 1 - lam))
    soft_ce = -(ym * logits.log_softmax(0)).sum()                     # one soft-label loss ...
    two_ce = lam * F.cross_entropy(logits, torch.tensor(1)) + (1 - lam) * F.cross_entropy(logits, torch.tensor(3))
    assert torch.isclose(soft_ce, two_ce, atol=1e-5)                  # ... equals the two weighted losses

    lam = float(rng.beta(1.0, 1.0))
    xc, yc = cutmix(x_a, y_a, x_b, y_b, lam, rng)
    from_b = xc.mean().item()                                         # share of pixels taken from b
    assert abs(yc[3].item() - from_b) < 1e-6 and abs(yc[1].item() - (1 - from_b)) < 1e-6
    gaps.append(abs((1 - lam) - from_b))
claim("0.66", max(gaps))          # without the recomputation the label would be off by this much
# --8<-- [end:mix]


# --8<-- [start:tta]
def flip_tta_dense(model, x):
    """Average the prediction and the un-flipped prediction of the flipped input (segmentation, depth)."""
    return (model(x) + model(x.flip(-1)).flip(-1)) / 2


def conv_model(kernel):
    return lambda x: F.conv2d(x, kernel, padding=1)


x = torch.randn(1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
k = torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(1))              # not symmetric
tta = flip_tta_dense(conv_model(k), x)
assert torch.allclose(tta, conv_model((k + k.flip(-1)) / 2)(x), atol=1e-5)   # = conv with symmetrised kernel
assert torch.allclose(flip_tta_dense(conv_model(k), x.flip(-1)), tta.flip(-1), atol=1e-5)   # now equivariant
k_sym = (k + k.flip(-1)) / 2
assert torch.allclose(flip_tta_dense(conv_model(k_sym), x), conv_model(k_sym)(x), atol=1e-5)  # no-op
wrong = (conv_model(k)(x) + conv_model(k)(x.flip(-1))) / 2                   # forgot to flip back
assert (wrong - tta).abs().mean() > 0.5 * tta.abs().mean()                   # misaligned average

# Boxes from a detector run on the flipped image are flipped back before merging (e.g. by NMS or WBF).
_, _, boxes_on_flipped = hflip(image, masks, boxes)
_, _, back = hflip(image, masks, boxes_on_flipped)
assert np.array_equal(back, boxes)
# --8<-- [end:tta]
print(f"boxes: {boxes.tolist()}; after the crop, tight {tight[0].tolist()} vs clipped {boxes_c[0].tolist()}")
print(f"45-degree rotation of the disk: IoU(corner box, mask box) = {box_iou(from_corners, from_mask):.3f}")
print(f"CutMix: largest gap between nominal and actual label weight over 300 draws = {max(gaps):.3f}")

# Figure: the scene and augmented versions, with masks tinted and boxes drawn.
fig, axes = plt.subplots(2, 4, figsize=(8.5, 4.6))


def show(ax, img, masks=None, boxes=None, title=""):
    ax.imshow(img)
    if masks is not None:
        for m, b in zip(masks, boxes):
            ax.contour(m, levels=[0.5], colors="black", linewidths=0.6)
            ax.add_patch(plt.Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False,
                                       ec="cyan", lw=1.3))
    ax.set_title(title, fontsize=8)
    ax.axis("off")


show(axes[0, 0], image, masks, boxes, "original")
show(axes[0, 1], *hflip(image, masks, boxes), title="horizontal flip")
show(axes[0, 2], *rot90(image, masks, boxes), title="rotate 90")
show(axes[0, 3], img_c, masks_c, boxes_c, title="crop: the disk's box is loose")
aug_rng = np.random.default_rng(3)
for ax in axes[1, :2]:
    img_a, masks_a, boxes_a, _ = augment(image, masks, boxes, labels, aug_rng)
    show(ax, img_a, masks_a, boxes_a, "random pipeline")
other = np.ascontiguousarray(np.rot90(image, 2))
lam = 0.6
show(axes[1, 2], lam * image + (1 - lam) * other, title=f"MixUp, lambda = {lam}")
xc, yc = cutmix(torch.from_numpy(image).permute(2, 0, 1), y_a, torch.from_numpy(other).permute(2, 0, 1), y_b,
                lam, np.random.default_rng(5))
claim("0.68", yc[1]), claim("0.32", yc[3])     # the label weights shown in the figure
show(axes[1, 3], xc.permute(1, 2, 0).numpy(), title=f"CutMix, label weights {yc[1]:.2f} / {yc[3]:.2f}")
save(fig, "cv-deep-learning", "augmentation-examples")
