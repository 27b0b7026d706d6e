"""DETR's set loss: Hungarian matching equals brute force, the loss ignores prediction order, and a duplicate is
sent to no-object.
"""
from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from scipy.optimize import linear_sum_assignment

from vault.claims import claim

rng = np.random.default_rng(0)
W_CLASS, W_L1, W_GIOU, W_NOOBJ = 1.0, 5.0, 2.0, 0.1   # DETR's weights (Carion et al. 2020)


# --8<-- [start:cost]
def to_xyxy(b: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h), normalised to [0, 1] as DETR predicts them, to corners."""
    return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], axis=-1)


def giou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise generalised IoU of boxes a (N, 4) and b (M, 4), both (cx, cy, w, h)."""
    a, b = to_xyxy(a)[:, None], to_xyxy(b)[None]
    inter = (np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
             * np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None))
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    union = area(a) + area(b) - inter
    hull = ((np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0]))
            * (np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])))
    return inter / union - (hull - union) / hull


def match_cost(prob: np.ndarray, boxes: np.ndarray, tgt_cls: np.ndarray, tgt_boxes: np.ndarray) -> np.ndarray:
    """C[i, j]: cost of giving target j to prediction i. prob (N, K+1), last column = no-object."""
    l1 = np.abs(boxes[:, None] - tgt_boxes[None]).sum(-1)
    return -W_CLASS * prob[:, tgt_cls] + W_L1 * l1 - W_GIOU * giou(boxes, tgt_boxes)


def hungarian(cost: np.ndarray) -> dict[int, int]:
    """Optimal one-to-one assignment {prediction: target}; N >= M, the N - M left over get no-object."""
    rows, cols = linear_sum_assignment(cost)
    return dict(zip(rows.tolist(), cols.tolist()))
# --8<-- [end:cost]


# --8<-- [start:brute]
def brute_force(cost: np.ndarray) -> tuple[float, dict[int, int]]:
    """Try every injective map targets -> predictions: N!/(N-M)! of them."""
    n, m = cost.shape
    best = min(itertools.permutations(range(n), m), key=lambda p: cost[list(p), range(m)].sum())
    return float(cost[list(best), range(m)].sum()), {i: j for j, i in enumerate(best)}


def random_scene(n: int, m: int, k: int = 5):
    logits = rng.normal(size=(n, k + 1))
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    boxes = np.c_[rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.4, (n, 2))]
    return prob, boxes, rng.integers(0, k, m), np.c_[rng.uniform(0.2, 0.8, (m, 2)), rng.uniform(0.05, 0.4, (m, 2))]


agree = 0
for trial in range(200):
    n, m = int(rng.integers(3, 7)), 0
    m = int(rng.integers(1, n + 1))                       # N predictions >= M targets
    C = match_cost(*random_scene(n, m))
    assignment = hungarian(C)
    best_cost, best = brute_force(C)
    assert math.isclose(sum(C[i, j] for i, j in assignment.items()), best_cost, abs_tol=1e-9)
    agree += assignment == best                            # same pairs, not only the same total
claim("all 200", agree)
claim("120", math.perm(6, 3))                              # 6 predictions, 3 targets
claim("6.3 \\times 10^{19}", math.perm(100, 10), rel=0.01)  # DETR's 100 queries, 10 objects
# --8<-- [end:brute]


# --8<-- [start:loss]
def set_loss(prob, boxes, tgt_cls, tgt_boxes) -> float:
    """Hungarian loss: match, then CE on every prediction (no-object weighted 0.1), boxes on matched ones."""
    n, no_object = len(prob), prob.shape[1] - 1
    assignment = hungarian(match_cost(prob, boxes, tgt_cls, tgt_boxes))
    target = np.full(n, no_object)
    for i, j in assignment.items():
        target[i] = tgt_cls[j]
    weight = np.where(target == no_object, W_NOOBJ, 1.0)
    ce = -(weight * np.log(prob[np.arange(n), target])).sum() / weight.sum()   # weighted mean, as F.cross_entropy
    i, j = map(list, zip(*assignment.items()))
    l1 = np.abs(boxes[i] - tgt_boxes[j]).sum() / len(j)
    g = (1 - np.diag(giou(boxes[i], tgt_boxes[j]))).sum() / len(j)
    return float(W_CLASS * ce + W_L1 * l1 + W_GIOU * g)


def fixed_order_loss(prob, boxes, tgt_cls, tgt_boxes) -> float:
    """What a naive loss does: prediction i is trained towards target i."""
    m = len(tgt_cls)
    return float(-np.log(prob[np.arange(m), tgt_cls]).mean()
                 + W_L1 * np.abs(boxes[:m] - tgt_boxes).sum(-1).mean())


