"""When to pick which loss: numbers on a 1%-foreground mask and on box-regression cases."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:pixel-losses]
def bce(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over pixels, on probabilities."""
    return -(y * p.log() + (1 - y) * (1 - p).log()).mean()


def soft_dice_loss(p: torch.Tensor, y: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice; eps keeps it defined when both masks are empty."""
    return 1 - (2 * (p * y).sum() + eps) / (p.sum() + y.sum() + eps)


def focal_terms(p: torch.Tensor, y: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Per-pixel focal loss (Lin et al., 2017): CE scaled by (1 - p_t)^gamma."""
    p_t = torch.where(y == 1, p, 1 - p)
    return -((1 - p_t) ** gamma) * p_t.log()


def hard_iou(p: torch.Tensor, y: torch.Tensor) -> float:
    m = p > 0.5
    return float((m & (y == 1)).sum() / (m | (y == 1)).sum())
# --8<-- [end:pixel-losses]


# --8<-- [start:imbalance]
y = torch.zeros(100, 100)
y[45:55, 45:55] = 1                                    # a 10x10 object: 1% of the pixels

# Prediction A: "everything is background", at the calibrated prior p = 0.01.
p_a = torch.full_like(y, 0.01)
# Prediction B: finds the object (p = 0.9) but also fires on 300 background pixels.
p_b = torch.full_like(y, 0.01)
p_b[y == 1] = 0.9
p_b[0:10, 0:30] = 0.9

ce_a, ce_b = bce(p_a, y).item(), bce(p_b, y).item()
dice_a, dice_b = soft_dice_loss(p_a, y).item(), soft_dice_loss(p_b, y).item()
claim("0.00", hard_iou(p_a, y)), claim("0.25", hard_iou(p_b, y))
claim("0.056", ce_a), claim("0.080", ce_b)           # CE prefers the useless prediction
claim("0.985", dice_a), claim("0.675", dice_b)       # Dice prefers the one that found the object
claim("1.041", ce_a + dice_a), claim("0.755", ce_b + dice_b)   # so does Dice + CE
# --8<-- [end:imbalance]

# --8<-- [start:gradient-share]
def foreground_gradient_share(loss_fn, p0: float) -> float:
    """Fraction of |dLoss/dlogit| that lands on foreground pixels when every pixel predicts p0."""
    z = torch.full_like(y, math.log(p0 / (1 - p0)), requires_grad=True)
    loss_fn(torch.sigmoid(z), y).backward()
    g = z.grad.abs()
    return float(g[y == 1].sum() / g.sum())


# Default init (p = 0.5): 99% of CE's gradient pushes background pixels; Dice splits it evenly.
claim("99%", 1 - foreground_gradient_share(bce, 0.5))
claim("50% of it to the foreground", foreground_gradient_share(soft_dice_loss, 0.5))
# Prior init (p = 0.01, the RetinaNet trick): CE is balanced too at the start.
claim("50% of its gradient", foreground_gradient_share(bce, 0.01))
prior_bias = -math.log((1 - 0.01) / 0.01)
claim("$-4.595$", prior_bias)
# --8<-- [end:gradient-share]

# --8<-- [start:focal]
# Later in training: background is easy (p = 0.1), the object is still hard (p = 0.3).
p_mid = torch.full_like(y, 0.1)
p_mid[y == 1] = 0.3
ce_terms = -(y * p_mid.log() + (1 - y) * (1 - p_mid).log())
fl_terms = focal_terms(p_mid, y, gamma=2.0)
ce_fg = float(ce_terms[y == 1].sum() / ce_terms.sum())
fl_fg = float(fl_terms[y == 1].sum() / fl_terms.sum())
claim("10% of the CE loss", ce_fg)                     # CE: 9,900 easy pixels still dominate
claim("85% of the focal loss", fl_fg)                  # focal: the 100 hard pixels do
# --8<-- [end:focal]

# --8<-- [start:empty]
# An image with no object: Dice has nothing to reward, only predicted mass to punish.
empty = torch.zeros(100, 100)
claim("costs 0.990", soft_dice_loss(torch.full_like(empty, 0.01), empty).item())
claim("costs 0.909", soft_dice_loss(torch.full_like(empty, 0.001), empty).item())
claim("at 0.010", bce(torch.full_like(empty, 0.01), empty).item())     # CE calls it nearly perfect
# --8<-- [end:empty]


# --8<-- [start:box-losses]
def iou_terms(a: torch.Tensor, b: torch.Tensor):
    """Boxes as (x0, y0, x1, y1). Returns IoU, union, enclosing box corners."""
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])
    union = area(a) + area(b) - inter
    lo, hi = torch.minimum(a[..., :2], b[..., :2]), torch.maximum(a[..., 2:], b[..., 2:])
    return inter / union, union, lo, hi


