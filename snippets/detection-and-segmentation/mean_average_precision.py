"""mAP from scratch: matching, the precision-recall curve, VOC 11-point, VOC all-point and COCO 101-point
interpolation, COCO's AP@[.5:.95] and area ranges, all checked against pycocotools' COCOeval."""
from __future__ import annotations

import contextlib
import io

import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:match]
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) against every box in b (M, 4), boxes as x1, y1, x2, y2."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def match_image(det_boxes, det_scores, gt_boxes, t, area_rng=(0, np.inf), max_dets=100):
    """COCO's matching for one image and one class at IoU threshold t.

    Detections are taken best score first (at most max_dets). Each takes the unmatched ground truth
    with the highest IoU >= t; a second detection of a matched object is a false positive. Ground
    truth outside the area range is 'ignored': a detection matched to it counts as neither TP nor FP,
    and so does an unmatched detection whose own area is outside the range.
    Returns (scores, is_tp, is_ignored) for the kept detections, and the number of counted objects.
    """
    order = np.argsort(-det_scores, kind="mergesort")[:max_dets]
    det_boxes, det_scores = det_boxes[order], det_scores[order]
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    gt_ignore = ~((area(gt_boxes) >= area_rng[0]) & (area(gt_boxes) <= area_rng[1]))
    g_order = np.argsort(gt_ignore, kind="mergesort")              # counted objects first
    gt_boxes, gt_ignore = gt_boxes[g_order], gt_ignore[g_order]
    ious = iou_matrix(det_boxes, gt_boxes) if len(gt_boxes) and len(det_boxes) else np.zeros((len(det_boxes), 0))
    taken = np.zeros(len(gt_boxes), bool)
    is_tp = np.zeros(len(det_boxes), bool)
    is_ignored = np.zeros(len(det_boxes), bool)
    for d in range(len(det_boxes)):
        best, best_iou = -1, min(t, 1 - 1e-10)
        for g in range(len(gt_boxes)):
            if taken[g]:
                continue
            if best > -1 and not gt_ignore[best] and gt_ignore[g]:
                break                                                # a counted match beats an ignored one
            if ious[d, g] >= best_iou:
                best, best_iou = g, ious[d, g]
        if best > -1:
            taken[best] = True
            is_tp[d], is_ignored[d] = True, gt_ignore[best]
        else:
            is_ignored[d] = not (area_rng[0] <= area(det_boxes[d:d + 1])[0] <= area_rng[1])
    return det_scores, is_tp, is_ignored, int((~gt_ignore).sum())


def pr_curve(per_image: list) -> tuple[np.ndarray, np.ndarray]:
    """Pool the matched detections of all images, rank them by score, and accumulate TP and FP."""
    scores = np.concatenate([m[0] for m in per_image])
    tp = np.concatenate([m[1] for m in per_image])
    ignored = np.concatenate([m[2] for m in per_image])
    n_objects = sum(m[3] for m in per_image)
    order = np.argsort(-scores, kind="mergesort")
    tp, ignored = tp[order], ignored[order]
    tp_cum = np.cumsum(tp & ~ignored)
    fp_cum = np.cumsum(~tp & ~ignored)
    return tp_cum / n_objects, tp_cum / np.maximum(tp_cum + fp_cum, np.spacing(1))
# --8<-- [end:match]


# --8<-- [start:example]
def box(x: float, y: float = 0.0, size: float = 40.0) -> list[float]:
    return [x, y, x + size, y + size]


# Two images, five objects (A, B, C in image 1; D, E in image 2), all 40 x 40 px.
gts = {1: np.array([box(0), box(100), box(200)]), 2: np.array([box(0), box(100)])}
# (image, score, box). A box shifted sideways by s px has IoU (40 - s) / (40 + s) with its object.
dets = [(1, 0.95, box(0)),          # A, exact: IoU 1.0
        (1, 0.90, box(104)),        # B, 4 px off: IoU 0.818
        (2, 0.85, box(300, 300)),   # background
        (1, 0.80, box(8)),          # A again, 8 px off: a duplicate
        (1, 0.70, box(212)),        # C, 12 px off: IoU 0.538
        (1, 0.60, box(300, 300)),   # background
        (2, 0.50, box(8)),          # D, 8 px off: IoU 0.667
        (2, 0.40, box(300, 300))]   # background; E is never found


