"""Tracking by detection: a constant-velocity Kalman filter, Hungarian association with IoU or IoU + appearance,
MOTA and IDF1.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from vault.claims import claim

rng = np.random.default_rng(0)
W, H = 20.0, 40.0                                      # every box is 20 x 40 px here


# --8<-- [start:kalman]
class KalmanCV:
    """State (cx, cy, vx, vy); we measure (cx, cy). x_k = F x_{k-1} + noise, z_k = H x_k + noise."""
    F = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    Hm = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], float)

    def __init__(self, z: np.ndarray, q: float = 0.3, r: float = 1.0):
        self.x = np.r_[z, 0.0, 0.0]
        self.P = np.diag([r, r, 100.0, 100.0])          # unknown velocity at birth
        self.Q, self.R = q * np.eye(4), r * np.eye(2)

    def predict(self) -> np.ndarray:
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + self.Q
        return self.x[:2]

    def update(self, z: np.ndarray) -> None:
        S = self.Hm @ self.P @ self.Hm.T + self.R
        K = self.P @ self.Hm.T @ np.linalg.inv(S)       # Kalman gain
        self.x = self.x + K @ (z - self.Hm @ self.x)
        self.P = (np.eye(4) - K @ self.Hm) @ self.P


# A constant-velocity target: after a few frames the filter has learned the velocity.
kf = KalmanCV(np.array([0.0, 0.0]))
for t in range(1, 30):
    kf.predict()
    kf.update(np.array([3.0 * t, 1.0 * t]) + rng.normal(0, 1.0, 2))
claim("3.0", kf.x[2], tol=0.3), claim("1.0", kf.x[3], tol=0.3)   # vx, vy recovered from positions only
# --8<-- [end:kalman]


# --8<-- [start:associate]
def iou_centres(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of equal-size W x H boxes given by their centres a (N, 2), b (M, 2)."""
    dx = np.clip(W - np.abs(a[:, None, 0] - b[None, :, 0]), 0, None)
    dy = np.clip(H - np.abs(a[:, None, 1] - b[None, :, 1]), 0, None)
    inter = dx * dy
    return inter / (2 * W * H - inter)


def track(frames, appearance_weight: float = 0.0, min_iou: float = 0.1, max_age: int = 3,
          high: float = 0.5, low: float = 0.1, byte: bool = False):
    """SORT-style: predict, Hungarian on cost = (1 - w)(1 - IoU) + w * cosine distance, update.
    A frame is (centres, features) or (centres, features, scores); only boxes scoring >= high are
    associated and start tracks. byte=True adds ByteTrack's second pass: boxes scoring in [low, high)
    are matched, by IoU only, to the tracks the first pass left over, and never start tracks.
    Returns {frame: {track id: centre}}."""
    tracks, next_id, out = {}, 0, {}
    for f, (centres, feats, *rest) in enumerate(frames):
        scores = rest[0] if rest else np.ones(len(centres))
        ids = list(tracks)
        pred = np.array([tracks[i]["kf"].predict() for i in ids]).reshape(-1, 2)

        def associate(rows_in: list[int], dets: np.ndarray, w: float) -> list[tuple[int, int]]:
            if not len(rows_in) or not len(dets):
                return []
            iou = iou_centres(pred[rows_in], centres[dets])
            emb = np.array([tracks[ids[r]]["emb"] for r in rows_in])
            cost = (1 - w) * (1 - iou) + w * (1 - emb @ feats[dets].T)
            rows, cols = linear_sum_assignment(cost)
            return [(rows_in[r], int(dets[c])) for r, c in zip(rows, cols)
                    if iou[r, c] >= min_iou]        # gate: too far from the prediction

        strong = np.flatnonzero(scores >= high)
        pairs = associate(list(range(len(ids))), strong, appearance_weight)
        if byte:                                    # second pass: weak boxes, left-over tracks, IoU only
            left = [r for r in range(len(ids)) if r not in {r for r, _ in pairs}]
            pairs += associate(left, np.flatnonzero((scores >= low) & (scores < high)), 0.0)
        for r, c in pairs:
            t = tracks[ids[r]]
            t["kf"].update(centres[c])
            t["emb"] = 0.9 * t["emb"] + 0.1 * feats[c]  # DeepSORT keeps a gallery; an EMA is enough here
            t["emb"] /= np.linalg.norm(t["emb"])
        updated = {ids[r] for r, _ in pairs}
        for i in ids:
            tracks[i]["age"] = 0 if i in updated else tracks[i]["age"] + 1
        for c in set(strong.tolist()) - {c for _, c in pairs}:   # unmatched strong boxes start tracks
            tracks[next_id] = {"kf": KalmanCV(centres[c]), "emb": feats[c], "age": 0}
            next_id += 1
        tracks = {i: t for i, t in tracks.items() if t["age"] <= max_age}
        out[f] = {i: t["kf"].x[:2].copy() for i, t in tracks.items() if t["age"] == 0}
    return out
# --8<-- [end:associate]


