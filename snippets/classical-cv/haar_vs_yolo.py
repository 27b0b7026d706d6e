"""Integral images and Haar features by hand, OpenCV's face cascade, and a one-stage detector head decoded."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from skimage import data

from vault.claims import claim

rng = np.random.default_rng(0)

# --8<-- [start:integral]
def integral_image(img: np.ndarray) -> np.ndarray:
    """ii[y, x] = sum of img[:y, :x]; one extra row and column of zeros."""
    ii = np.zeros((img.shape[0] + 1, img.shape[1] + 1), np.int64)
    ii[1:, 1:] = img.astype(np.int64).cumsum(0).cumsum(1)
    return ii


def box_sum(ii: np.ndarray, x: int, y: int, w: int, h: int) -> int:
    """Sum over img[y:y+h, x:x+w] with four look-ups, whatever the box size."""
    return int(ii[y + h, x + w] - ii[y, x + w] - ii[y + h, x] + ii[y, x])


gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)          # 512x512
ii = integral_image(gray)
assert np.array_equal(ii, cv2.integral(gray))                       # same as OpenCV
for _ in range(200):
    x, y = rng.integers(0, 500, 2)
    w, h = rng.integers(1, 512 - x), rng.integers(1, 512 - y)
    assert box_sum(ii, x, y, w, h) == int(gray[y:y + h, x:x + w].astype(np.int64).sum())
# --8<-- [end:integral]

# --8<-- [start:haar]
def haar_two_rect(ii: np.ndarray, x: int, y: int, w: int, h: int) -> int:
    """Left half minus right half: responds to vertical edges. 6 distinct look-ups in practice."""
    half = w // 2
    return box_sum(ii, x, y, half, h) - box_sum(ii, x + half, y, half, h)


def haar_three_rect(ii: np.ndarray, x: int, y: int, w: int, h: int) -> int:
    """Outer thirds minus the middle third: responds to a vertical line (e.g. the bridge of a nose)."""
    t = w // 3
    return box_sum(ii, x, y, t, h) - box_sum(ii, x + t, y, t, h) + box_sum(ii, x + 2 * t, y, t, h)


patch = gray[100:124, 200:224].astype(np.int64)
assert haar_two_rect(ii, 200, 100, 24, 24) == patch[:, :12].sum() - patch[:, 12:].sum()
assert haar_three_rect(ii, 200, 100, 24, 24) == patch[:, :8].sum() - patch[:, 8:16].sum() + patch[:, 16:].sum()


def count_haar_features(size: int = 24) -> int:
    """Every position and scale of the five Viola-Jones feature shapes in a size x size window."""
    n = 0
    for bw, bh in [(2, 1), (1, 2), (3, 1), (1, 3), (2, 2)]:
        for w in range(bw, size + 1, bw):
            for h in range(bh, size + 1, bh):
                n += (size - w + 1) * (size - h + 1)
    return n


claim("162,336", count_haar_features())               # far more than 576 pixels: AdaBoost picks a few

# Lighting: each window is normalised by its own standard deviation, from a second integral image
# of I^2, so the variance of any window also costs a few look-ups.
sums, squares = cv2.integral2(gray)
x, y, n = 200, 100, 24 * 24
mean = box_sum(sums, x, y, 24, 24) / n
var = (squares[y + 24, x + 24] - squares[y, x + 24] - squares[y + 24, x] + squares[y, x]) / n - mean**2
assert np.isclose(np.sqrt(var), gray[y:y + 24, x:x + 24].std())
# --8<-- [end:haar]

# --8<-- [start:cascade]
path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
stages = ET.parse(path).getroot().find("cascade/stages")
weak_per_stage = [len(s.find("weakClassifiers")) for s in stages]
claim("25 stages", len(stages)), claim("2,913 weak classifiers", sum(weak_per_stage))
claim("uses 9", weak_per_stage[0]), claim("its last 200", weak_per_stage[-1])   # cheap first, expensive last

detector = cv2.CascadeClassifier(path)
faces = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
face_by_eye = np.array([180, 65, 90, 95])               # x, y, w, h: where the face is, labelled by hand
n_scales = int(np.log(512 / 24) / np.log(1.1)) + 1       # window sizes 24 * 1.1^k px up to 512 px
claim("33 window sizes", n_scales)
# Grouping: a cluster of raw hits survives only with MORE than minNeighbors members.
assert len(cv2.groupRectangles([[10, 10, 50, 50]] * 5, 5, 0.2)[0]) == 0
assert len(cv2.groupRectangles([[10, 10, 50, 50]] * 6, 5, 0.2)[0]) == 1


def iou_xywh(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


assert len(faces) == 1
claim("IoU 0.93", iou_xywh(faces[0], face_by_eye))
# Trained on upright frontal faces only: turn the image by 90 degrees and the face is gone.
for k in (1, 3):
    assert len(detector.detectMultiScale(np.ascontiguousarray(np.rot90(gray, k)), 1.1, 5, minSize=(40, 40))) == 0

# Why a cascade is fast and accurate: rates multiply over K stages.
d, f, K = 0.99, 0.30, 10
claim("$D = 0.90$", d**K), claim("5.9 \\times 10^{-6}", f**K)   # 90% detection, 6e-6 false positives
# --8<-- [end:cascade]


# --8<-- [start:yolo-layout]
S, B, C = 7, 2, 20                                      # YOLOv1 on PASCAL VOC
assert (S, S, B * 5 + C) == (7, 7, 30)                  # a 7x7x30 output tensor ...
claim("98 boxes", S * S * B)                             # ... with 98 boxes


def ssd300_default_boxes() -> int:
    """SSD300: six feature maps with 4 or 6 default boxes per cell."""
    return sum(n * n * k for n, k in [(38, 4), (19, 6), (10, 6), (5, 6), (3, 4), (1, 4)])


claim("8,732 boxes", ssd300_default_boxes())
claim("10,647 boxes", sum((416 // s) ** 2 * 3 for s in (32, 16, 8)))   # YOLOv3 at 416x416: 3 anchors, 3 scales
# --8<-- [end:yolo-layout]


# --8<-- [start:decode]
def encode_yolo_v1(boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Ground-truth boxes (cx, cy, w, h in [0, 1]) -> the S x S x (5B + C) target layout."""
    out = np.zeros((S, S, 5 * B + C))
    for (cx, cy, w, h), c in zip(boxes, labels):
        i, j = int(cy * S), int(cx * S)                           # the cell that holds the centre
        out[i, j, 0:5] = [cx * S - j, cy * S - i, np.sqrt(w), np.sqrt(h), 1.0]   # offsets, sqrt size
        out[i, j, 5 * B + c] = 1.0
    return out


