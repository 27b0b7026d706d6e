"""One synthetic street scene with every kind of label: boxes, a semantic mask, instance masks and
a panoptic map, with the relations between them asserted and panoptic quality computed."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from matplotlib.colors import ListedColormap
from scipy import ndimage

from vault.claims import claim

rng = np.random.default_rng(0)

# --8<-- [start:scene]
H, W = 96, 128
CLASSES = {1: "sky", 2: "road", 3: "car", 4: "person"}      # 1-2 are stuff, 3-4 are things
STUFF, THINGS = {1, 2}, {3, 4}
yy, xx = np.mgrid[:H, :W]

sky = yy < 45
road = ~sky
# Things in painting order: a later object occludes an earlier one.
shapes = [
    (3, ((yy >= 50) & (yy < 70) & (xx >= 12) & (xx < 62))              # car A: body
        | ((yy >= 40) & (yy < 50) & (xx >= 22) & (xx < 50))),          #        cabin
    (3, ((yy >= 56) & (yy < 78) & (xx >= 52) & (xx < 100))             # car B, in front of A
        | ((yy >= 47) & (yy < 56) & (xx >= 62) & (xx < 90))),
    (4, ((yy >= 36) & (yy < 86) & (xx >= 108) & (xx < 112))            # person: body
        | ((yy - 31) ** 2 + (xx - 110) ** 2 <= 16)),                   #         head
]

# Instance masks: what is visible of each object (later objects cut earlier ones).
instances: list[tuple[int, np.ndarray]] = []
for cls, shape in shapes:
    instances = [(c, m & ~shape) for c, m in instances]
    instances.append((cls, shape.copy()))

# Semantic mask: stuff first, then every thing pixel gets its class.
semantic = np.where(sky, 1, 2)
for cls, m in instances:
    semantic[m] = cls


def box_from_mask(m: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x0, y0, x1, y1), x1 and y1 exclusive, around a binary mask."""
    ys, xs = np.nonzero(m)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


boxes = [(cls, box_from_mask(m)) for cls, m in instances]     # detection labels

# Panoptic map, id = class * 1000 + instance (Panoptic-DeepLab / Detectron2, label_divisor = 1000):
# stuff keeps instance 0, things count from 1.
panoptic = semantic * 1000
for k, (cls, m) in enumerate(instances, start=1):
    panoptic[m] = cls * 1000 + k
# --8<-- [end:scene]

# --8<-- [start:relations]
masks = np.stack([m for _, m in instances])
# Instance masks of visible pixels never overlap.
assert masks.sum(axis=0).max() == 1
# The semantic mask is the union of instance masks, class by class, plus stuff.
for c in THINGS:
    union = np.any([m for cls, m in instances if cls == c], axis=0)
    assert np.array_equal(semantic == c, union)
assert np.array_equal(np.isin(semantic, list(STUFF)), masks.sum(axis=0) == 0)
# Boxes are derived from the masks and are tight: the mask touches all four sides.
for (cls, (x0, y0, x1, y1)), (_, m) in zip(boxes, instances):
    assert m[y0, x0:x1].any() and m[y1 - 1, x0:x1].any() and m[y0:y1, x0].any() and m[y0:y1, x1 - 1].any()
assert boxes[0][1] == (12, 40, 62, 70) and boxes[1][1] == (52, 47, 100, 78)

# What each label loses:
# 1. Semantic: the two touching cars are one blob, so they cannot be counted from it.
_, n_blobs = ndimage.label(semantic == 3)
assert n_blobs == 1 and sum(cls == 3 for cls, _ in instances) == 2


def box_iou(a, b) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / (area(a) + area(b) - inter)


