"""Segmentation and detection losses written out and checked on cases with known values:
cross-entropy (weighted), focal, Dice, soft IoU, Lovasz; smooth L1, IoU, GIoU, DIoU, CIoU."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:ce]
logits = torch.randn(2, 4, 8, 8)                       # N, K classes, H, W
target = torch.randint(0, 4, (2, 8, 8))
log_p = logits.log_softmax(dim=1)
nll = -log_p.gather(1, target[:, None]).squeeze(1)     # per-pixel -log p(true class)
assert torch.allclose(nll.mean(), F.cross_entropy(logits, target), atol=1e-6)

# Weighted CE: PyTorch's "mean" divides by the sum of the weights of the targets, not by N.
w = torch.tensor([0.1, 1.0, 2.0, 5.0])
weighted = (w[target] * nll).sum() / w[target].sum()
assert torch.allclose(weighted, F.cross_entropy(logits, target, weight=w), atol=1e-6)
assert not torch.allclose((w[target] * nll).mean(), weighted)
# --8<-- [end:ce]


# --8<-- [start:focal]
def focal_loss(logits, targets, gamma: float = 2.0, alpha: float | None = 0.25):
    """Sigmoid focal loss (RetinaNet), summed: -alpha_t (1 - p_t)^gamma log p_t."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")   # = -log p_t
    p_t = targets * p + (1 - targets) * (1 - p)
    loss = (1 - p_t) ** gamma * ce
    if alpha is not None:
        loss = (targets * alpha + (1 - targets) * (1 - alpha)) * loss
    return loss.sum()


z, t = torch.randn(1000), (torch.rand(1000) < 0.1).float()
bce = F.binary_cross_entropy_with_logits(z, t, reduction="sum")
assert torch.allclose(focal_loss(z, t, gamma=0.0, alpha=None), bce)        # gamma = 0: plain CE

# The modulating factor (1 - p_t)^gamma with gamma = 2: 100x less loss at p_t = 0.9, 1000x less
# at p_t = 0.968 (the numbers in the RetinaNet paper).
claim("100×", 1 / (1 - 0.9) ** 2)
p_1000 = 1 - math.sqrt(1e-3)                           # where (1 - p_t)^2 = 1/1000
assert math.isclose(1 / (1 - p_1000) ** 2, 1000)
claim("0.968", p_1000)

# 10,000 easy negatives (p_t = 0.99) against 10 hard positives (p_t = 0.1): who owns the loss?
easy = torch.full((10_000,), math.log(0.01 / 0.99))    # logit with p = 0.01 on a negative
hard = torch.full((10,), math.log(0.1 / 0.9))          # logit with p = 0.1 on a positive
zz, tt = torch.cat([easy, hard]), torch.cat([torch.zeros(10_000), torch.ones(10)])
ce_per = F.binary_cross_entropy_with_logits(zz, tt, reduction="none")
fl_per = (1 - torch.where(tt == 1, zz.sigmoid(), 1 - zz.sigmoid())) ** 2 * ce_per
easy_share_ce = (ce_per[:10_000].sum() / ce_per.sum()).item()
easy_share_fl = (fl_per[:10_000].sum() / fl_per.sum()).item()
claim("81%", easy_share_ce), claim("0.05%", easy_share_fl)
# --8<-- [end:focal]


# --8<-- [start:dice]
def soft_dice_loss(prob, gt, eps: float = 1.0):
    inter = (prob * gt).sum()
    return 1 - (2 * inter + eps) / (prob.sum() + gt.sum() + eps)


def soft_iou_loss(prob, gt, eps: float = 1.0):          # soft Jaccard
    inter = (prob * gt).sum()
    return 1 - (inter + eps) / (prob.sum() + gt.sum() - inter + eps)


gt = torch.zeros(64, 64)
gt[30:34, 30:35] = 1                                    # a 20-pixel object in 4,096 pixels
claim("0.5%", gt.mean())                               # of the pixels a plain CE averages over
assert soft_dice_loss(gt, gt) == 0 and soft_iou_loss(gt, gt) == 0          # perfect
assert soft_dice_loss(1 - gt, gt, eps=1e-6) > 0.999                         # disjoint: ~1
# Predicting all background: 99.5% pixel accuracy, yet the worst possible Dice.
all_bg = torch.zeros_like(gt)
claim("99.5%", (all_bg == gt).float().mean())
assert soft_dice_loss(all_bg, gt, eps=1e-6) > 0.999
# An empty image predicted empty: eps (the smoothing term) decides, and gives 0 loss.
assert soft_dice_loss(all_bg, all_bg) == 0
# For hard masks Dice and IoU are tied: D = 2J / (1 + J).
pred = torch.zeros_like(gt)
pred[31:35, 31:37] = 1
D, J = 1 - soft_dice_loss(pred, gt, eps=0), 1 - soft_iou_loss(pred, gt, eps=0)
assert torch.isclose(D, 2 * J / (1 + J))
# --8<-- [end:dice]


