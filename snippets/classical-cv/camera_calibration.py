"""Camera calibration on a synthetic checkerboard seen through a known camera with known lens distortion."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save

from vault.claims import claim

rng = np.random.default_rng(0)

# --8<-- [start:model]
W, H = 640, 480
K = np.array([[820.0, 0.0, 322.0],
              [0.0, 815.0, 238.0],
              [0.0, 0.0, 1.0]])
dist = np.array([-0.28, 0.09, 0.001, -0.0008, 0.0])       # k1, k2, p1, p2, k3: barrel distortion


def project(X: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Pinhole + Brown-Conrady distortion, written out (what cv2.projectPoints computes)."""
    R, _ = cv2.Rodrigues(rvec)
    Xc = X @ R.T + tvec                                   # world -> camera
    x, y = Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2]       # normalised image plane
    k1, k2, p1, p2, k3 = dist
    r2 = x**2 + y**2
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x**2)   # + tangential (decentring) terms
    yd = y * radial + p1 * (r2 + 2 * y**2) + 2 * p2 * x * y
    return np.c_[K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]]


cols, rows, square = 9, 6, 0.025                          # inner corners, 25 mm squares
board = np.zeros((rows * cols, 3))
board[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square

rv, tv = np.array([0.1, -0.2, 0.05]), np.array([-0.1, -0.06, 0.4])
assert np.allclose(project(board, rv, tv, K, dist), cv2.projectPoints(board, rv, tv, K, dist)[0][:, 0], atol=1e-9)
# --8<-- [end:model]

# --8<-- [start:views]
def random_view() -> tuple[np.ndarray, np.ndarray]:
    """A board pose tilted up to ~35 degrees, 0.30-0.55 m away, anywhere in the frame."""
    rvec = rng.uniform(-0.6, 0.6, 3) * np.array([1, 1, 0.5])
    R, _ = cv2.Rodrigues(rvec)
    offset = np.array([rng.uniform(-0.12, 0.12), rng.uniform(-0.09, 0.09), rng.uniform(0.30, 0.55)])
    return rvec, -R @ board.mean(axis=0) + offset


views, image_points = [], []
while len(views) < 20:
    rvec, tvec = random_view()
    p = project(board, rvec, tvec, K, dist)
    if (p > 15).all() and (p[:, 0] < W - 15).all() and (p[:, 1] < H - 15).all():   # whole board visible
        views.append((rvec, tvec))
        image_points.append(p)
noisy = [(p + rng.normal(0, 0.1, p.shape)).astype(np.float32) for p in image_points]   # 0.1 px corners
object_points = [board.astype(np.float32)] * len(noisy)
# --8<-- [end:views]

# --8<-- [start:calibrate]
rms, K_est, d_est, rvecs, tvecs = cv2.calibrateCamera(object_points, noisy, (W, H), None, None,
                                                      flags=cv2.CALIB_FIX_K3)
d_est = d_est.ravel()
claim("0.137 px", rms)                                    # ~ 0.1 px * sqrt(2): the noise, nothing more
claim("819.8", K_est[0, 0]), claim("814.7", K_est[1, 1]), claim("322.8", K_est[0, 2]), claim("238.2", K_est[1, 2])
claim("−0.280", d_est[0]), claim("0.086", d_est[1])
claim("within 0.05%", np.abs(np.diag(K_est)[:2] / np.diag(K)[:2] - 1).max())   # focal lengths
claim("within 1 px", np.abs(K_est[:2, 2] - K[:2, 2]).max())                   # principal point
claim("within 0.001", d_est[0] - dist[0])                                      # k1
assert np.allclose(d_est[2:4], dist[2:4], atol=1e-3)      # p1, p2


def correction_field(K_: np.ndarray, d_: np.ndarray, step: int = 20) -> np.ndarray:
    """How far undistortion moves each pixel of a grid over the whole image (px)."""
    g = np.stack(np.meshgrid(np.arange(0, W + 1, step), np.arange(0, H + 1, step)), -1).reshape(-1, 1, 2)
    g = g.astype(np.float64)
    return (cv2.undistortPoints(g, K_, d_, P=K_) - g).reshape(-1, 2)


true_field = correction_field(K, dist)
field_err = np.linalg.norm(correction_field(K_est, d_est) - true_field, axis=1).max()
claim("30.7 px", np.linalg.norm(true_field, axis=1).max())   # the lens moves the corner pixels ~31 px
claim("about 31 px", np.linalg.norm(true_field, axis=1).max())
claim("0.38 px", field_err)                                  # ...and the estimate gets that right

# Free k3 as well: k2 and k3 trade off, so the coefficients wander while the RMS stays the same,
# and the model extrapolates worse to the image corners, where no board corner was seen.
rms5, K5, d5, _, _ = cv2.calibrateCamera(object_points, noisy, (W, H), None, None)
d5 = d5.ravel()
field_err5 = np.linalg.norm(correction_field(K5, d5) - true_field, axis=1).max()
assert abs(rms5 - rms) < 0.0005                           # the same RMS ...
claim("0.14", d5[1]), claim("-0.20", d5[4])  # ... wandering coefficients ...
claim("0.99 px", field_err5)                                # ... and a worse map at the corners
# --8<-- [end:calibrate]

# --8<-- [start:render]
def render_board(rvec: np.ndarray, tvec: np.ndarray, mm_per_px: float = 0.5) -> np.ndarray:
    """Image of the checkerboard through the distorted camera (inverse-map every output pixel)."""
    s = int(square * 1000 / mm_per_px)                     # square size in texture pixels
    tex = np.full(((rows + 3) * s, (cols + 3) * s), 255, np.uint8)   # one white square of margin
    for i in range(cols + 1):
        for j in range(rows + 1):
            if (i + j) % 2 == 0:
                tex[(j + 1) * s:(j + 2) * s, (i + 1) * s:(i + 2) * s] = 0
    # texture pixel -> board metres (the first inner corner is the board origin) -> ideal image
    S = np.array([[mm_per_px / 1000, 0, -(2 * s - 0.5) * mm_per_px / 1000],
                  [0, mm_per_px / 1000, -(2 * s - 0.5) * mm_per_px / 1000], [0, 0, 1]])
    R, _ = cv2.Rodrigues(rvec)
    H_tex = K @ np.c_[R[:, 0], R[:, 1], tvec] @ S
    pix = np.stack(np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float)), -1).reshape(-1, 1, 2)
    ideal = cv2.undistortPointsIter(pix, K, dist, None, K, (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-6))
    q = np.c_[ideal.reshape(-1, 2), np.ones(H * W)] @ np.linalg.inv(H_tex).T
    maps = (q[:, :2] / q[:, 2:]).reshape(H, W, 2).astype(np.float32)
    return cv2.remap(tex, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderValue=128)