# 2. Boxes: they overlap although the objects do not, and a thin person fills little of its box.
assert not (masks[0] & masks[1]).any()                               # the masks share no pixel...
claim("IoU 0.08", box_iou(boxes[0][1], boxes[1][1]))                 # ...the boxes overlap
fill = [m.sum() / ((b[2] - b[0]) * (b[3] - b[1])) for (_, b), (_, m) in zip(boxes, instances)]
claim("47%", fill[2])                                                # the person fills 46.9% of its box
# 3. The panoptic map holds both: one (class, id) per pixel, and the semantic mask is its class part.
assert np.array_equal(panoptic // 1000, semantic)
assert len(np.unique(panoptic)) == len(STUFF) + len(instances)

# Cityscapes' *_instanceIds.png differ: stuff (and crowd groups) keep the plain class id, things are
# class * 1000 + i with i from 0. There, // 1000 turns every stuff pixel into 0.
cityscapes = semantic.copy()
for i, (cls, m) in enumerate([(c, m) for c, m in instances if c == 3]):
    cityscapes[m] = cls * 1000 + i                                   # cars: 3000, 3001
cityscapes[instances[2][1]] = 4000                                   # the person
assert set(np.unique(cityscapes // 1000)) == {0, 3, 4}               # sky and road are lost
assert np.array_equal(np.where(cityscapes < 1000, cityscapes, cityscapes // 1000), semantic)
# --8<-- [end:relations]


# --8<-- [start:pq]
def segments(pan: np.ndarray) -> dict[int, np.ndarray]:
    return {int(i): pan == i for i in np.unique(pan)}


def panoptic_quality(gt: np.ndarray, pred: np.ndarray) -> dict[int, tuple[float, float, float]]:
    """PQ, SQ, RQ per class (Kirillov et al., 2019). A match needs IoU > 0.5, which makes it unique."""
    g, p = segments(gt), segments(pred)
    out = {}
    for c in CLASSES:
        gs = {i: m for i, m in g.items() if i // 1000 == c}
        ps = {i: m for i, m in p.items() if i // 1000 == c}
        ious = []
        for gi, gm in gs.items():
            for pi, pm in ps.items():
                iou = (gm & pm).sum() / (gm | pm).sum()
                if iou > 0.5:
                    ious.append((gi, pi, iou))
        # IoU > 0.5 leaves at most one partner for every segment.
        assert len({gi for gi, _, _ in ious}) == len({pi for _, pi, _ in ious}) == len(ious)
        tp, fp, fn = len(ious), len(ps) - len(ious), len(gs) - len(ious)
        if tp + fp + fn == 0:
            continue
        sq = sum(i for *_, i in ious) / tp if tp else 0.0
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
        out[c] = (sq * rq, sq, rq)
    return out


def semantic_iou(gt: np.ndarray, pred: np.ndarray, c: int) -> float:
    return ((gt == c) & (pred == c)).sum() / ((gt == c) | (pred == c)).sum()


# A prediction that gets every pixel's class right but merges the two touching cars.
pred = panoptic.copy()
car_a, car_b = 3001, 3002
pred[pred == car_a] = car_b

assert all(semantic_iou(semantic, pred // 1000, c) == 1.0 for c in CLASSES)   # mIoU = 1.0
claim("mIoU of 1.0", np.mean([semantic_iou(semantic, pred // 1000, c) for c in CLASSES]))
pq = panoptic_quality(panoptic, pred)
area_a, area_b = (panoptic == car_a).sum(), (panoptic == car_b).sum()
assert (area_a, area_b) == (1140, 1308)
iou_merged = area_b / (area_a + area_b)               # the merged blob still matches car B (> 0.5)...
claim("IoU 0.534", iou_merged)
assert np.isclose(pq[3][1], iou_merged) and pq[3][2] == 1 / 1.5       # ...car A is a miss: RQ = 1/(1 + 0.5)
assert all(pq[c] == (1.0, 1.0, 1.0) for c in (1, 2, 4))
PQ = np.mean([v[0] for v in pq.values()])
claim("= 0.356", pq[3][0])
claim("PQ is 0.839", PQ)
# --8<-- [end:pq]

# --8<-- [start:ap]
def average_precision(dets, gts, t: float) -> float:
    """COCO-style AP of one class at IoU threshold t: greedy matching in score order, then precision
    made monotone and read at 101 recall points. dets: [(score, box)], gts: [box]."""
    matched, tp = set(), []
    for _, box in sorted(dets, key=lambda d: -d[0]):
        ious = [(box_iou(box, g), j) for j, g in enumerate(gts) if j not in matched]
        best = max(ious, default=(0.0, None))
        tp.append(best[0] >= t)
        if best[0] >= t:
            matched.add(best[1])                 # a second box on the same object is a false positive
    tp = np.array(tp, float)
    recall = np.cumsum(tp) / len(gts)
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]   # the best precision at this recall or more
    at = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([precision[i] if i < len(tp) else 0.0 for i in at]))


gt_boxes = {c: [b for cls, b in boxes if cls == c] for c in THINGS}
x0, y0, x1, y1 = boxes[1][1]
detections = {
    3: [(0.95, (x0 + 2, y0, x1 + 2, y1)),        # car B, 2 px off
        (0.90, (60, 80, 90, 95)),                # a false positive on the road
        (0.85, (10, 38, 60, 72)),                # car A, loosely boxed
        (0.60, (x0, y0 + 3, x1, y1 + 3))],       # car B again: a duplicate that NMS should have removed
    4: [(0.80, (105, 26, 115, 86))],             # the person, 1 px larger at the left and top
}
ap = {c: [average_precision(detections[c], gt_boxes[c], t) for t in np.linspace(0.5, 0.95, 10)]
      for c in THINGS}
claim("0.835", ap[3][0])                       # car AP50: recall 0.5 at precision 1, then 1.0 at 2/3
assert ap[4][0] == 1.0
claim("0.505", ap[3][7])                       # at IoU 0.85 the loose box on car A no longer counts
claim("0.917", np.mean([ap[c][0] for c in THINGS]))
claim("0.743", np.mean([np.mean(ap[c]) for c in THINGS]))   # AP@[.5:.95]; pycocotools gives 0.7427 and 0.9175 too
# --8<-- [end:ap]

print("AP per threshold:", {CLASSES[c]: np.round(v, 3).tolist() for c, v in ap.items()})
print("boxes:", [(CLASSES[c], b) for c, b in boxes])
print(f"car box IoU {box_iou(boxes[0][1], boxes[1][1]):.3f} (masks disjoint); person fills {fill[2]:.0%} of its box")
print(f"merged cars: mIoU 1.00, car PQ {pq[3][0]:.3f} (SQ {pq[3][1]:.3f} x RQ {pq[3][2]:.3f}), PQ {PQ:.3f}")

# Figure: the image and its four kinds of label.
palette = {1: (0.55, 0.75, 0.95), 2: (0.45, 0.45, 0.45), 3: (0.85, 0.2, 0.2), 4: (0.95, 0.75, 0.1)}
look = {0: (0.75, 0.15, 0.15), 1: (0.2, 0.3, 0.65), 2: (0.95, 0.75, 0.1)}   # how each object looks
img = np.zeros((H, W, 3))
for c in STUFF:
    img[semantic == c] = palette[c]
for k, (cls, m) in enumerate(instances):
    img[m] = look[k]
img = np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1)

inst_colors = [(0.1, 0.6, 0.9), (0.9, 0.4, 0.1), (0.3, 0.8, 0.3)]
inst_img = np.ones((H, W, 3)) * 0.15
pan_img = np.zeros((H, W, 3))
for c in STUFF:
    pan_img[semantic == c] = palette[c]
for (cls, m), col in zip(instances, inst_colors):
    inst_img[m] = col
    pan_img[m] = col

fig, axes = plt.subplots(1, 4, figsize=(9, 2.25))
axes[0].imshow(img)
for (cls, (x0, y0, x1, y1)), col in zip(boxes, inst_colors):
    axes[0].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=col, lw=1.5))
    axes[0].text(x1, y0 - 1.5, CLASSES[cls], color="k", fontsize=7, ha="right",
                 bbox=dict(fc=col, ec="none", pad=0.8, alpha=0.9))
axes[1].imshow(semantic, cmap=ListedColormap([palette[c] for c in (1, 2, 3, 4)]), vmin=1, vmax=4)
axes[2].imshow(inst_img)
axes[3].imshow(pan_img)
titles = ["detection: class + box", "semantic: class per pixel", "instance: mask per object",
          "panoptic: stuff + things"]
for ax, t in zip(axes, titles):
    ax.set_title(t, fontsize=8)
    ax.set_xticks([]); ax.set_yticks([])
handles = [plt.Rectangle((0, 0), 1, 1, fc=palette[c]) for c in CLASSES]
fig.legend(handles, [f"{CLASSES[c]} ({'stuff' if c in STUFF else 'thing'})" for c in CLASSES],
           loc="lower center", ncol=4, fontsize=8, frameon=False, title="semantic classes",
           title_fontsize=8, bbox_to_anchor=(0.5, 0.0))
fig.subplots_adjust(bottom=0.12, top=0.92, wspace=0.08)
save(fig, "cv-deep-learning", "segmentation-tasks")