# --8<-- [start:lovasz]
def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss, for errors sorted in decreasing order."""
    n_pos = gt_sorted.sum()
    inter = n_pos - gt_sorted.cumsum(0)
    union = n_pos + (1 - gt_sorted).cumsum(0)
    jac = 1 - inter / union
    return torch.cat([jac[:1], jac[1:] - jac[:-1]])


def lovasz_binary(prob_fg: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Lovasz-Softmax for one class: a convex surrogate of 1 - IoU built from per-pixel errors."""
    errors = (gt - prob_fg).abs().flatten()
    errors_sorted, order = errors.sort(descending=True)
    return errors_sorted @ lovasz_grad(gt.flatten()[order])


iou = (pred * gt).sum() / ((pred + gt) > 0).sum()
assert torch.isclose(lovasz_binary(pred, gt), 1 - iou)          # exact on hard predictions
assert lovasz_binary(gt, gt) == 0
soft = (0.7 * pred + 0.3 * torch.rand_like(pred)).requires_grad_()
lovasz_binary(soft, gt).backward()
assert soft.grad.abs().sum() > 0                                # and differentiable in between
# --8<-- [end:lovasz]


# --8<-- [start:boxes]
def box_losses(p: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU, GIoU, DIoU, CIoU *losses* (1 - metric) for boxes in (x1, y1, x2, y2)."""
    iw = (torch.min(p[2], g[2]) - torch.max(p[0], g[0])).clamp(min=0)
    ih = (torch.min(p[3], g[3]) - torch.max(p[1], g[1])).clamp(min=0)
    inter = iw * ih
    area_p, area_g = (p[2] - p[0]) * (p[3] - p[1]), (g[2] - g[0]) * (g[3] - g[1])
    union = area_p + area_g - inter
    iou = inter / union
    cw = torch.max(p[2], g[2]) - torch.min(p[0], g[0])       # smallest enclosing box C
    ch = torch.max(p[3], g[3]) - torch.min(p[1], g[1])
    giou = iou - (cw * ch - union) / (cw * ch)
    centre_dist2 = ((p[0] + p[2] - g[0] - g[2]) ** 2 + (p[1] + p[3] - g[1] - g[3]) ** 2) / 4
    diou = iou - centre_dist2 / (cw**2 + ch**2)
    v = 4 / math.pi**2 * (torch.atan((g[2] - g[0]) / (g[3] - g[1]))
                          - torch.atan((p[2] - p[0]) / (p[3] - p[1]))) ** 2
    with torch.no_grad():                                     # alpha is a weight, not optimised
        alpha = v / (1 - iou + v + 1e-9)
    ciou = diou - alpha * v
    return {"IoU": 1 - iou, "GIoU": 1 - giou, "DIoU": 1 - diou, "CIoU": 1 - ciou}


b = lambda *xs: torch.tensor(xs, dtype=torch.float64)
L = box_losses(b(0, 0, 2, 2), b(0, 0, 2, 2))
assert all(abs(v) < 1e-9 for v in L.values())                  # perfect box: every loss is 0

L = box_losses(b(0, 0, 2, 2), b(1, 1, 3, 3))                   # overlap 1, union 7, enclosing 9
assert math.isclose(1 - L["IoU"], 1 / 7) and math.isclose(1 - L["GIoU"], 1 / 7 - 2 / 9)   # GIoU < 0
claim("-0.079", 1 - L["GIoU"])

far = box_losses(b(0, 0, 1, 1), b(100, 100, 101, 101))
assert far["IoU"] == 1 and 1 - far["GIoU"] < -0.99             # GIoU -> -1, IoU stuck at 0

# Disjoint boxes: the IoU loss has no gradient, GIoU and DIoU pull the box towards the target.
p = b(0, 0, 1, 1).requires_grad_()
losses = box_losses(p, b(3, 0, 4, 1))
grads = {k: torch.autograd.grad(losses[k], p, retain_graph=True)[0] for k in ("IoU", "GIoU", "DIoU")}
assert grads["IoU"].abs().sum() == 0
translate = {k: (g[0] + g[2]).item() for k, g in grads.items()}      # d loss / d (shift right)
assert translate["GIoU"] < 0 and translate["DIoU"] < 0                 # both move it right...
assert grads["GIoU"][0] > 0 and grads["GIoU"][2] < 0                   # ...GIoU also grows it

# A small box inside a big one: IoU and GIoU cannot tell where it sits; DIoU can.
g = b(0, 0, 10, 10)
centred, corner = box_losses(b(4, 4, 6, 6), g), box_losses(b(0, 0, 2, 2), g)
assert math.isclose(centred["IoU"], corner["IoU"]) and math.isclose(centred["GIoU"], corner["GIoU"])
assert math.isclose(centred["DIoU"], centred["IoU"])            # same centre: no distance term
claim("0.96", centred["IoU"]), claim("1.12", corner["DIoU"])   # offset 4*sqrt(2), diagonal 10*sqrt(2)

# Same centre and area, different shape: only CIoU's aspect-ratio term notices.
tall, square = box_losses(b(1, -1, 3, 3), b(0, 0, 4, 2)), box_losses(b(0, 0, 4, 2), b(0, 0, 4, 2))
assert math.isclose(tall["DIoU"], tall["IoU"])
claim("0.667", tall["IoU"]), claim("0.700", tall["CIoU"])
# --8<-- [end:boxes]


# --8<-- [start:smooth-l1]
def smooth_l1(x, y, beta: float = 1.0):
    d = (x - y).abs()
    return torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta).sum()


x, y = torch.randn(100) * 3, torch.randn(100) * 3
assert torch.allclose(smooth_l1(x, y), F.smooth_l1_loss(x, y, reduction="sum", beta=1.0))

# L1 on raw corners is not scale-invariant: the same IoU costs 10x more on a 10x larger box.
small_p, small_g = b(0, 0, 2, 2), b(0.5, 0, 2.5, 2)
big_p, big_g = small_p * 10, small_g * 10
assert math.isclose(box_losses(small_p, small_g)["IoU"], box_losses(big_p, big_g)["IoU"])
claim("10×", (big_p - big_g).abs().sum() / (small_p - small_g).abs().sum())
# --8<-- [end:smooth-l1]

print(f"focal: easy negatives own {easy_share_ce:.1%} of CE but {easy_share_fl:.3%} of focal loss")
print(f"GIoU of [0,0,2,2] vs [1,1,3,3]: {1 - L['GIoU']:.4f}; far boxes GIoU {1 - far['GIoU']:.4f}")
print(f"inside box: IoU loss {centred['IoU']:.3f} both; DIoU centred {centred['DIoU']:.4f}, "
      f"corner {corner['DIoU']:.4f}; CIoU of tall box {tall['CIoU']:.4f} vs DIoU {tall['DIoU']:.4f}")

# Figure: the focal modulation, and box losses as a prediction slides away from its target.
fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
pt = torch.linspace(0.01, 1, 200)
for gamma in [0, 0.5, 1, 2, 5]:
    a1.plot(pt, (1 - pt) ** gamma * -pt.log(), label=f"γ = {gamma}" + (" (cross-entropy)" if gamma == 0 else ""))
a1.set(xlabel="probability of the true class p_t", ylabel="loss", title="Focal loss", ylim=(0, 4))
a1.legend(fontsize=8)
shifts = torch.linspace(0, 4, 161)
curves = {k: [] for k in ("IoU", "GIoU", "DIoU")}
for s in shifts:
    Ls = box_losses(b(s, 0, s + 1, 1), b(0, 0, 1, 1))
    for k in curves:
        curves[k].append(Ls[k].item())
for k, style in zip(curves, ["-", "--", "-."]):
    a2.plot(shifts, curves[k], style, lw=2, label=f"{k} loss")
a2.axvline(1, color="0.6", lw=1)
a2.text(1.05, 0.1, "boxes stop\noverlapping", fontsize=8, color="0.4")
a2.set(xlabel="horizontal shift of a unit box (box widths)", ylabel="loss", title="Box regression losses")
a2.legend(fontsize=8)
save(fig, "notes", "seg-det-losses")
