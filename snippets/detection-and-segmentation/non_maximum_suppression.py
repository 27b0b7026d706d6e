"""Greedy NMS equal to cv2.dnn.NMSBoxes, Soft-NMS equal to cv2.dnn.softNMSBoxes and keeping an occluded person
that hard NMS deletes, and batched NMS by coordinate offset equal to the per-class loop."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
from _figures import save
from onnx import TensorProto, helper

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:greedy]
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU, boxes as x1, y1, x2, y2."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def nms(boxes, scores, iou_thr, score_thr=0.0, top_k=0, eta=1.0) -> list[int]:
    """Greedy NMS with OpenCV's options: drop scores <= score_thr, keep the top_k best candidates,
    then repeatedly keep the best box and drop every box whose IoU with a kept box exceeds the
    threshold. With eta < 1 the threshold shrinks by eta after each kept box while it is above 0.5."""
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > score_thr]
    order = order[:top_k] if top_k > 0 else order
    iou = iou_matrix(boxes, boxes)
    keep, thr = [], iou_thr
    for i in order:
        if all(iou[i, j] <= thr for j in keep):
            keep.append(i)
            if eta < 1 and thr > 0.5:
                thr *= eta
    return keep


def xywh(boxes: np.ndarray) -> list[list[float]]:
    return np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]].tolist()


def clutter(n: int, n_objects: int = 12, span: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    """n raw detections scattered around n_objects objects, as a dense head's output looks:
    similar sizes, centres jittered by 10% of the size, random scores."""
    centre = rng.uniform(40, span - 40, (n_objects, 2))
    size = rng.uniform(20, 80, (n_objects, 2))
    k = rng.integers(0, n_objects, n)
    wh = size[k] * rng.normal(1, 0.1, (n, 2))
    c = centre[k] + rng.normal(0, 0.1, (n, 2)) * size[k]
    return np.c_[c - wh / 2, c + wh / 2], rng.uniform(0, 1, n).astype(np.float32)


for n, iou_thr, score_thr, top_k, eta in [(200, 0.5, 0.0, 0, 1.0), (300, 0.45, 0.3, 0, 1.0),
                                          (300, 0.7, 0.1, 50, 1.0), (300, 0.8, 0.0, 0, 0.9)]:
    boxes, scores = clutter(n)
    ours = nms(boxes, scores, iou_thr, score_thr, top_k, eta)
    theirs = cv2.dnn.NMSBoxes(xywh(boxes), scores.tolist(), score_thr, iou_thr, eta=eta, top_k=top_k)
    assert ours == np.asarray(theirs).ravel().tolist()          # same boxes, in the same order
boxes, scores = clutter(200, n_objects=12)
claim("200 raw boxes", len(boxes)), claim("12 objects", 12)
claim("25 survive", len(nms(boxes, scores, 0.5)))             # about two per object: stragglers stay
# --8<-- [end:greedy]


# --8<-- [start:crowd]
def ap50(boxes, scores, gt) -> float:
    """COCO-style AP at IoU 0.5 for one image (see the mAP page for the full protocol)."""
    order = np.argsort(-scores, kind="stable")
    iou = iou_matrix(boxes[order], gt)
    taken, tp = np.zeros(len(gt), bool), []
    for d in range(len(order)):
        free = np.where(~taken & (iou[d] >= 0.5), iou[d], -1)
        tp.append(free.max() >= 0.5)
        if tp[-1]:
            taken[free.argmax()] = True
    hits = np.cumsum(tp)
    recall, precision = hits / len(gt), hits / np.arange(1, len(tp) + 1)
    envelope = np.r_[np.maximum.accumulate(precision[::-1])[::-1], 0]
    return float(envelope[np.searchsorted(recall, np.linspace(0, 1, 101), side="left")].mean())


# Three pedestrians. P2 stands half behind P1, so their boxes overlap; P3 stands alone.
P1 = np.array([100.0, 50, 160, 230])
P2, P3 = P1 + [15, 0, 15, 0], np.array([300.0, 60, 360, 240])
gt = np.array([P1, P2, P3])
det = np.array([P1 + [1, 2, 1, 2],        # 0.95  P1
                P2 + [-1, 0, -1, 1],      # 0.85  P2, the occluded one
                P1 + [-8, 0, -8, 0],      # 0.70  a duplicate of P1
                P3 + [2, 2, 2, 2],        # 0.90  P3
                P3 + [-9, 5, -9, 5],      # 0.60  a sloppy duplicate of P3
                [400.0, 100, 450, 200]])  # 0.50  background
score = np.array([0.95, 0.85, 0.70, 0.90, 0.60, 0.50])
pair = iou_matrix(det, det)
claim("0.635", pair[0, 1])                                    # P1 and P2 detections overlap this much
claim("0.671", pair[3, 4])                                    # P3 and its sloppy duplicate

hard = {t: nms(det, score, t) for t in (0.5, 0.7)}
assert 1 not in hard[0.5]                                     # NMS at 0.5 deletes the occluded person
claim("0.663", ap50(det[hard[0.5]], score[hard[0.5]], gt))    # recall stops at 2/3
assert 1 in hard[0.7] and 4 in hard[0.7]                      # 0.7 keeps P2, and the P3 duplicate too
assert ap50(det[hard[0.7]], score[hard[0.7]], gt) == 1.0      # here the duplicate ranks below every TP
# --8<-- [end:crowd]


# --8<-- [start:soft]
def soft_nms(boxes, scores, iou_thr=0.3, sigma=0.5, score_thr=0.001, method="gaussian"):
    """Soft-NMS (Bodla et al., 2017): keep the best box, decay the others' scores by their overlap with
    it instead of deleting them, repeat. Linear: s *= 1 - IoU above iou_thr. Gaussian: s *= exp(-IoU^2/sigma).
    Returns the kept indices in selection order and their decayed scores."""
    s = scores.astype(np.float64).copy()
    iou = iou_matrix(boxes, boxes)
    left, keep, kept_scores = list(range(len(boxes))), [], []
    while left:
        m = max(left, key=lambda k: (s[k], -k))                   # best score, lowest index on ties
        if s[m] < score_thr:
            break
        keep.append(m)
        kept_scores.append(s[m])
        left.remove(m)
        for j in left:
            if method == "gaussian":
                s[j] *= np.exp(-iou[m, j] ** 2 / sigma)
            elif iou[m, j] > iou_thr:
                s[j] *= 1 - iou[m, j]
    return keep, np.array(kept_scores)


def cv_soft_nms(boxes, scores, iou_thr, sigma, score_thr, method):
    flag = {"gaussian": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_GAUSSIAN, "linear": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_LINEAR}
    rects = [[int(v) for v in r] for r in xywh(boxes)]            # OpenCV's soft-NMS takes integer rects
    s, idx = cv2.dnn.softNMSBoxes(rects, scores.tolist(), score_thr, iou_thr, sigma=sigma, method=flag[method])
    return np.asarray(idx).ravel().tolist(), np.asarray(s)


for method in ("gaussian", "linear"):                          # equal to OpenCV, order and scores
    b, s = clutter(150)
    b = np.round(b)
    keep, kept = soft_nms(b, s, iou_thr=0.3, sigma=0.5, score_thr=0.05, method=method)
    cv_keep, cv_kept = cv_soft_nms(b, s, 0.3, 0.5, 0.05, method)
    assert keep == cv_keep and np.allclose(kept, cv_kept, atol=1e-5)

keep, kept = soft_nms(det, score)
new_score = dict(zip(keep, kept))
claim("0.379", new_score[1])                                  # P2 survives, its score decayed from 0.85
claim("0.244", new_score[4])                                  # the P3 duplicate sinks from 0.60
claim("0.916", ap50(det[keep], kept, gt))                     # recall 3/3, P2 ranked below the 0.50 FP
# At a deployment threshold of 0.5, the decayed P2 is gone again: Soft-NMS helps a ranking metric.
assert new_score[1] < 0.5
# --8<-- [end:soft]


# --8<-- [start:batched]
def batched_nms_loop(boxes, scores, classes, iou_thr) -> list[int]:
    """Per-class NMS, one class at a time; kept indices sorted by score."""
    keep = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        keep += [int(idx[k]) for k in nms(boxes[idx], scores[idx], iou_thr)]
    return sorted(keep, key=lambda k: -scores[k])


def batched_nms_offset(boxes, scores, classes, iou_thr) -> list[int]:
    """One NMS call: move each class to its own region of the plane, so boxes of different classes
    can never overlap, and run class-agnostic NMS once (as torchvision's batched_nms does)."""
    span = boxes.max() - min(boxes.min(), 0.0) + 1.0             # safe even for negative coordinates
    return nms(boxes + (classes * span)[:, None], scores, iou_thr)


boxes, scores = clutter(400)
classes = rng.integers(0, 5, 400)
looped = batched_nms_loop(boxes, scores, classes, 0.5)
assert batched_nms_offset(boxes, scores, classes, 0.5) == looped
cv_batched = cv2.dnn.NMSBoxesBatched(xywh(boxes), scores.tolist(), classes.tolist(), 0.0, 0.5)
assert sorted(np.asarray(cv_batched).ravel().tolist()) == sorted(looped)

# An exported detector runs ONNX's NonMaxSuppression operator: per batch item and per class, by definition.
graph = helper.make_graph(
    [helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "score_thr"], ["selected"])], "nms",
    [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, None, 4]),
     helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, None, None]),
     helper.make_tensor_value_info("max_out", TensorProto.INT64, [1]),
     helper.make_tensor_value_info("iou", TensorProto.FLOAT, [1]),
     helper.make_tensor_value_info("score_thr", TensorProto.FLOAT, [1])],
    [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
per_class_scores = np.zeros((1, 5, len(boxes)), np.float32)
per_class_scores[0, classes, np.arange(len(boxes))] = scores   # (batch, class, box), 0 for other classes
selected = session.run(None, {"boxes": boxes[None].astype(np.float32), "scores": per_class_scores,
                              "max_out": np.array([1000]), "iou": np.array([0.5], np.float32),
                              "score_thr": np.array([0.0], np.float32)})[0]   # rows: (batch, class, box)
assert sorted(selected[:, 2].tolist()) == sorted(looped)

# Class-agnostic NMS deletes a rider's bicycle: the two boxes overlap by more than the threshold.
person, bike = np.array([200.0, 80, 260, 260]), np.array([190.0, 140, 270, 265])
two, two_scores, two_classes = np.array([person, bike]), np.array([0.9, 0.8]), np.array([0, 1])
claim("0.53", iou_matrix(two, two)[0, 1])
assert nms(two, two_scores, 0.5) == [0]
assert batched_nms_offset(two, two_scores, two_classes, 0.5) == [0, 1]

# The offset must exceed the coordinate span. With torchvision's offset, class * (max + 1), two
# unclipped boxes with large negative coordinates still overlap across classes and one is lost.
big = np.array([[-400.0, -400, 50, 50], [-400.0, -400, 50, 50]])
naive = big + (np.array([0, 1]) * (big.max() + 1))[:, None]
claim("0.648", iou_matrix(naive, naive)[0, 1])                # above 0.5: class 1 is suppressed by class 0
assert nms(naive, np.array([0.9, 0.8]), 0.5) == [0]
assert batched_nms_offset(big, np.array([0.9, 0.8]), np.array([0, 1]), 0.5) == [0, 1]
# --8<-- [end:batched]

print(f"clutter: {len(boxes)} boxes -> {len(looped)} after per-class NMS; crowd: hard 0.5 keeps {hard[0.5]}, "
      f"0.7 keeps {hard[0.7]}; soft scores {np.round(kept, 3).tolist()} for {keep}")

# Figure: the crowd scene after hard NMS at 0.5 and 0.7, and after Gaussian Soft-NMS.
fig, axes = plt.subplots(1, 3, figsize=(10, 2.9))
panels = [("hard NMS, IoU 0.5: P2 deleted", hard[0.5], {k: score[k] for k in hard[0.5]}),
          ("hard NMS, IoU 0.7: P2 and a duplicate kept", hard[0.7], {k: score[k] for k in hard[0.7]}),
          ("Gaussian Soft-NMS: nothing deleted", keep, new_score)]
# offsets from (x1, y1) / (x1, y2)
label_at = {0: (0, -6), 1: (30, -20), 2: (-4, 22), 3: (0, -6), 4: (-4, 22), 5: (0, -6)}
for ax, (title, kept_idx, shown) in zip(axes, panels):
    for name, g in zip(("P1", "P2", "P3"), gt):
        ax.add_patch(plt.Rectangle(g[:2], *(g[2:] - g[:2]), fill=True, fc="0.88", ec="0.6", lw=1))
    ax.text(P1[0] + 4, P1[3] - 6, "P1", fontsize=7, color="0.4")
    ax.text(P2[2] - 16, P2[3] - 6, "P2", fontsize=7, color="0.4")
    ax.text(P3[0] + 4, P3[3] - 6, "P3", fontsize=7, color="0.4")
    for k in range(len(det)):
        x1, y1, x2, y2 = det[k]
        dx, dy = label_at[k]
        ty = y1 + dy if dy < 0 else y2 + dy
        if k in kept_idx:
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="tab:green",
                                       lw=0.5 + 2.5 * shown[k]))
            ax.text(x1 + dx, ty, f"{shown[k]:.2f}", fontsize=7.5, color="tab:green")
        else:
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="tab:red", lw=0.9, ls=":"))
            ax.text(x1 + dx, ty, f"{score[k]:.2f}", fontsize=7.5, color="tab:red")
    ax.set(xlim=(80, 470), ylim=(275, 20), aspect="equal", title=title)
    ax.title.set_fontsize(8.5)
    ax.set_xticks([]), ax.set_yticks([])
axes[1].text(0.5, -0.08, "grey: ground truth P1-P3; green: kept, line width = score; red dotted: removed",
             ha="center", va="top", fontsize=8, transform=axes[1].transAxes)
save(fig, "detection-and-segmentation", "nms-crowd")
