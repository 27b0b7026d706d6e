"""YOLO box decoding, anchor-based (v2/v3 and v5) and anchor-free (v8-style distances with DFL), each
round-tripped; and how many positive samples each assignment rule gives one object."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)

IMG = 640
STRIDES = (8, 16, 32)
# YOLOv3's nine anchors (w, h in pixels), three per output stride; YOLOv5 uses the same defaults.
ANCHORS = {8: [(10, 13), (16, 30), (33, 23)], 16: [(30, 61), (62, 45), (59, 119)],
           32: [(116, 90), (156, 198), (373, 326)]}
sigmoid = lambda t: 1 / (1 + np.exp(-t))
logit = lambda p: np.log(p / (1 - p))


# --8<-- [start:anchor-based]
def decode_v3(t, cell, anchor, stride):
    """YOLOv2/v3: centre = (sigmoid(t) + cell index) * stride, size = anchor * exp(t)."""
    (tx, ty, tw, th), (j, i), (pw, ph) = t, cell, anchor
    return np.array([(sigmoid(tx) + j) * stride, (sigmoid(ty) + i) * stride, pw * np.exp(tw), ph * np.exp(th)])


def encode_v3(box, cell, anchor, stride):
    (cx, cy, w, h), (j, i), (pw, ph) = box, cell, anchor
    return np.array([logit(cx / stride - j), logit(cy / stride - i), np.log(w / pw), np.log(h / ph)])


def decode_v5(t, cell, anchor, stride):
    """YOLOv5: centre offset 2 sigmoid(t) - 0.5, in (-0.5, 1.5); size anchor * (2 sigmoid(t))^2, in (0, 4 anchor)."""
    (tx, ty, tw, th), (j, i), (pw, ph) = t, cell, anchor
    return np.array([(2 * sigmoid(tx) - 0.5 + j) * stride, (2 * sigmoid(ty) - 0.5 + i) * stride,
                     pw * (2 * sigmoid(tw)) ** 2, ph * (2 * sigmoid(th)) ** 2])


def encode_v5(box, cell, anchor, stride):
    (cx, cy, w, h), (j, i), (pw, ph) = box, cell, anchor
    return np.array([logit((cx / stride - j + 0.5) / 2), logit((cy / stride - i + 0.5) / 2),
                     logit(np.sqrt(w / pw) / 2), logit(np.sqrt(h / ph) / 2)])


for _ in range(1000):                                        # random boxes, cells, anchors: exact round trips
    stride = int(rng.choice(STRIDES))
    anchor = ANCHORS[stride][rng.integers(3)]
    cell = tuple(rng.integers(1, IMG // stride - 1, 2))
    size = np.array(anchor) * np.exp(rng.uniform(-1.3, 1.3, 2))                    # within 4x of the anchor
    v3_box = np.r_[(np.array(cell) + rng.uniform(0.01, 0.99, 2)) * stride, size]  # centre inside the cell
    v5_box = np.r_[(np.array(cell) + rng.uniform(-0.49, 1.49, 2)) * stride, size] # or half a cell beyond it
    assert np.allclose(decode_v3(encode_v3(v3_box, cell, anchor, stride), cell, anchor, stride), v3_box, atol=1e-9)
    assert np.allclose(decode_v5(encode_v5(v5_box, cell, anchor, stride), cell, anchor, stride), v5_box, atol=1e-9)

# The sigmoid never reaches the cell border: a centre 0.1% of a cell from it needs a large logit in v3,
# a moderate one in v5 (the "grid sensitivity" that YOLOv4 and v5 removed).
claim("6.9", logit(0.999)), claim("1.10", logit((0.999 + 0.5) / 2))
# v5's size is capped at 4x the anchor, which is why its assigner only matches anchors within 4x.
assert decode_v5(np.array([0, 0, 15.0, 15.0]), (10, 10), (116, 90), 32)[2] < 4 * 116
# --8<-- [end:anchor-based]


# --8<-- [start:anchor-free]
REG_MAX = 16                                                  # DFL bins per side: distances 0 .. 15 strides


def anchor_points(img: int = IMG, strides=STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Every cell centre of every level, (x, y) in pixels, and its stride."""
    pts, st = [], []
    for s in strides:
        c = (np.arange(img // s) + 0.5) * s
        xx, yy = np.meshgrid(c, c)
        pts.append(np.c_[xx.ravel(), yy.ravel()])
        st.append(np.full(xx.size, s))
    return np.concatenate(pts), np.concatenate(st)


def box_to_ltrb(box, point, stride):
    """x1, y1, x2, y2 -> distances from the point to the left, top, right and bottom sides, in strides."""
    return np.r_[point - box[:2], box[2:] - point] / stride


def ltrb_to_box(d, point, stride):
    return np.r_[point - d[:2] * stride, point + d[2:] * stride]


def two_hot(d: np.ndarray) -> np.ndarray:
    """DFL target: each distance as weights on its two neighbouring integer bins (expectation = d)."""
    d = np.clip(d, 0, REG_MAX - 1 - 0.01)
    lo = np.floor(d).astype(int)
    p = np.zeros((len(d), REG_MAX))
    p[np.arange(len(d)), lo] = lo + 1 - d
    p[np.arange(len(d)), lo + 1] = d - lo
    return p


def dfl_decode(logits: np.ndarray) -> np.ndarray:
    """The head outputs 4 x 16 logits per point; each side is the expectation of a softmax over the bins."""
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ np.arange(REG_MAX)


points, point_stride = anchor_points()
claim("8,400", len(points))                                   # 80^2 + 40^2 + 20^2 points at 640 x 640
claim("25,200", sum(len(ANCHORS[s]) * (IMG // s) ** 2 for s in STRIDES))   # 3 anchors per cell in v3/v5

for _ in range(1000):
    k = rng.integers(len(points))
    p, s = points[k], point_stride[k]
    box = np.r_[p - rng.uniform(0, 14.9, 2) * s, p + rng.uniform(0, 14.9, 2) * s]
    d = box_to_ltrb(box, p, s)
    with np.errstate(divide="ignore"):
        logits = np.log(two_hot(d))                          # logits whose softmax is the two-hot target
    assert np.allclose(ltrb_to_box(dfl_decode(logits), p, s), box, atol=1e-9)

# A side can be at most 15 strides from its point: 120 px on the stride-8 level.
claim("120 px", (REG_MAX - 1) * STRIDES[0])


class DecoupledHead(nn.Module):
    """One level of a v8-style head: separate branches for class scores and for 4 x 16 DFL logits."""

    def __init__(self, ch: int, num_classes: int):
        super().__init__()
        self.cls = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, num_classes, 1))
        self.box = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, 4 * REG_MAX, 1))

    def forward(self, f):
        return self.cls(f), self.box(f)


heads = nn.ModuleList(DecoupledHead(32, num_classes=80) for _ in STRIDES)
feats = [torch.randn(2, 32, IMG // s, IMG // s) for s in STRIDES]
outs = [h(f) for h, f in zip(heads, feats)]
cls = torch.cat([c.flatten(2) for c, _ in outs], 2).transpose(1, 2)                  # (N, 8400, 80)
dist = torch.cat([b.flatten(2) for _, b in outs], 2).transpose(1, 2).reshape(2, -1, 4, REG_MAX)
sides = (dist.softmax(-1) * torch.arange(REG_MAX)).sum(-1)                             # (N, 8400, 4), in strides
pts, st = torch.tensor(points), torch.tensor(point_stride)[:, None]
boxes = torch.cat([pts - sides[..., :2] * st, pts + sides[..., 2:] * st], -1)           # (N, 8400, 4), pixels
assert cls.shape == (2, 8400, 80) and boxes.shape == (2, 8400, 4) and (boxes[..., 2:] >= boxes[..., :2]).all()
# --8<-- [end:anchor-free]


# --8<-- [start:positives]
def iou_xyxy(a, b):
    lt, rb = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])
    return inter / (area(a) + area(b) - inter)


def wh_iou(wh, anchor):
    """IoU of two boxes sharing a centre: the shape match YOLOv3 uses to pick the anchor."""
    inter = min(wh[0], anchor[0]) * min(wh[1], anchor[1])
    return inter / (wh[0] * wh[1] + anchor[0] * anchor[1] - inter)


def positives_v3(gt):
    """One anchor per object: the best shape match of all nine, at the cell holding the centre."""
    wh, c = gt[2:] - gt[:2], (gt[:2] + gt[2:]) / 2
    s, a = max(((s, a) for s in STRIDES for a in ANCHORS[s]), key=lambda sa: wh_iou(wh, sa[1]))
    return [(s, tuple((c // s + 0.5) * s))]


def positives_v5(gt, anchor_t=4.0):
    """Every anchor within 4x in width and height, on every level, at the centre cell and at the two
    neighbouring cells nearest the centre (YOLOv5's build_targets)."""
    wh, c = gt[2:] - gt[:2], (gt[:2] + gt[2:]) / 2
    out = []
    for s in STRIDES:
        g, n = c / s, IMG // s
        cells = [np.floor(g)]
        for axis in (0, 1):
            step = np.eye(2)[axis]
            if g[axis] % 1 < 0.5 and g[axis] > 1:
                cells.append(np.floor(g) - step)               # the left (or upper) neighbour
            if (n - g[axis]) % 1 < 0.5 and n - g[axis] > 1:
                cells.append(np.floor(g) + step)               # the right (or lower) neighbour
        for a in ANCHORS[s]:
            r = wh / np.array(a)
            if np.maximum(r, 1 / r).max() < anchor_t:
                out += [(s, tuple((cell + 0.5) * s)) for cell in cells]
    return out


def positives_fcos(gt, radius=1.5):
    """FCOS: points within 1.5 strides of the centre (and inside the box), on the level whose range
    holds the point's largest regression distance."""
    ranges = {8: (0, 64), 16: (64, 128), 32: (128, 256)}      # P6, P7 take (256, 512] and beyond
    c = (gt[:2] + gt[2:]) / 2
    d = np.c_[points - gt[:2], gt[2:] - points]               # l, t, r, b of every point of every level
    lo, hi = np.array([ranges[s] for s in point_stride]).T
    near = np.all(np.abs(points - c) < radius * point_stride[:, None], axis=1)
    keep = (d.min(1) > 0) & near & (lo < d.max(1)) & (d.max(1) <= hi)
    return [(point_stride[k], tuple(points[k])) for k in np.flatnonzero(keep)]


def positives_tal(gt, topk=10, alpha=0.5, beta=6.0):
    """YOLOv8's task-aligned assigner: of the points strictly inside the box, on any level, the top 10
    by score^0.5 * IoU^6 of their current prediction. Predictions are simulated as a half-trained head's:
    random class scores, boxes that get worse away from the object's centre."""
    inside = np.all(np.c_[points - gt[:2], gt[2:] - points] > 1e-9, axis=1)
    idx = np.flatnonzero(inside)
    size, centre = gt[2:] - gt[:2], (gt[:2] + gt[2:]) / 2
    # 0 at the centre, 1 at the border
    off_centre = np.abs(points[idx] - centre).max(1, keepdims=True) / (size.max() / 2)
    pred = gt + rng.normal(0, 1, (len(idx), 4)) * (0.03 + 0.2 * off_centre) * np.tile(size, 2)
    metric = rng.uniform(0.1, 0.9, len(idx)) ** alpha * iou_xyxy(pred, gt) ** beta
    best = idx[np.argsort(-metric)[:topk]]
    return [(point_stride[k], tuple(points[k])) for k in best]


medium = np.array([281.0, 206, 381, 286])                      # 100 x 80 px
small = np.array([198.0, 404, 212, 416])                       # 14 x 12 px
tiny = np.array([9.5, 21, 15.5, 27])                           # 6 x 6 px, between the points of all levels
counts = {rule: [len(f(b)) for b in (medium, small, tiny)]
          for rule, f in [("v3", positives_v3), ("v5", positives_v5), ("fcos", positives_fcos), ("tal", positives_tal)]}
claim("1 positive", counts["v3"][0])                           # YOLOv1-v3 and DETR: one per object
claim("18 positives", counts["v5"][0])                         # 6 anchors within 4x, 3 cells each
claim("12 positives", counts["fcos"][0])
claim("10 positives", counts["tal"][0])                        # the top-k, when the box holds 10 points
claim("2 positives", counts["tal"][1])                         # a 14 x 12 px object holds only 2 points
claim("0 positives", counts["tal"][2])                          # a 6 x 6 px one can hold none: never learned
assert counts["v3"] == [1, 1, 1]                               # anchor-based rules always give it a cell ...
claim("9 positives", counts["v5"][1]), claim("4 positives", counts["v5"][2])
claim("1 positive", counts["fcos"][1]), claim("0 positives", counts["fcos"][2])   # ... point rules may not
# A 600 x 20 px object (a pole, a text line) is more than 4x off every anchor in one dimension: YOLOv5's
# rule gives it nothing, while the points inside it give TAL its full 10.
pole = np.array([20.0, 300, 620, 320])
assert positives_v5(pole) == [] and len(positives_v3(pole)) == 1
claim("10 positives", len(positives_tal(pole)))
n_predictions_v3 = sum(len(ANCHORS[s]) * (IMG // s) ** 2 for s in STRIDES)
claim("25,200", n_predictions_v3 / counts["v3"][0])            # predictions per positive: v3, 640 px, one object
# The 6 x 6 px object: one anchor within 4x, (10, 13), but 4 cells, not 3. Its centre sits exactly on a
# cell edge (y = 3.0 cells at stride 8), where v5's test takes the neighbours on both sides.
tiny_centre = (tiny[:2] + tiny[2:]) / 2 / 8
assert tiny_centre[1] % 1 == 0 and counts["v5"][2] == 1 * 4
assert counts["v5"][0] == 6 * 3 and counts["v5"][1] == 3 * 3   # off the edges: anchors x 3 cells
# v5's ratio rule is not a best-anchor rule: below 2.5 x 3.25 px (4x under the (10, 13) anchor) nothing matches.
assert positives_v5(np.array([100.0, 100, 102.4, 103.2])) == []
assert len(positives_v5(np.array([100.0, 100, 102.6, 103.3]))) > 0
# --8<-- [end:positives]
print("positives (medium, small, tiny):", counts)

# Figure: where the positives of one 100 x 80 object sit under each rule.
fig, axes = plt.subplots(1, 4, figsize=(11, 3.2))
colors = {8: "tab:blue", 16: "tab:orange", 32: "tab:red"}
titles = {"v3": "YOLOv3: best anchor, 1 cell", "v5": "YOLOv5: anchors within 4x, 3 cells",
          "fcos": "FCOS: centre region, range-matched level", "tal": "YOLOv8 TAL: top-10 aligned points"}
rng = np.random.default_rng(1)
for ax, (rule, f) in zip(axes, [("v3", positives_v3), ("v5", positives_v5), ("fcos", positives_fcos),
                                ("tal", positives_tal)]):
    pos = f(medium)
    for g in np.arange(0, IMG + 1, 8):
        ax.axvline(g, color="0.93", lw=0.4)
        ax.axhline(g, color="0.93", lw=0.4)
    ax.add_patch(plt.Rectangle(medium[:2], *(medium[2:] - medium[:2]), fill=False, ec="k", lw=1.5, zorder=5))
    seen = set()
    for s, (x, y) in pos:
        ax.add_patch(plt.Rectangle((x - s / 2, y - s / 2), s, s, fc=colors[s], ec=colors[s], alpha=0.18))
        ax.plot(x, y, "o", ms=3.5, color=colors[s], label=f"stride {s}" if s not in seen else None)
        seen.add(s)
    ax.set(xlim=(250, 415), ylim=(320, 170), aspect="equal", title=f"{titles[rule]}\n{len(pos)} positive(s)")
    ax.title.set_fontsize(8)
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(fontsize=6.5, loc="lower right")
save(fig, "detection-and-segmentation", "yolo-positives")