def decode_yolo_v1(out: np.ndarray, score_thresh: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tensor -> (x1, y1, x2, y2) boxes, scores = objectness x class probability, class ids."""
    i, j = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    boxes, scores, classes = [], [], []
    cls_prob = out[..., 5 * B:]                                   # one class distribution per cell
    for b in range(B):
        tx, ty, sw, sh, conf = np.moveaxis(out[..., 5 * b:5 * b + 5], -1, 0)
        cx, cy, w, h = (j + tx) / S, (i + ty) / S, sw**2, sh**2
        score = conf[..., None] * cls_prob                        # (S, S, C)
        best = score.argmax(-1)
        boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).reshape(-1, 4))
        scores.append(score.max(-1).ravel())
        classes.append(best.ravel())
    boxes, scores, classes = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
    keep = scores > score_thresh
    return boxes[keep], scores[keep], classes[keep]


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box against many."""
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])
    return inter / (area(a) + area(b) - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float = 0.5) -> list[int]:
    """Greedy non-maximum suppression: keep the best box, drop boxes overlapping it, repeat."""
    order = list(np.argsort(-scores))
    keep = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        order = [k for k in order if iou_xyxy(boxes[best], boxes[k:k + 1])[0] <= iou_thresh]
    return keep


gt_boxes = np.array([[0.30, 0.40, 0.25, 0.50], [0.72, 0.65, 0.30, 0.20], [0.55, 0.20, 0.12, 0.12]])
gt_labels = np.array([14, 6, 14])                        # person, car, person (VOC ids)
out = encode_yolo_v1(gt_boxes, gt_labels)               # what a perfect network would output...
out[..., 4] *= 0.9                                       # ...made a little less certain
# The second predictor of each responsible cell proposes a slightly shifted duplicate, less confident.
for (cx, cy, w, h) in gt_boxes:
    i, j = int(cy * S), int(cx * S)
    out[i, j, 5:10] = [cx * S - j + 0.1, cy * S - i - 0.05, np.sqrt(w * 1.1), np.sqrt(h), 0.6]
