"""Homography: normalised DLT by hand, checked against OpenCV; plane and rotation homographies; stitching."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from scipy.optimize import minimize_scalar
from skimage import data

from vault.claims import claim

rng = np.random.default_rng(0)
cv2.setRNGSeed(0)


def h(p: np.ndarray) -> np.ndarray:
    return np.c_[p, np.ones(len(p))]


def apply(H: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = (H @ h(p).T).T
    return q[:, :2] / q[:, 2:]


# --8<-- [start:dlt]
def normalise(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity T: centroid to the origin, mean distance sqrt(2)."""
    c = p.mean(axis=0)
    s = np.sqrt(2) / np.linalg.norm(p - c, axis=1).mean()
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]]), s


def dlt_rows(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Two rows per correspondence from dst x (H src) = 0."""
    rows = []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    return np.array(rows)


def homography_dlt(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """H with dst ~ H src from n >= 4 correspondences (normalised DLT, least squares for n > 4)."""
    T1, _ = normalise(src)
    T2, _ = normalise(dst)
    A = dlt_rows(apply(T1, src), apply(T2, dst))
    Hn = np.linalg.svd(A)[2][-1].reshape(3, 3)         # null vector of A
    H = np.linalg.inv(T2) @ Hn @ T1                     # undo the normalisation
    return H / H[2, 2]
# --8<-- [end:dlt]


# --8<-- [start:recover]
H_true = np.array([[0.9, -0.12, 40.0],
                   [0.08, 1.05, -25.0],
                   [2e-4, -1e-4, 1.0]])

# Exactly four correspondences: 8 equations, 8 unknowns, an exact solution.
quad = np.array([[0, 0], [640, 0], [640, 480], [0, 480]], float)
H4 = homography_dlt(quad, apply(H_true, quad))
assert np.allclose(H4, H_true, atol=1e-9)
assert np.allclose(H4, cv2.getPerspectiveTransform(quad.astype(np.float32),
                                                   apply(H_true, quad).astype(np.float32)), atol=1e-6)

# Fifty noisy correspondences: least squares.
src = rng.uniform([0, 0], [640, 480], (50, 2))
dst = apply(H_true, src) + rng.normal(0, 0.5, (50, 2))
H50 = homography_dlt(src, dst)
H_cv, _ = cv2.findHomography(src, dst, method=0)        # OpenCV's least-squares fit (no RANSAC)


def corner_error(H: np.ndarray) -> float:
    return float(np.linalg.norm(apply(H, quad) - apply(H_true, quad), axis=1).mean())


claim("0.36 px", corner_error(H50))                     # sub-pixel at the image corners
claim("within 0.05 px", np.abs(apply(H50, quad) - apply(H_cv, quad)).max())   # agrees with OpenCV

# Three collinear points make the problem degenerate: A loses rank.
collinear = np.array([[0, 0], [100, 100], [200, 200], [50, 300]], float)
assert np.linalg.matrix_rank(dlt_rows(collinear, apply(H_true, collinear)), tol=1e-6) < 8
# --8<-- [end:recover]

# --8<-- [start:physics]
K = np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])
R, _ = cv2.Rodrigues(np.array([0.1, -0.2, 0.05]))
t = np.array([0.3, -0.1, 0.2])
n_plane, d_plane = np.array([0.0, 0.0, 1.0]), 5.0        # the plane Z = 5 in camera-1 coordinates

# Points on the plane project through both cameras; one H maps the first image to the second.
P3 = np.c_[rng.uniform(-2, 2, (30, 2)), np.full(30, d_plane)]
img1 = apply(K, P3[:, :2] / P3[:, 2:])
cam2 = P3 @ R.T + t
img2 = apply(K, cam2[:, :2] / cam2[:, 2:])
H_plane = K @ (R + np.outer(t, n_plane) / d_plane) @ np.linalg.inv(K)   # plane induced homography
assert np.allclose(apply(H_plane, img1), img2, atol=1e-9)

# Pure rotation (t = 0): H = K R K^-1 for every point, whatever its depth.
P_any = np.c_[rng.uniform(-2, 2, (30, 2)), rng.uniform(2, 20, 30)]
rot = P_any @ R.T
assert np.allclose(apply(K @ R @ np.linalg.inv(K), apply(K, P_any[:, :2] / P_any[:, 2:])),
                   apply(K, rot[:, :2] / rot[:, 2:]), atol=1e-9)
# --8<-- [end:physics]

# --8<-- [start:pose]
# Pose from a plane. Decomposing H gives four (R, t/d, n) candidates and no metric scale ...
n_sol, Rs, ts, ns = cv2.decomposeHomographyMat(H_plane, K)
assert n_sol == 4
assert any(np.allclose(Rk, R) and np.allclose(tk.ravel(), t / d_plane) and np.allclose(nk.ravel(), n_plane)
           for Rk, tk, nk in zip(Rs, ts, ns))                # the truth is one of the four
# ... while PnP on the plane's metric coordinates (IPPE, for planar targets) returns one metric pose.
ok, rvec, tvec = cv2.solvePnP(P3, img2, K, None, flags=cv2.SOLVEPNP_IPPE)
assert ok and np.allclose(cv2.Rodrigues(rvec)[0], R, atol=1e-9) and np.allclose(tvec.ravel(), t, atol=1e-9)

# A rotation-only homography reveals the focal length: K^-1 H K must be a rotation for the right K.
H_rot = K @ R @ np.linalg.inv(K)


def not_a_rotation(f: float) -> float:
    Kf = np.array([[f, 0, K[0, 2]], [0, f, K[1, 2]], [0, 0, 1]])
    M = np.linalg.inv(Kf) @ H_rot @ Kf
    M /= np.cbrt(np.linalg.det(M))                           # H is known only up to scale
    return float(np.linalg.norm(M @ M.T - np.eye(3)))


f_est = minimize_scalar(not_a_rotation, bounds=(300, 2000), method="bounded", options={"xatol": 1e-6}).x
claim("f = 800 px", f_est)
# --8<-- [end:pose]

# --8<-- [start:stitch]
scene = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)   # 512x512 "world"
size = (320, 320)
# Two views of the world: view_i(p) = scene(G_i^-1 p), with overlapping fields of view.
G1 = np.array([[1.0, 0.0, -40.0], [0.0, 1.0, -60.0], [0.0, 0.0, 1.0]])
G2 = np.array([[0.95, 0.1, -150.0], [-0.08, 1.0, -80.0], [3e-4, 1e-4, 1.0]])
view1 = cv2.warpPerspective(scene, G1, size)
view2 = cv2.warpPerspective(scene, G2, size)
H21_true = G1 @ np.linalg.inv(G2)                        # view2 -> view1

sift = cv2.SIFT_create()
k1, d1 = sift.detectAndCompute(cv2.cvtColor(view1, cv2.COLOR_BGR2GRAY), None)
k2, d2 = sift.detectAndCompute(cv2.cvtColor(view2, cv2.COLOR_BGR2GRAY), None)
good = [m for m, n in cv2.BFMatcher().knnMatch(d2, d1, k=2) if m.distance < 0.75 * n.distance]
p2 = np.float32([k2[m.queryIdx].pt for m in good])
p1 = np.float32([k1[m.trainIdx].pt for m in good])
H21, inliers = cv2.findHomography(p2, p1, cv2.RANSAC, ransacReprojThreshold=2.0)
box = np.array([[0, 0], [320, 0], [320, 320], [0, 320]], float)
grid = np.stack(np.meshgrid(np.arange(0, 321, 10), np.arange(0, 321, 10)), -1).reshape(-1, 2).astype(float)
lands = apply(H21_true, grid)
in_overlap = ((lands >= 0) & (lands <= 320)).all(axis=1)  # view-2 points that view 1 also sees
err = np.linalg.norm(apply(H21, grid) - lands, axis=1)[in_overlap].max()
assert in_overlap.sum() > 300
claim("0.27 px", err)                                     # sub-pixel across the whole overlap, at worst
claim("188", int(inliers.sum())), claim("192", len(good))  # RANSAC inliers of the ratio-test matches

# Stitch: a canvas in view1's frame, shifted and sized so that both views fit.
corners = np.r_[box, apply(H21, box)]
lo, hi = np.floor(corners.min(axis=0)), np.ceil(corners.max(axis=0))
shift = np.array([[1.0, 0, -lo[0]], [0, 1.0, -lo[1]], [0, 0, 1.0]])
canvas_size = tuple(int(v) for v in hi - lo)
warped2 = cv2.warpPerspective(view2, shift @ H21, canvas_size)
warped1 = cv2.warpPerspective(view1, shift, canvas_size)
m1 = cv2.warpPerspective(np.ones(size[::-1], np.uint8), shift, canvas_size) > 0
m2 = cv2.warpPerspective(np.ones(size[::-1], np.uint8), shift @ H21, canvas_size, flags=cv2.INTER_NEAREST) > 0
overlap = cv2.erode((m1 & m2).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0   # skip border pixels
diff = np.abs(warped1.astype(float) - warped2.astype(float))[overlap].mean()
assert overlap.sum() > 20_000
claim("3.5 grey levels", diff)                            # the views agree where they overlap
pano = np.where(m1[..., None], warped1, warped2)
# --8<-- [end:stitch]

print(f"4-point DLT exact; 50 noisy points: corner error ours {corner_error(H50):.3f} px, "
      f"OpenCV {corner_error(H_cv):.3f} px")
print(f"stitching: {len(good)} ratio-test matches, {int(inliers.sum())} RANSAC inliers, "
      f"max error in the overlap {err:.2f} px, mean |difference| in the overlap {diff:.1f} grey levels")

fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.6), gridspec_kw={"width_ratios": [1, 1, 1.6]})
for ax, im, title in [(axes[0], view1, "view 1"), (axes[1], view2, "view 2"),
                      (axes[2], pano, "view 2 warped by H into view 1")]:
    ax.imshow(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
outline = apply(shift @ H21, box)
axes[2].plot(*np.r_[outline, outline[:1]].T, "y-", lw=1)
save(fig, "classical-cv", "homography-stitch")
