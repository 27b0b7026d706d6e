"""RANSAC against least squares: a line with 60% outliers, and a homography with 40% outliers."""
from __future__ import annotations

import math

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from scipy.stats import chi2

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:iterations]
def ransac_iterations(inlier_ratio: float, sample_size: int, confidence: float = 0.99) -> int:
    """Trials needed so that, with probability `confidence`, at least one sample is all inliers."""
    return math.ceil(math.log(1 - confidence) / math.log(1 - inlier_ratio**sample_size))


claim("17", ransac_iterations(0.5, 2))        # a line: 2 points
claim("72", ransac_iterations(0.5, 4))        # a homography: 4 correspondences
claim("1,177", ransac_iterations(0.5, 8))     # a fundamental matrix, 8-point algorithm
claim("588", ransac_iterations(0.5, 7))       # ... or the 7-point algorithm
claim("2,876", ransac_iterations(0.2, 4))     # a homography when only 20% are inliers
assert ransac_iterations(0.4, 2) == 27        # a line when only 40% are inliers

# OpenCV's findHomography stops at maxIters=2000 (confidence 0.995 by default): at w = 0.2 that
# cap, not the formula, sets the confidence actually reached.
claim("3,309", ransac_iterations(0.2, 4, confidence=0.995))
claim("96%", 1 - (1 - 0.2**4) ** 2000)

# The inlier thresholds: 95% of squared Gaussian distances fall below these multiples of sigma^2.
claim("3.84", chi2.ppf(0.95, df=1)), claim("5.99", chi2.ppf(0.95, df=2))
# --8<-- [end:iterations]


# --8<-- [start:line]
def fit_line_lstsq(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Ordinary least squares for y = a*x + b."""
    A = np.stack([x, np.ones_like(x)], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(a), float(b)


def fit_line_ransac(x, y, threshold: float, iterations: int, rng) -> tuple[tuple[float, float], np.ndarray]:
    """Hypothesise from 2 random points, score by inlier count, refit on the best consensus set."""
    best = np.zeros(len(x), dtype=bool)
    for _ in range(iterations):
        i, j = rng.choice(len(x), size=2, replace=False)
        if x[i] == x[j]:
            continue
        a = (y[j] - y[i]) / (x[j] - x[i])
        b = y[i] - a * x[i]
        # Perpendicular distance to the line a*x - y + b = 0.
        inliers = np.abs(a * x - y + b) / np.hypot(a, 1.0) < threshold
        if inliers.sum() > best.sum():
            best = inliers
    return fit_line_lstsq(x[best], y[best]), best
# --8<-- [end:line]


# --8<-- [start:line-demo]
true_a, true_b = 0.8, 2.0
n_in, n_out = 80, 120                        # 60% outliers
x_in = rng.uniform(0, 10, n_in)
y_in = true_a * x_in + true_b + rng.normal(0, 0.1, n_in)
x_out = rng.uniform(0, 10, n_out)
y_out = rng.uniform(-10, 25, n_out)          # gross errors, not noise
x, y = np.concatenate([x_in, x_out]), np.concatenate([y_in, y_out])
is_inlier = np.r_[np.ones(n_in, bool), np.zeros(n_out, bool)]

ls_a, ls_b = fit_line_lstsq(x, y)
iters = ransac_iterations(inlier_ratio=0.4, sample_size=2, confidence=0.999)
(r_a, r_b), found = fit_line_ransac(x, y, threshold=0.3, iterations=iters, rng=rng)

claim("about 0.18", ls_a)                             # least squares is dragged away
claim("0.80", r_a), claim("2.0", r_b)                   # RANSAC: y = 0.8x + 2
claim("all 80", (found & is_inlier).sum())          # finds every true inlier ...
claim("plus 1 outlier", (found & ~is_inlier).sum())  # ... and one outlier that lies near the line
# --8<-- [end:line-demo]
print(f"line: LS slope {ls_a:.3f}, RANSAC slope {r_a:.4f} (true {true_a}); "
      f"{iters} trials, {found.sum()} inliers found")


# --8<-- [start:homography]
H_true = np.array([[1.1, 0.05, 20.0],
                   [-0.03, 0.95, 10.0],
                   [1e-4, -5e-5, 1.0]])
src = rng.uniform(0, 640, size=(200, 2)).astype(np.float32)
dst = cv2.perspectiveTransform(src[None], H_true)[0] + rng.normal(0, 0.5, (200, 2)).astype(np.float32)
outliers = rng.choice(200, size=80, replace=False)   # 40% wrong matches
dst[outliers] = rng.uniform(0, 640, size=(80, 2))

H_ls, _ = cv2.findHomography(src, dst, method=0)     # least squares on all points
H_ransac, mask = cv2.findHomography(src, dst, cv2.RANSAC, ransacReprojThreshold=3.0)


def corner_error(H: np.ndarray) -> float:
    """Mean distance between where H and H_true send the corners of a 640x640 image."""
    corners = np.array([[[0, 0], [640, 0], [640, 640], [0, 640]]], np.float32)
    return float(np.linalg.norm(cv2.perspectiveTransform(corners, H)
                                - cv2.perspectiveTransform(corners, H_true), axis=2).mean())


claim("165 px", corner_error(H_ls))        # far off
claim("0.21 px", corner_error(H_ransac))   # sub-pixel
# --8<-- [end:homography]
print(f"homography: corner error LS {corner_error(H_ls):.1f} px, RANSAC {corner_error(H_ransac):.2f} px, "
      f"{int(mask.sum())} inliers kept of 120 true")

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.scatter(x[~found], y[~found], s=8, c="0.65", label="rejected by RANSAC")
ax.scatter(x[found], y[found], s=10, c="tab:blue", label="RANSAC inliers")
xs = np.array([0, 10])
ax.plot(xs, ls_a * xs + ls_b, "tab:red", lw=2, label=f"least squares (slope {ls_a:.2f})")
ax.plot(xs, r_a * xs + r_b, "tab:green", lw=2, label=f"RANSAC (slope {r_a:.2f})")
ax.set(xlabel="x", ylabel="y", title="Line y = 0.8x + 2 with 60% outliers")
ax.legend(fontsize=8, loc="upper left")
save(fig, "classical-cv", "ransac-line")