conf = [5 * b + 4 for b in range(B)]
out[..., conf] += rng.uniform(0, 0.1, (S, S, B)) * (out[..., conf] == 0)   # low objectness elsewhere
out[..., 5 * B:] += rng.uniform(0, 0.05, (S, S, C))                       # and noisy class scores

boxes, scores, classes = decode_yolo_v1(out)
claim("6 boxes", len(boxes))                            # 3 objects x 2 predictors pass the threshold
keep = []
for c in np.unique(classes):                             # NMS per class
    idx = np.flatnonzero(classes == c)
    keep += [int(idx[k]) for k in nms(boxes[idx], scores[idx])]
claim("3 survive", len(keep))
gt_xyxy = np.c_[gt_boxes[:, :2] - gt_boxes[:, 2:] / 2, gt_boxes[:, :2] + gt_boxes[:, 2:] / 2]
for k in keep:                                           # each kept box is exactly one of the objects
    assert np.isclose(iou_xyxy(boxes[k], gt_xyxy).max(), 1.0)

# OpenCV's NMS keeps the same boxes (it takes x, y, w, h).
xywh = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]
cv_keep = [int(k) for c in np.unique(classes) for k in
           np.flatnonzero(classes == c)[cv2.dnn.NMSBoxes(xywh[classes == c].tolist(),
                                                          scores[classes == c].tolist(), 0.2, 0.5)]]
assert sorted(cv_keep) == sorted(keep)
# --8<-- [end:decode]

# --8<-- [start:anchors]
def decode_anchor(t: np.ndarray, cell: tuple[int, int], anchor: tuple[float, float], stride: int) -> np.ndarray:
    """YOLOv2/v3-style: centre = (sigmoid(t) + cell) * stride, size = anchor * exp(t)."""
    sig = lambda v: 1 / (1 + np.exp(-v))
    cx, cy = (sig(t[0]) + cell[1]) * stride, (sig(t[1]) + cell[0]) * stride
    return np.array([cx, cy, anchor[0] * np.exp(t[2]), anchor[1] * np.exp(t[3])])


# Invert for a known box (centre 200.5, 120.25, size 90 x 60) at stride 32 with a 116 x 90 anchor.
logit = lambda p: np.log(p / (1 - p))
t = np.array([logit(200.5 / 32 - 6), logit(120.25 / 32 - 3), np.log(90 / 116), np.log(60 / 90)])
assert np.allclose(decode_anchor(t, cell=(3, 6), anchor=(116, 90), stride=32), [200.5, 120.25, 90, 60])
# --8<-- [end:anchors]

print(f"Haar features in a 24x24 window: {count_haar_features():,}; cascade: {len(stages)} stages, "
      f"{sum(weak_per_stage)} weak classifiers, first stage {weak_per_stage[0]}, last {weak_per_stage[-1]}")
print(f"face found at {faces[0].tolist()} (IoU {iou_xywh(faces[0], face_by_eye):.2f} with the hand label)")
print(f"YOLOv1 tensor {S}x{S}x{B * 5 + C}; SSD300 default boxes {ssd300_default_boxes()}; "
      f"decoded {len(boxes)} boxes above threshold, {len(keep)} after NMS")

fig, (a0, a1) = plt.subplots(1, 2, figsize=(7.5, 3.6))
a0.imshow(gray, cmap="gray")
x, y, w, h = faces[0]
a0.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec="lime", lw=2))
a0.set_title("OpenCV Haar cascade: one face", fontsize=9)
a0.axis("off")
a1.set(xlim=(0, 1), ylim=(1, 0), aspect="equal")
for g in range(1, S):
    a1.axhline(g / S, color="0.85", lw=0.5)
    a1.axvline(g / S, color="0.85", lw=0.5)
for k, (x1, y1, x2, y2) in enumerate(boxes):
    kept = k in keep
    a1.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2 if kept else 1,
                               ec="tab:green" if kept else "tab:red", ls="-" if kept else "--"))
    tx, ty = (x1 + 0.01, y1 + 0.04) if kept else (x2 - 0.06, y2 + 0.04)
    a1.text(tx, ty, f"{scores[k]:.2f}", fontsize=7, color="tab:green" if kept else "tab:red")
a1.set_title("7x7 grid decode: NMS keeps green, drops red", fontsize=9)
a1.tick_params(labelsize=7)
save(fig, "classical-cv", "haar-yolo")