def evaluate(dets, gts, t, **kw):
    per_image = []
    for img, g in gts.items():
        mine = [(s, b) for i, s, b in dets if i == img]
        per_image.append(match_image(np.array([b for _, b in mine]).reshape(-1, 4),
                                     np.array([s for s, _ in mine]), g, t, **kw))
    return pr_curve(per_image)


iou_to = lambda b, g: iou_matrix(np.array([b]), np.array([g]))[0, 0]
claim("0.818", iou_to(box(104), box(100))), claim("0.538", iou_to(box(212), box(200)))
claim("0.667", iou_to(box(8), box(0)))
recall, precision = evaluate(dets, gts, t=0.5)
assert np.allclose(recall, [0.2, 0.4, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8])      # the duplicate adds nothing
assert np.allclose(precision, [1, 1, 2 / 3, 1 / 2, 3 / 5, 1 / 2, 4 / 7, 1 / 2])
# --8<-- [end:example]


# --8<-- [start:interpolation]
def envelope(precision: np.ndarray) -> np.ndarray:
    """Interpolated precision: at each rank, the best precision reached at this recall or beyond."""
    return np.maximum.accumulate(precision[::-1])[::-1]


def ap_voc11(recall, precision) -> float:
    """PASCAL VOC 2007: mean of the interpolated precision at recall 0, 0.1, ..., 1."""
    return float(np.mean([precision[recall >= r].max(initial=0) for r in np.arange(11) / 10]))


def ap_voc_all(recall, precision) -> float:
    """PASCAL VOC 2010+: the exact area under the interpolated (monotone) precision-recall curve."""
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope(precision)))


COCO_RECALLS = np.linspace(0.0, 1.0, 101)        # pycocotools builds the same 101 points


def ap_coco101(recall, precision) -> float:
    """COCO: interpolated precision read at 101 recall points, 0 beyond the highest recall reached."""
    at = np.searchsorted(recall, COCO_RECALLS, side="left")
    p = np.concatenate([envelope(precision), [0.0]])
    return float(p[at].mean())


# By hand: the envelope is 1 up to recall 0.4, 3/5 up to 0.6, 4/7 up to 0.8, then 0.
assert np.isclose(ap_voc_all(recall, precision), 0.2 * 1 + 0.2 * 1 + 0.2 * 3 / 5 + 0.2 * 4 / 7)
assert np.isclose(ap_voc11(recall, precision), (5 * 1 + 2 * 3 / 5 + 2 * 4 / 7) / 11)
assert np.isclose(ap_coco101(recall, precision), (41 * 1 + 20 * 3 / 5 + 20 * 4 / 7) / 101)
claim("0.634", ap_voc_all(recall, precision))
claim("0.668", ap_voc11(recall, precision))
claim("0.638", ap_coco101(recall, precision))

# The 11-point flaw: a detector that finds 1 object of 100, with its best score, gets 1/11 for free
# from the point at recall 0. All-point and 101-point interpolation give it (nearly) what it earned.
one_hit_recall, one_hit_precision = np.array([0.01]), np.array([1.0])
claim("0.091", ap_voc11(one_hit_recall, one_hit_precision))
claim("0.010", ap_voc_all(one_hit_recall, one_hit_precision))
claim("0.020", ap_coco101(one_hit_recall, one_hit_precision))
# --8<-- [end:interpolation]


