"""Retail shelf detection: camera sizing, the labelling budget, and why the NMS threshold matters on
densely packed shelves (AP@0.5 measured on synthetic shelf boxes)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from _figures import save

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:camera]
def px_per_mm(sensor_px: int, hfov_deg: float, distance_mm: float) -> float:
    """Horizontal pixels per millimetre on a shelf face seen head-on by a pinhole camera."""
    covered_mm = 2 * distance_mm * math.tan(math.radians(hfov_deg) / 2)
    return sensor_px / covered_mm


density = px_per_mm(3840, 90, 1500)            # a 4K camera across the aisle, 1.5 m from the shelf
claim("1.28 px/mm", density)
claim("77 px", 60 * density)                   # a 60 mm wide facing
claim("38 px", 60 * px_per_mm(1920, 90, 1500)) # at 1080p: too few to read a label

covered_m = 2 * 1.5 * math.tan(math.radians(45))
cameras_per_side = math.ceil(20 / (covered_m * 0.9))   # a 20 m aisle, 10% overlap between views
claim("8 fixed", cameras_per_side)
# --8<-- [end:camera]


# --8<-- [start:throughput]
def tiles(w: int, h: int, tile: int = 640, overlap: int = 128) -> int:
    """Overlapping tiles a detector trained on 640 px crops needs to cover a w x h still."""
    stride = tile - overlap
    return (math.ceil((w - tile) / stride) + 1) * (math.ceil((h - tile) / stride) + 1)


CAMERAS = 10 * 2 * 8                       # assumed store: 10 aisles, both sides, 8 cameras each
stills_per_day = CAMERAS * 14 * 60 // 10   # shelves change slowly: one still per 10 min, 14 h open
claim("13,440", stills_per_day)
claim("32 tiles", tiles(3840, 2160))
gpu_minutes = stills_per_day * tiles(3840, 2160) * 5 / 1000 / 60   # assumed 5 ms per tile, batched
claim("about 36 GPU-minutes", gpu_minutes)  # per day: one small edge GPU per store is plenty
upload_gb = stills_per_day * 2e6 / 1e9     # if every still (assumed 2 MB as JPEG) went to the cloud
claim("about 27 GB", upload_gb)
# --8<-- [end:throughput]


# --8<-- [start:labelling]
BOXES_PER_IMAGE = 147          # SKU-110K's average (Goldman et al., 2019)
SECONDS_PER_BOX = 7.0          # extreme clicking (Papadopoulos et al., 2017); drawing boxes took ~35 s
images = 2_000
hours = images * BOXES_PER_IMAGE * SECONDS_PER_BOX / 3600
claim("572", hours)
# Model-assisted labelling: annotators fix the boxes a first model got wrong, and still have to
# look at every other pre-label to accept it.
corrected_share = 0.2          # assumed: 20% of pre-labels need a fix
fix_only = hours * corrected_share
claim("114 hours", fix_only)   # the optimistic count: checking the correct 80% costs nothing
SECONDS_TO_VERIFY = 2.0        # assumed: a yes/no check of one box takes seconds, not zero
assisted = images * BOXES_PER_IMAGE * ((1 - corrected_share) * SECONDS_TO_VERIFY
                                       + corrected_share * SECONDS_PER_BOX) / 3600
claim("245 hours", assisted)
claim("2.1×", assisted / fix_only)
# --8<-- [end:labelling]


# --8<-- [start:shelf]
VIEWS = {  # how much of a box width neighbours overlap in the image (negative: a gap)
    "head-on (this design)": (-0.10, 0.05),   # camera across the aisle: facings side by side
    "along the aisle": (0.10, 0.60),          # an oblique view (robot, end-of-aisle camera)
}


def make_shelf(rng: np.random.Generator, overlap: tuple[float, float], rows: int = 5,
               width: int = 1600) -> np.ndarray:
    """Ground-truth boxes (x1, y1, x2, y2) of products packed side by side on shelf rows."""
    boxes = []
    for r in range(rows):
        y1 = 40 + r * 180
        x = 10.0
        while x < width - 100:
            w, h = rng.uniform(50, 90), rng.uniform(110, 160)
            boxes.append((x, y1 + 160 - h, x + w, y1 + 160))
            x += w * (1 - rng.uniform(*overlap))
    return np.array(boxes)


def raw_detections(gt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """What a dense detector emits before NMS: 3-6 jittered candidates per product (the best
    scored highest), 3% of products missed, plus scattered false positives."""
    boxes, scores = [], []
    for b in gt:
        if rng.random() < 0.03:
            continue
        size = np.array([b[2] - b[0], b[3] - b[1]] * 2)
        n = rng.integers(3, 7)
        for j in range(n):
            boxes.append(b + rng.normal(0, 0.04 + 0.03 * j, 4) * size)
            scores.append(rng.uniform(0.6, 0.95) * (0.93 ** j))
    for _ in range(len(gt) // 10):
        x, y = rng.uniform(0, 1500), rng.uniform(0, 900)
        boxes.append((x, y, x + rng.uniform(40, 90), y + rng.uniform(80, 160)))
        scores.append(rng.uniform(0.05, 0.6))
    return np.array(boxes), np.array(scores)
# --8<-- [end:shelf]


# --8<-- [start:nms-ap]
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> np.ndarray:
    """Greedy non-maximum suppression: keep the best box, drop those overlapping it above thr."""
    order, keep = np.argsort(-scores), []
    ious = iou_matrix(boxes, boxes)
    alive = np.ones(len(boxes), bool)
    for i in order:
        if alive[i]:
            keep.append(i)
            alive &= ious[i] <= thr
    return np.array(keep)


def average_precision(gt_list, det_list, iou_thr: float = 0.5) -> float:
    """All-point interpolated AP: detections sorted by score over all images, each matched to the
    best-overlapping unmatched ground truth at IoU >= iou_thr."""
    records, n_gt = [], sum(len(g) for g in gt_list)
    for gt, (boxes, scores) in zip(gt_list, det_list):
        taken = np.zeros(len(gt), bool)
        ious = iou_matrix(boxes, gt)
        for i in np.argsort(-scores):
            cand = np.where(~taken & (ious[i] >= iou_thr))[0]
            hit = len(cand) > 0
            if hit:
                taken[cand[np.argmax(ious[i, cand])]] = True
            records.append((scores[i], hit))
    records.sort(key=lambda r: -r[0])
    tp = np.cumsum([h for _, h in records])
    precision = tp / np.arange(1, len(records) + 1)
    recall = tp / n_gt
    envelope = np.maximum.accumulate(precision[::-1])[::-1]        # precision made monotone
    return float(np.sum(np.diff(np.r_[0, recall]) * envelope))


THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
ap, neigh, shelves = {}, {}, {}
for view, overlap in VIEWS.items():
    rng = np.random.default_rng(0)
    shelves[view] = [make_shelf(rng, overlap) for _ in range(4)]
    raw = [raw_detections(gt, rng) for gt in shelves[view]]
    neigh[view] = np.concatenate([np.diag(iou_matrix(g[:-1], g[1:])) for g in shelves[view]])
    ap[view] = {thr: average_precision(shelves[view], [(b[k], s[k]) for b, s in raw
                                                         for k in [nms(b, s, thr)]])
                for thr in THRESHOLDS}
gt = shelves["along the aisle"]
assert average_precision(gt, [(g, np.ones(len(g))) for g in gt]) == 1.0             # sanity

head_on, oblique = ap["head-on (this design)"], ap["along the aisle"]
# Head-on, neighbours barely overlap: any threshold up to the 0.5 default works.
claim("under 0.02", np.quantile(neigh["head-on (this design)"], 0.9))   # 90th pct neighbour IoU
claim("0.96", min(head_on[t] for t in (0.2, 0.3, 0.4, 0.5)))
claim("0.96", max(head_on[t] for t in (0.2, 0.3, 0.4, 0.5)))
# Along the aisle, neighbours overlap: a tight threshold deletes real products.
claim("0.18", np.median(neigh["along the aisle"])), claim("0.35", np.quantile(neigh["along the aisle"], 0.9))
claim("0.965", oblique[0.5]), claim("0.899", oblique[0.3])
assert max(oblique, key=oblique.get) == 0.5
# Too loose a threshold leaves duplicates, which count as false positives, in both geometries.
claim("0.906", oblique[0.7]), claim("0.89", head_on[0.7])
# --8<-- [end:nms-ap]

print(f"{density:.2f} px/mm, 60 mm facing = {60 * density:.0f} px, {cameras_per_side} cameras per aisle side")
print(f"{stills_per_day} stills/day x {tiles(3840, 2160)} tiles = {gpu_minutes:.0f} GPU-min/day")
print(f"labelling: {hours:.0f} h from scratch, {hours * corrected_share:.0f} h correcting pre-labels")
print(f"labelling with verification: {assisted:.0f} h")
for view in VIEWS:
    print(f"{view}: neighbour IoU median {np.median(neigh[view]):.2f}, 90th pct "
          f"{np.quantile(neigh[view], 0.9):.3f}; AP@0.5 by NMS threshold",
          {k: round(v, 3) for k, v in ap[view].items()})

fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2), gridspec_kw={"width_ratios": [1.4, 1]})
for b in gt[0][(gt[0][:, 0] < 760) & (gt[0][:, 1] < 400)]:
    a1.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="tab:green", lw=1))
a1.set(xlim=(0, 800), ylim=(390, 40), title="Shelf rows seen along the aisle (ground truth)",
       xticks=[], yticks=[])
a1.set_aspect("equal")
for (view, curve), style in zip(ap.items(), ["o-", "s--"]):
    a2.plot(list(curve), list(curve.values()), style, label=view)
a2.axvline(0.5, color="0.6", lw=1)
a2.text(0.51, 0.75, "torchvision,\nDetectron2\ndefault", fontsize=7, color="0.4")
a2.set(xlabel="NMS IoU threshold", ylabel="AP@0.5", title="The NMS threshold must be tuned")
a2.legend(fontsize=7, loc="lower left")
fig.tight_layout()
save(fig, "case-studies", "retail-nms-threshold")