prob, boxes, tgt_cls, tgt_boxes = random_scene(n=10, m=4)
base, naive = set_loss(prob, boxes, tgt_cls, tgt_boxes), fixed_order_loss(prob, boxes, tgt_cls, tgt_boxes)
set_spread, naive_spread = 0.0, 0.0
for _ in range(50):
    perm = rng.permutation(10)                             # shuffle the queries' outputs
    set_spread = max(set_spread, abs(set_loss(prob[perm], boxes[perm], tgt_cls, tgt_boxes) - base))
    naive_spread = max(naive_spread, abs(fixed_order_loss(prob[perm], boxes[perm], tgt_cls, tgt_boxes) - naive))
assert set_spread < 1e-12                                  # a set: the order carries no information
claim("2.7", naive_spread)                                 # the index-matched loss jumps
# --8<-- [end:loss]
print(f"set loss {base:.4f} (max change under 50 permutations {set_spread:.1e}); "
      f"fixed-order loss {naive:.3f}, max change {naive_spread:.2f}")


# --8<-- [start:duplicate]
K = 3                                                      # classes 0..2, column 3 = no-object
tgt_cls = np.array([0, 1])
tgt_boxes = np.array([[0.30, 0.40, 0.20, 0.30], [0.70, 0.60, 0.25, 0.20]])


def softmax_row(p_class: float, cls: int) -> np.ndarray:
    row = np.full(K + 1, (1 - p_class) / K)
    row[cls] = p_class
    return row


prob = np.stack([softmax_row(0.90, 0),                     # a good box on object 0
                 softmax_row(0.85, 0),                     # a duplicate of it, almost as good
                 softmax_row(0.80, 1),                     # object 1
                 softmax_row(0.90, K)])                    # background, already says no-object
boxes = np.array([[0.31, 0.40, 0.20, 0.29], [0.29, 0.41, 0.21, 0.31],
                  [0.70, 0.61, 0.24, 0.20], [0.55, 0.20, 0.10, 0.10]])
assignment = hungarian(match_cost(prob, boxes, tgt_cls, tgt_boxes))
assert assignment == {0: 0, 2: 1}                          # the duplicate (query 1) gets no object
loss_confident_duplicate = set_loss(prob, boxes, tgt_cls, tgt_boxes)
prob_fixed = prob.copy()
prob_fixed[1] = softmax_row(0.90, K)                       # the duplicate learns to say no-object
loss_silent_duplicate = set_loss(prob_fixed, boxes, tgt_cls, tgt_boxes)
claim("3.0", -np.log(prob[1, K]))                         # its CE term, -log p(no-object), weighted 0.1
assert loss_silent_duplicate < loss_confident_duplicate    # the loss pushes duplicates to no-object
claim("0.65", loss_confident_duplicate), claim("0.52", loss_silent_duplicate)
# --8<-- [end:duplicate]
# Encoder self-attention cost: tokens of an 800x1200 image at stride 32, and the step to stride 8.
tokens = math.ceil(800 / 32) * math.ceil(1200 / 32)
claim("950", tokens)
claim("16 times", (800 // 8) * (1200 // 8) / tokens, rel=0.02)
claim("256 times", ((800 // 8) * (1200 // 8) / tokens) ** 2, rel=0.04)
print(f"duplicate: assignment {assignment}, loss {loss_confident_duplicate:.3f} -> {loss_silent_duplicate:.3f}")

fig, ax = plt.subplots(figsize=(5.2, 4.2))
colours = {0: "tab:blue", 1: "tab:orange"}
for j, b in enumerate(tgt_boxes):
    x0, y0, x1, y1 = to_xyxy(b)
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=3, ec=colours[j]))
    ax.text(x0, y0 - 0.02, f"target {j}", color=colours[j], fontsize=9)
for i, b in enumerate(boxes):
    x0, y0, x1, y1 = to_xyxy(b)
    matched = i in assignment
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5,
                               ec=colours[assignment[i]] if matched else "0.4", ls="-" if matched else "--"))
    label = f"q{i} → target {assignment[i]}" if matched else f"q{i} → no-object"
    ax.text(x0, y1 + 0.035 + 0.03 * (i == 1), label, fontsize=8, color="k" if matched else "0.35")
ax.set(xlim=(0, 1), ylim=(1, 0), aspect="equal", xticks=[], yticks=[],
       title="Hungarian matching: one query per object,\nthe duplicate q1 is trained towards no-object")
save(fig, "detection-and-segmentation", "detr-matching")
