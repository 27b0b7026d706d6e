"""The line Hough transform in NumPy, checked against cv2.HoughLines; circles with cv2.HoughCircles."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:accumulator]
def hough_lines(edges: np.ndarray, n_theta: int = 180) -> tuple[np.ndarray, np.ndarray, int]:
    """Vote in (rho, theta) space: every edge pixel adds one vote to each line through it.

    rho = x cos(theta) + y sin(theta), theta in [0, pi), rho in [-diag, diag], 1 px and pi/n_theta bins.
    """
    ys, xs = np.nonzero(edges)
    thetas = np.arange(n_theta) * np.pi / n_theta
    diag = int(np.ceil(np.hypot(*edges.shape)))
    rho_idx = np.round(np.outer(xs, np.cos(thetas)) + np.outer(ys, np.sin(thetas))).astype(int) + diag
    acc = np.zeros((2 * diag + 1, n_theta), np.int32)
    np.add.at(acc, (rho_idx, np.broadcast_to(np.arange(n_theta), rho_idx.shape)), 1)
    return acc, thetas, diag


def find_peaks(acc: np.ndarray, k: int, window: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """The k strongest local maxima (non-maximum suppression over a window x window block)."""
    local_max = acc == cv2.dilate(acc.astype(np.float32), np.ones((window, window), np.uint8))
    cand = np.argwhere(local_max & (acc > 0))
    votes = acc[cand[:, 0], cand[:, 1]]
    order = np.argsort(-votes, kind="stable")[:k]
    return cand[order], votes[order]
# --8<-- [end:accumulator]


# --8<-- [start:lines-demo]
H = W = 200
true_lines = [(60.0, 30.0), (-40.0, 120.0), (150.0, 85.0)]      # (rho px, theta deg)
clean = np.zeros((H, W), np.uint8)
for rho, theta_deg in true_lines:
    c, s = np.cos(np.deg2rad(theta_deg)), np.sin(np.deg2rad(theta_deg))
    x0, y0 = rho * c, rho * s                                    # foot of the normal from the origin
    cv2.line(clean, (round(x0 - 1000 * s), round(y0 + 1000 * c)), (round(x0 + 1000 * s), round(y0 - 1000 * c)), 255)
on_line = clean > 0
edges = clean.copy()
edges[on_line & (rng.random((H, W)) < 0.3)] = 0                 # 30% of line pixels missing (gaps)
edges[rng.random((H, W)) < 0.03] = 255                           # 3% clutter: ~1,200 random pixels
line_px = int((edges[on_line] > 0).sum())
claim("3.5 times", ((edges > 0).sum() - line_px) / line_px)      # clutter pixels per line pixel

acc, thetas, diag = hough_lines(edges > 0)
assert acc.sum() == (edges > 0).sum() * len(thetas)              # each pixel votes once per theta
claim("283", diag)                                               # the diagonal of 200 x 200, rounded up
claim("10^5", acc.size)                                          # (2 * 283 + 1) x 180 cells at 1 px x 1 degree
peaks, votes = find_peaks(acc, k=3)
ours = sorted((float(r - diag), float(np.rad2deg(thetas[t]))) for r, t in peaks)
for (rho, theta), (rho_t, theta_t) in zip(ours, sorted(true_lines)):
    assert abs(rho - rho_t) <= 1 and abs(theta - theta_t) <= 1   # within one bin of the truth

# OpenCV: same parametrisation and bins. It returns lines sorted by votes, with their votes.
cv = cv2.HoughLinesWithAccumulator(edges, rho=1, theta=np.pi / 180, threshold=40)[:, 0, :]
top3 = sorted((float(r), float(np.rad2deg(t))) for r, t, _ in cv[:3])
for (rho, theta), (rho_cv, theta_cv) in zip(ours, top3):
    assert abs(rho - rho_cv) <= 1 and abs(theta - theta_cv) <= 1
assert sorted(votes.tolist()) == sorted(cv[:3, 2].astype(int).tolist())   # identical vote counts
claim("113", votes[0]), claim("88", votes[1]), claim("88", votes[2])
claim("7 lines", len(cv))   # OpenCV also reports near-duplicates next to each peak: thin them yourself
# --8<-- [end:lines-demo]

# --8<-- [start:circles]
Hc, Wc = 240, 320
true_circles = [(80, 90, 35), (210, 70, 25), (230, 170, 45)]     # (x, y, r)
scene = np.full((Hc, Wc), 90.0)
for x, y, r in true_circles:
    cv2.circle(scene, (x, y), r, 170.0, -1, lineType=cv2.LINE_AA)
cv2.rectangle(scene, (240, 150), (310, 230), 40.0, -1)           # hides a quarter of the third disc
cv2.rectangle(scene, (40, 160), (120, 220), 200.0, -1)           # clutter that is not a circle
scene = np.clip(scene + rng.normal(0, 15, scene.shape), 0, 255).astype(np.uint8)

found = cv2.HoughCircles(cv2.GaussianBlur(scene, (0, 0), 2), cv2.HOUGH_GRADIENT, dp=1, minDist=30,
                         param1=100,   # the upper Canny threshold used inside
                         param2=30,    # votes a centre needs
                         minRadius=10, maxRadius=80)[0]
assert len(found) == 3                                           # no circle invented on the square
centre_err, radius_err = [], []
for x, y, r in true_circles:
    d = np.hypot(found[:, 0] - x, found[:, 1] - y)
    centre_err.append(d.min()), radius_err.append(abs(found[d.argmin(), 2] - r))
claim("centres within 1 px", max(centre_err)), claim("radii within 1 px", max(radius_err))
# --8<-- [end:circles]

print("lines (rho, theta): true", sorted(true_lines), "| ours", ours, "| OpenCV", top3)
print("votes ours", votes.tolist(), "OpenCV", cv[:3, 2].astype(int).tolist(), f"({len(cv)} lines over threshold)")
print("circles found:", np.round(found, 1).tolist())

fig, (a0, a1) = plt.subplots(1, 2, figsize=(7.5, 3.4), gridspec_kw={"width_ratios": [1, 1.4]})
a0.imshow(edges, cmap="gray")
for r, t in peaks:
    rho, th = r - diag, thetas[t]
    c, s = np.cos(th), np.sin(th)
    a0.plot([rho * c - 400 * s, rho * c + 400 * s], [rho * s + 400 * c, rho * s - 400 * c], "r", lw=1)
a0.set(xlim=(0, W), ylim=(H, 0), title="edge pixels (3% clutter) + found lines")
a0.axis("off")
a1.imshow(np.sqrt(acc), aspect="auto", cmap="magma", extent=(0, 180, diag, -diag))   # sqrt: see the sinusoids
a1.scatter(np.rad2deg(thetas[peaks[:, 1]]), peaks[:, 0] - diag, s=80, facecolors="none", edgecolors="cyan")
a1.set(xlabel="theta (deg)", ylabel="rho (px)", title="accumulator (sqrt of votes): 3 peaks")
for ax in (a0, a1):
    ax.title.set_fontsize(9)
save(fig, "classical-cv", "hough-lines")