# --8<-- [start:metrics]
def clear_mot(gt, hyp, thr: float = 0.5):
    """Per frame: keep last frame's pairs that still overlap (IoU >= thr), Hungarian for the rest;
    count FN, FP, and an ID switch when a GT object's matched hypothesis changes."""
    fn = fp = idsw = n_gt = 0
    last = {}
    for f in gt:
        n_gt += len(gt[f])
        ov = lambda g, h: iou_centres(gt[f][g][None], hyp[f][h][None])[0, 0]
        pairs = [(g, h) for g, h in last.items() if g in gt[f] and h in hyp.get(f, {}) and ov(g, h) >= thr]
        g_ids = [g for g in gt[f] if g not in dict(pairs)]
        h_ids = [h for h in hyp.get(f, {}) if h not in {h for _, h in pairs}]
        iou = np.array([[ov(g, h) for h in h_ids] for g in g_ids]).reshape(len(g_ids), len(h_ids))
        rows, cols = linear_sum_assignment(-iou) if iou.size else ([], [])
        new = [(g_ids[r], h_ids[c]) for r, c in zip(rows, cols) if iou[r, c] >= thr]
        pairs += new
        g_matched = {g for g, _ in pairs}
        for g, h in new:
            idsw += g in last and last[g] != h
            last[g] = h
        fn += len(gt[f]) - len(g_matched)
        fp += len(hyp.get(f, {})) - len(pairs)
    return dict(FN=fn, FP=fp, IDSW=idsw, MOTA=1 - (fn + fp + idsw) / n_gt)


def idf1(gt, hyp, thr: float = 0.5) -> float:
    """One global one-to-one map of GT trajectories to predicted trajectories, by frames in common."""
    g_ids = sorted({g for f in gt for g in gt[f]})
    h_ids = sorted({h for f in hyp for h in hyp[f]})
    common = np.zeros((len(g_ids), len(h_ids)))
    for f in gt:
        for g in gt[f]:
            for h in hyp.get(f, {}):
                common[g_ids.index(g), h_ids.index(h)] += iou_centres(gt[f][g][None], hyp[f][h][None])[0, 0] >= thr
    rows, cols = linear_sum_assignment(-common)
    idtp = common[rows, cols].sum()
    n_gt, n_hyp = sum(len(v) for v in gt.values()), sum(len(v) for v in hyp.values())
    return float(2 * idtp / (n_gt + n_hyp))           # = 2 IDTP / (2 IDTP + IDFP + IDFN)


# Hand-checkable: 2 objects, 10 frames; the tracker misses A in frame 0 and swaps the IDs at frame 5.
A, B = np.array([50.0, 50.0]), np.array([150.0, 50.0])
gt = {f: {"A": A, "B": B} for f in range(10)}
hyp = {f: ({1: A, 2: B} if f < 5 else {1: B, 2: A}) for f in range(10)}
del hyp[0][1]
m = clear_mot(gt, hyp)
assert (m["FN"], m["FP"], m["IDSW"]) == (1, 0, 2)
claim("0.85", m["MOTA"])                              # 1 - (1 + 0 + 2) / 20
claim("0.51", idf1(gt, hyp))                          # IDTP = 10 of 20 GT and 19 predicted: 20 / 39
# --8<-- [end:metrics]


# --8<-- [start:scene]
# Two people walk towards each other along one row, meet at frame 10 and both turn back.
emb_a, emb_b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 16)))


def observe(e):
    v = e + 0.3 * rng.normal(size=16) / 4
    return v / np.linalg.norm(v)


gt_scene, frames = {}, []
for f in range(21):
    s = 4.0 * min(f, 20 - f)                         # distance walked, reversed after frame 10
    pos = {"A": np.array([20.0 + s, 100.0]), "B": np.array([100.0 - s, 110.0])}   # B walks 10 px lower
    gt_scene[f] = pos
    centres = np.array([pos["A"], pos["B"]]) + rng.normal(0, 1.0, (2, 2))
    frames.append((centres, np.array([observe(emb_a), observe(emb_b)])))

runs = {w: track(frames, appearance_weight=w) for w in (0.0, 0.5)}
iou_only, with_app = (clear_mot(gt_scene, runs[w]) for w in (0.0, 0.5))
claim("2", iou_only["IDSW"]), claim("0", with_app["IDSW"])
claim("0.52", idf1(gt_scene, runs[0.0])), claim("1.00", idf1(gt_scene, runs[0.5]))
claim("0.95", iou_only["MOTA"]), claim("1.00", with_app["MOTA"])
# --8<-- [end:scene]


# --8<-- [start:byte]
# One person walks right; behind an obstacle (frames 6-11) the detector still sees them, at score 0.3.
# A clutter box (score 0.2) appears somewhere else in every frame.
gt_occ, frames_occ = {}, []
for f in range(20):
    gt_occ[f] = {"A": np.array([20.0 + 5.0 * f, 100.0])}
    person = gt_occ[f]["A"] + rng.normal(0, 1.0, 2)
    clutter = rng.uniform([0, 200], [200, 300])
    frames_occ.append((np.array([person, clutter]), np.ones((2, 16)) / 4,
                       np.array([0.3 if 6 <= f <= 11 else 0.9, 0.2])))
strict = clear_mot(gt_occ, track(frames_occ, high=0.5))            # drop the weak boxes
loose = clear_mot(gt_occ, track(frames_occ, high=0.1))             # keep every box
byte = clear_mot(gt_occ, track(frames_occ, high=0.5, byte=True))   # ByteTrack's second pass
claim("6 misses", strict["FN"]), claim("1 ID switch", strict["IDSW"])
claim("20 false positives", loose["FP"])
claim("MOTA 0.65", strict["MOTA"]), claim("MOTA 0.00", loose["MOTA"])
assert (byte["FN"], byte["FP"], byte["IDSW"]) == (0, 0, 0)
# --8<-- [end:byte]
print(strict, loose, byte)
print(iou_only, with_app, idf1(gt_scene, runs[0.0]), idf1(gt_scene, runs[0.5]))