# --8<-- [start:coco]
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
ap_per_t = np.array([ap_coco101(*evaluate(dets, gts, t)) for t in IOU_THRESHOLDS])
# C (IoU 0.538) fails from 0.55, D (0.667) from 0.70, B (0.818) from 0.85; only the exact A is left.
assert np.allclose(ap_per_t[1:4], (41 + 20 * 3 / 7) / 101)
assert np.allclose(ap_per_t[4:7], 41 / 101) and np.allclose(ap_per_t[7:], 21 / 101)
claim("0.491", ap_per_t[1]), claim("0.208", ap_per_t[7])
claim("0.406", ap_per_t[5])                                   # AP75
claim("0.395", ap_per_t.mean())                               # AP@[.5:.95]
# --8<-- [end:coco]


# --8<-- [start:pycocotools]
def to_coco(gts: dict, dets: list, categories=(1,)) -> tuple[COCO, COCO]:
    """Ground truth and detections as pycocotools objects (boxes as x, y, w, h; ids from 1)."""
    images = [{"id": int(i)} for i in gts]
    anns = [{"id": k + 1, "image_id": int(i), "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1],
             "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            for k, (i, c, (x1, y1, x2, y2)) in enumerate(
                (i, c, b) for i, per_cat in gts.items() for c, boxes in per_cat.items() for b in boxes)]
    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in categories]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([{"image_id": int(i), "category_id": int(c), "score": float(s),
                                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]} for i, c, s, b in dets])
    return coco_gt, coco_dt


def cocoeval_stats(coco_gt: COCO, coco_dt: COCO) -> np.ndarray:
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats            # AP, AP50, AP75, AP_S, AP_M, AP_L, then six average recalls


AREAS = {"all": (0, 1e10), "small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e10)}


def our_stats(gts: dict, dets: list, categories) -> list[float]:
    """AP, AP50, AP75, AP_S, AP_M, AP_L: per class, then the mean over the classes that have objects."""
    out = []
    for name, thresholds in [("all", IOU_THRESHOLDS), ("all", [0.5]), ("all", [0.75]),
                             ("small", IOU_THRESHOLDS), ("medium", IOU_THRESHOLDS), ("large", IOU_THRESHOLDS)]:
        per_class = []
        for c in categories:
            gts_c = {i: per_cat.get(c, np.zeros((0, 4))) for i, per_cat in gts.items()}
            dets_c = [(i, s, b) for i, cc, s, b in dets if cc == c]
            per_t = []
            for t in thresholds:
                kept = [match_image(np.array([b for ii, _, b in dets_c if ii == i]).reshape(-1, 4),
                                    np.array([s for ii, s, _ in dets_c if ii == i]), g, t, AREAS[name])
                        for i, g in gts_c.items()]
                if sum(m[3] for m in kept) == 0:
                    break                                          # no object of this class in range
                per_t.append(ap_coco101(*pr_curve(kept)))
            if per_t:
                per_class.append(np.mean(per_t))
        out.append(float(np.mean(per_class)) if per_class else -1.0)
    return out


# 1. The hand example, through pycocotools.
hand_gt, hand_dt = to_coco({i: {1: g} for i, g in gts.items()}, [(i, 1, s, b) for i, s, b in dets])
stats = cocoeval_stats(hand_gt, hand_dt)
assert np.isclose(stats[0], ap_per_t.mean(), atol=1e-12) and np.isclose(stats[1], ap_per_t[0], atol=1e-12)
assert np.isclose(stats[2], ap_per_t[5], atol=1e-12)

# 2. A random dataset: 30 images, 3 classes, objects of every size, jittered true positives,
#    duplicates and background false positives with random scores.
categories = (1, 2, 3)
rand_gts, rand_dets = {}, []
for img in range(1, 31):
    rand_gts[img] = {}
    for c in categories:
        n = rng.integers(0, 5)
        xy = rng.uniform(0, 500, (n, 2))
        wh = np.exp(rng.uniform(np.log(8), np.log(200), (n, 2)))
        boxes = np.c_[xy, xy + wh]
        if n:
            rand_gts[img][c] = boxes
        for b in boxes:
            for _ in range(rng.integers(0, 3)):              # 0, 1 or 2 detections per object
                jitter = rng.normal(0, 0.12, 4) * np.tile(b[2:] - b[:2], 2)
                rand_dets.append((img, c, rng.uniform(), (b + jitter).tolist()))
        for _ in range(rng.integers(0, 4)):                   # background false positives
            xy0 = rng.uniform(0, 500, 2)
            rand_dets.append((img, c, rng.uniform(0, 0.7), np.r_[xy0, xy0 + rng.uniform(10, 150, 2)].tolist()))
rand_dets = [(i, c, s, np.r_[np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])])
             for i, c, s, b in rand_dets]