def find_corners(img: np.ndarray) -> np.ndarray:
    found, c = cv2.findChessboardCorners(img, (cols, rows))
    assert found
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 1e-3)
    return cv2.cornerSubPix(img, c, (5, 5), (-1, -1), crit)[:, 0]


rv, tv = np.array([0.15, -0.2, 0.05]), np.array([-0.1, -0.065, 0.31])
distorted = render_board(rv, tv)
corners = find_corners(distorted)
truth = project(board, rv, tv, K, dist)
err = np.linalg.norm(corners - truth, axis=1)
claim("within 0.1 px", err.max())                         # sub-pixel: 0.1 px of noise is realistic

# The sector-based detector returns sub-pixel corners by itself, without cornerSubPix. On this
# symmetric 9x6 board it starts from the other end: check the order before using the points.
ok, corners_sb = cv2.findChessboardCornersSB(distorted, (cols, rows))
assert ok and np.linalg.norm(corners_sb[0, 0] - truth[-1]) < 1
claim("0.10 px", np.linalg.norm(corners_sb[::-1, 0] - truth, axis=1).max())
# --8<-- [end:render]

# --8<-- [start:undistort]
undistorted = cv2.undistort(distorted, K_est, d_est)
# For video, build the maps once and remap every frame (the same result, much cheaper per frame).
map1, map2 = cv2.initUndistortRectifyMap(K_est, d_est, None, K_est, (W, H), cv2.CV_16SC2)
assert np.array_equal(cv2.remap(distorted, map1, map2, cv2.INTER_LINEAR), undistorted)


def bend(c: np.ndarray) -> float:
    """Largest distance of a corner from the straight line fitted to its row of the board."""
    worst = 0.0
    for row in c.reshape(rows, cols, 2):
        centred = row - row.mean(axis=0)
        normal = np.linalg.svd(centred)[2][-1]
        worst = max(worst, float(np.abs(centred @ normal).max()))
    return worst


bend_before, bend_after = bend(corners), bend(find_corners(undistorted))
claim("2.1 px", bend_before), claim("to 0.1 px", bend_after)   # straight lines are straight again
# --8<-- [end:undistort]

print(f"calibration: RMS reprojection {rms:.3f} px; fx {K_est[0, 0]:.1f} (820), fy {K_est[1, 1]:.1f} (815), "
      f"cx {K_est[0, 2]:.1f} (322), cy {K_est[1, 2]:.1f} (238)")
print(f"k1 {d_est[0]:.4f} (-0.28), k2 {d_est[1]:.4f} (0.09), p1 {d_est[2]:.5f}, p2 {d_est[3]:.5f}; "
      f"correction field error {field_err:.2f} px "
      f"(true correction up to {np.linalg.norm(true_field, axis=1).max():.1f} px)")
print(f"with k3 free: RMS {rms5:.3f}, k2 {d5[1]:.3f}, k3 {d5[4]:.3f}; correction field error {field_err5:.2f} px")
print(f"rendered board: corner detection error max {err.max():.3f} px; "
      f"row bending {bend_before:.2f} px before, {bend_after:.3f} px after undistortion")

fig, axes = plt.subplots(1, 3, figsize=(10, 2.9))
for ax, im, c, title in [(axes[0], distorted, corners, f"distorted: rows bend by {bend_before:.1f} px"),
                         (axes[1], undistorted, find_corners(undistorted), "after cv2.undistort: straight")]:
    ax.imshow(im, cmap="gray", vmin=0, vmax=255)
    for row in c.reshape(rows, cols, 2)[[0, -1]]:                    # chords through the end corners
        ax.plot(row[[0, -1], 0], row[[0, -1], 1], "r-", lw=1)
        ax.plot(row[:, 0], row[:, 1], "c.", ms=3)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
step = 10
gx, gy = np.meshgrid(np.arange(0, W + 1, step), np.arange(0, H + 1, step))
mag = np.linalg.norm(correction_field(K, dist, step), axis=1).reshape(gx.shape)
cs = axes[2].contour(gx, gy, mag, levels=[1, 2, 5, 10, 20, 30], cmap="viridis")
axes[2].clabel(cs, fontsize=7, fmt="%d px")
axes[2].set(xlim=(0, W), ylim=(H, 0), aspect="equal")
axes[2].set_title("how far undistortion moves each pixel", fontsize=9)
axes[2].tick_params(labelsize=7)
save(fig, "classical-cv", "calibration-undistort")