def iou_loss(a, b):
    """1 - IoU, the form the GIoU paper uses."""
    return 1 - iou_terms(a, b)[0]


def unitbox_loss(a, b):
    """UnitBox (Yu et al., 2016): -ln IoU, cross-entropy against a target IoU of 1."""
    return -torch.log(iou_terms(a, b)[0])


def giou_loss(a, b):
    """Rezatofighi et al., 2019: IoU minus the share of the enclosing box that neither covers."""
    iou, union, lo, hi = iou_terms(a, b)
    c = (hi - lo).prod(-1)
    return 1 - (iou - (c - union) / c)


def diou_loss(a, b):
    """Zheng et al., 2020: IoU minus squared centre distance over the enclosing box's squared diagonal."""
    iou, _, lo, hi = iou_terms(a, b)
    centre = lambda r: (r[..., :2] + r[..., 2:]) / 2
    d2 = ((centre(a) - centre(b)) ** 2).sum(-1)
    c2 = ((hi - lo) ** 2).sum(-1)
    return 1 - (iou - d2 / c2)


def l1(a, b):
    return (a - b).abs().sum(-1)


def smooth_l1(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    return torch.where(x.abs() < beta, 0.5 * x ** 2 / beta, x.abs() - 0.5 * beta).sum(-1)
# --8<-- [end:box-losses]

B = lambda *v: torch.tensor(v, dtype=torch.float64)

# --8<-- [start:scale]
# The same 10% mistake on a small and on a large box.
small_gt, small_pred = B(0, 0, 10, 10), B(1, 1, 11, 11)
large_gt, large_pred = B(0, 0, 200, 200), B(20, 20, 220, 220)
claim("4 px", l1(small_pred, small_gt)), claim("80 px", l1(large_pred, large_gt))   # 20x apart
assert torch.isclose(iou_loss(small_pred, small_gt), iou_loss(large_pred, large_gt))
claim("IoU is 0.68", iou_terms(small_pred, small_gt)[0])                          # 81/119, both


def encode(gt: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """R-CNN box deltas relative to a reference box (anchor or proposal)."""
    w, h = ref[2] - ref[0], ref[3] - ref[1]
    gw, gh = gt[2] - gt[0], gt[3] - gt[1]
    return torch.stack([(gt[0] + gw / 2 - ref[0] - w / 2) / w, (gt[1] + gh / 2 - ref[1] - h / 2) / h,
                        torch.log(gw / w), torch.log(gh / h)])


# Normalising by the reference box size is what makes smooth L1 usable in Faster R-CNN:
d_small, d_large = encode(small_gt, small_pred), encode(large_gt, large_pred)
assert torch.allclose(d_small, d_large)
assert torch.isclose(smooth_l1(d_small), smooth_l1(d_large))

# Equal L1, different IoU: L1 is not aligned with the metric.
gt = B(0, 0, 10, 10)
shifted, grown, slid = B(2, 2, 12, 12), B(0, 0, 14, 14), B(4, 0, 14, 10)
assert l1(shifted, gt) == l1(grown, gt) == l1(slid, gt) == 8
ious = [iou_terms(p, gt)[0].item() for p in (slid, shifted, grown)]
claim("IoU 0.43", ious[0]), claim("0.47", ious[1]), claim("0.51", ious[2])

# Smooth L1 caps the gradient of an outlier; L2 does not.
err = torch.tensor([50.0], requires_grad=True)
smooth_l1(err).backward()
claim("gradient of 1", err.grad.item())                # vs 50 for 0.5 * err^2
# --8<-- [end:scale]

# --8<-- [start:no-overlap]
# Boxes that do not overlap: IoU loss is 1 whether the prediction is near or far, with zero gradient.
gt = B(0, 0, 10, 10)
near = B(12, 0, 22, 10).requires_grad_(True)
far = B(50, 0, 60, 10).requires_grad_(True)
assert iou_loss(near, gt) == iou_loss(far, gt) == 1
iou_loss(near, gt).backward()
assert torch.all(near.grad == 0)                       # nothing to learn from
near.grad = None
assert torch.isinf(unitbox_loss(near, gt))             # UnitBox's -ln IoU is not even finite
g_near, g_far = giou_loss(near, gt), giou_loss(far, gt)
claim("1.091", g_near), claim("1.667", g_far)          # 1 + 20/220 and 1 + 400/600
g_near.backward()
# GIoU's gradient pulls the left edge towards the GT but pushes the right edge away: the box first
# grows until it overlaps (Zheng et al., 2020). DIoU pulls both edges left: the box moves.
assert near.grad[0] > 0 and near.grad[2] < 0
near.grad = None
diou_loss(near, gt).backward()
assert near.grad[0] > 0 and near.grad[2] > 0

# A box inside the ground truth: GIoU = IoU (the enclosing box is the GT), blind to position.
gt = B(0, 0, 20, 20)
centred, cornered = B(5, 5, 15, 15), B(0, 0, 10, 10)
assert iou_loss(centred, gt) == iou_loss(cornered, gt) == 0.75
assert giou_loss(centred, gt) == giou_loss(cornered, gt) == 0.75
claim("0.75 vs", diou_loss(centred, gt)), claim("0.8125", diou_loss(cornered, gt))    # DIoU sees it
# --8<-- [end:no-overlap]

print(f"1% mask: CE all-bg {ce_a:.4f} < CE found {ce_b:.4f}; Dice all-bg {dice_a:.3f} > Dice found {dice_b:.3f}")
print(f"fg share of gradient at p=0.5: CE {foreground_gradient_share(bce, 0.5):.3f}, "
      f"Dice {foreground_gradient_share(soft_dice_loss, 0.5):.3f}; fg share of loss CE {ce_fg:.2f}, focal {fl_fg:.2f}")
print(f"equal L1 = 8, IoUs {ious}; GIoU loss near {g_near.item():.3f}, far {g_far.item():.3f}")

# Figure: loss against horizontal offset of a 10x10 prediction from a 10x10 ground truth.
offsets = torch.linspace(0, 30, 301, dtype=torch.float64)
gt = B(0, 0, 10, 10)
preds = torch.stack([offsets, torch.zeros_like(offsets), offsets + 10, torch.full_like(offsets, 10)], -1)
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot(offsets, l1(preds, gt) / 20, label="L1 / (2 x box width)", c="0.4", ls="--")
ax.plot(offsets, iou_loss(preds, gt), label="IoU loss", lw=2)
ax.plot(offsets, giou_loss(preds, gt), label="GIoU loss", lw=2)
ax.plot(offsets, diou_loss(preds, gt), label="DIoU loss", lw=1.5, ls=":")
ax.axvline(10, c="0.7", lw=0.8)
ax.text(10.4, 0.12, "boxes stop\noverlapping", fontsize=8, color="0.4")
ax.set(xlabel="horizontal offset of the predicted box (px), box size 10x10", ylabel="loss")
ax.set_title("Box-regression losses vs offset: IoU loss goes flat, GIoU/DIoU keep a slope", fontsize=9)
ax.legend(fontsize=8, loc="lower right")
save(fig, "cv-deep-learning", "box-losses-offset")