reference = cocoeval_stats(*to_coco(rand_gts, rand_dets, categories))[:6]
ours = our_stats(rand_gts, rand_dets, categories)
assert np.allclose(ours, reference, atol=1e-12), (ours, reference)
# --8<-- [end:pycocotools]
print("hand example AP per IoU threshold:", np.round(ap_per_t, 4))
print("random dataset, ours vs pycocotools:", np.round(ours, 4), np.round(reference, 4))


# --8<-- [start:traps]
# 1. A confidence threshold before evaluation can only lower AP: it cuts the tail of the curve.
kept = [d for d in dets if d[1] >= 0.55]
claim("0.525", ap_coco101(*evaluate(kept, gts, 0.5)))          # from 0.638
# Low-score false positives append ranks after the last true positive: AP does not move at all.
with_noise = dets + [(2, 0.01, box(400 + 50 * k, 300)) for k in range(20)]
assert ap_coco101(*evaluate(with_noise, gts, 0.5)) == ap_coco101(recall, precision)
# A low-score true positive raises it (E found last, after 28 detections: precision 5/29 at recall 1).
with_e = with_noise + [(2, 0.005, box(100))]
assert ap_coco101(*evaluate(with_e, gts, 0.5)) > ap_coco101(recall, precision)




# 2. Not every "mAP" is pycocotools'. Ultralytics' compute_ap adds the points (0, 1) and (1, 0), and
#    integrates the linear interpolation of the envelope with the trapezoidal rule.
def ap_ultralytics_style(recall, precision) -> float:
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = envelope(np.concatenate([[1.0], precision, [0.0]]))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


claim("0.682", ap_ultralytics_style(recall, precision))       # pycocotools: 0.638


# 3. pycocotools caps detections at 100 per image *and class*, not 100 per image across classes.
def grid(n: int, offset: float = 0.0) -> np.ndarray:
    return np.array([box(50 * (k % 20), 50 * (k // 20) + offset, 30) for k in range(n)])


one_class = to_coco({1: {1: grid(150)}}, [(1, 1, 1 - k / 1000, b) for k, b in enumerate(grid(150))])
claim("0.667", cocoeval_stats(*one_class)[8])                 # AR@100: only the top 100 of 150 count
two_classes = to_coco({1: {1: grid(100), 2: grid(100, 1000)}},
                      [(1, c, 1 - k / 1000, b) for c, g in [(1, grid(100)), (2, grid(100, 1000))]
                       for k, b in enumerate(g)], categories=(1, 2))
assert cocoeval_stats(*two_classes)[8] == 1.0                  # 200 detections in one image, all counted

# 4. An annotation id of 0 means "unmatched" inside COCOeval: the detection that finds it is a false positive.
zero_gt, zero_dt = to_coco({i: {1: g} for i, g in gts.items()}, [(i, 1, s, b) for i, s, b in dets])
for ann in zero_gt.dataset["annotations"]:
    ann["id"] -= 1                                             # ids 0..4 instead of 1..5
with contextlib.redirect_stdout(io.StringIO()):
    zero_gt.createIndex()
assert cocoeval_stats(zero_gt, zero_dt)[1] < stats[1] - 0.3   # AP50 collapses; the detector did not change
claim("0.274", cocoeval_stats(zero_gt, zero_dt)[1])           # from 0.638


# 5. PASCAL VOC's devkit matches differently: a detection goes to the object of highest IoU among *all*
#    objects, and is a false positive if that one is taken, even when a free object overlaps it enough.
def voc_is_tp(det_boxes, gt_boxes, t=0.5):
    ious, taken, out = iou_matrix(det_boxes, gt_boxes), np.zeros(len(gt_boxes), bool), []
    for d in range(len(det_boxes)):                              # already sorted by score
        g = int(ious[d].argmax())
        out.append(bool(ious[d, g] >= t and not taken[g]))
        taken[g] |= out[-1]
    return out


# objects A, B; detections on A, then between
pair, second = np.array([box(0), box(12)]), np.array([box(0), box(4)])
assert np.allclose(iou_matrix(second[1:], pair), [[0.818, 0.667]], atol=1e-3)
assert match_image(second, np.array([0.9, 0.8]), pair, 0.5)[1].tolist() == [True, True]   # COCO: B is free, TP
assert voc_is_tp(second, pair) == [True, False]                                          # VOC: A is taken, FP


# 6. The recall points are np.linspace values: 0.70 is stored as 0.7000000000000001, so a recall of
#    exactly 7/10 misses it. 7 of 10 objects found, all at precision 1: pycocotools gives 70/101, not 71/101.
seven = to_coco({1: {1: grid(10)}}, [(1, 1, 1 - k / 100, b) for k, b in enumerate(grid(7))])
assert COCO_RECALLS[70] > 0.7 and np.isclose(cocoeval_stats(*seven)[1], 70 / 101)
# --8<-- [end:traps]

# Figure: the precision-recall curve of the example with its three interpolations, and AP per IoU threshold.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [1.15, 1]})
env = envelope(precision)
r_step = np.concatenate([[0], recall, [recall[-1]]])
p_step = np.concatenate([[env[0]], env, [0]])
ax1.fill_between(r_step, p_step, step="post", alpha=0.15, color="tab:blue", label="all-point area (VOC 2010+)")
ax1.step(r_step, p_step, where="post", color="tab:blue", lw=1.8, label="interpolated precision")
ax1.plot(recall, precision, "o", color="tab:red", ms=5, label="raw precision at each rank")
r11 = np.arange(11) / 10
ax1.plot(r11, [precision[recall >= r].max(initial=0) for r in r11], "^", color="tab:green", ms=6,
         label="11-point samples (VOC 2007)")
ax1.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.02), ylim=(0, 1.08),
        title=f"IoU 0.5: all-point {ap_voc_all(recall, precision):.3f}, 11-point {ap_voc11(recall, precision):.3f}, "
              f"101-point {ap_coco101(recall, precision):.3f}")
ax1.title.set_fontsize(9)
ax1.legend(fontsize=7, loc="lower left")
ax2.bar([f"{t:.2f}" for t in IOU_THRESHOLDS], ap_per_t, color="tab:blue", alpha=0.8)
ax2.axhline(ap_per_t.mean(), color="tab:red", ls="--", lw=1.2, label=f"mean = AP@[.5:.95] = {ap_per_t.mean():.3f}")
ax2.set(xlabel="IoU threshold", ylabel="AP (101-point)", ylim=(0, 0.75),
        title="COCO: the same detections at ten IoU thresholds")
ax2.title.set_fontsize(9)
ax2.tick_params(axis="x", labelsize=7, rotation=45)
ax2.legend(fontsize=8)
save(fig, "detection-and-segmentation", "map-pr-curve")
print(f"AP50 with ids from 0: {cocoeval_stats(zero_gt, zero_dt)[1]:.4f} (from {stats[1]:.4f}); "
      f"threshold 0.55: {ap_coco101(*evaluate(kept, gts, 0.5)):.4f}; "
      f"with E last: {ap_coco101(*evaluate(with_e, gts, 0.5)):.4f}")
