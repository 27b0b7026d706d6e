"""Structure from motion on a synthetic scene: two-view start, triangulation, PnP, bundle adjustment, scale."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix
from scipy.spatial.transform import Rotation

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:scene]
K = np.array([[800.0, 0, 640], [0, 800.0, 480], [0, 0, 1]])     # a 1280 x 960 image
N_CAMS, N_PTS, NOISE_PX = 6, 100, 0.5


def look_at(centre: np.ndarray, target: np.ndarray = np.zeros(3)) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera rotation R and translation t (x_cam = R X + t) of a camera at `centre`."""
    z = (target - centre) / np.linalg.norm(target - centre)
    x = np.cross(z, [0.0, 1.0, 0.0])        # image x to the right, image y down
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    return R, -R @ centre


def project(X: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pinhole projection of N x 3 world points to N x 2 pixels."""
    x = (X @ R.T + t) @ K.T
    return x[:, :2] / x[:, 2:]


# Six cameras on an arc 5 units from a 3 x 3 x 2 cloud of points, 10 degrees apart.
angles = np.deg2rad(np.arange(N_CAMS) * 10.0 - 25.0)
poses = [look_at(np.array([5 * np.sin(a), -0.5, -5 * np.cos(a)])) for a in angles]
X_true = rng.uniform([-1.5, -1.5, -1], [1.5, 1.5, 1], (N_PTS, 3))
obs = np.stack([project(X_true, R, t) for R, t in poses])          # N_CAMS x N_PTS x 2
assert obs.min() > 0 and obs[..., 0].max() < 1280 and obs[..., 1].max() < 960   # every point seen
obs += rng.normal(0, NOISE_PX, obs.shape)                          # keypoint noise
# --8<-- [end:scene]


# --8<-- [start:triangulate]
def triangulate(Ps: list[np.ndarray], xs: list[np.ndarray]) -> np.ndarray:
    """Linear (DLT) triangulation of N points seen by several 3 x 4 cameras P = K [R | t]."""
    X = np.empty((xs[0].shape[0], 3))
    for i in range(len(X)):
        # Each view gives two rows of A X = 0: u (p3 . X) - p1 . X = 0 and v (p3 . X) - p2 . X = 0.
        A = np.concatenate([[x[i, 0] * P[2] - P[0], x[i, 1] * P[2] - P[1]] for P, x in zip(Ps, xs)])
        Xh = np.linalg.svd(A)[2][-1]
        X[i] = Xh[:3] / Xh[3]
    return X


def camera(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return K @ np.hstack([R, t[:, None]])


P = [camera(R, t) for R, t in poses]
clean = np.stack([project(X_true, R, t) for R, t in poses])
assert np.abs(triangulate(P[:2], list(clean[:2])) - X_true).max() < 1e-8   # exact without noise
ref = cv2.triangulatePoints(P[0], P[5], obs[0].T, obs[5].T)
assert np.allclose(triangulate([P[0], P[5]], [obs[0], obs[5]]), (ref[:3] / ref[3]).T, atol=1e-6)


def error_3d(X: np.ndarray) -> float:
    return float(np.linalg.norm(X - X_true, axis=1).mean())


err_10 = error_3d(triangulate([P[0], P[1]], [obs[0], obs[1]]))     # 10 degree baseline
err_50 = error_3d(triangulate([P[0], P[5]], [obs[0], obs[5]]))     # 50 degree baseline
err_all = error_3d(triangulate(P, list(obs)))                      # all six views
claim("0.022", err_10)
claim("0.0057", err_50)
claim("0.0043", err_all)
assert err_10 > 3 * err_50 > 3 * err_all
# --8<-- [end:triangulate]
print(f"triangulation error: 10 deg {err_10:.4f}, 50 deg {err_50:.4f}, all views {err_all:.4f}")


# --8<-- [start:two-view]
# Relative pose of the first two cameras from their matches alone, with K known.
E, inl = cv2.findEssentialMat(obs[0], obs[1], K, cv2.RANSAC, 0.999, 1.0)
_, R01, t01, _ = cv2.recoverPose(E, obs[0], obs[1], K, mask=inl)
t01 = t01.ravel()
(R0, t0), (R1, t1) = poses[0], poses[1]
R01_true, t01_true = R1 @ R0.T, t1 - R1 @ R0.T @ t0
rot_err = np.degrees(Rotation.from_matrix(R01 @ R01_true.T).magnitude())
dir_err = np.degrees(np.arccos(t01 @ t01_true / np.linalg.norm(t01_true)))
claim("0.25°", rot_err)
claim("0.5°", dir_err)
assert abs(np.linalg.norm(t01) - 1) < 1e-9          # the baseline comes out with length 1, always

# The images fix the baseline's direction, never its length: with the true rotation and the true
# translation scaled to unit length, noise-free matches triangulate to the scene divided by |t|.
baseline = np.linalg.norm(t01_true)
X_unit = triangulate([camera(np.eye(3), np.zeros(3)), camera(R01_true, t01_true / baseline)],
                     [clean[0], clean[1]])
X_in_cam0 = X_true @ R0.T + t0
assert np.allclose(X_unit * baseline, X_in_cam0, atol=1e-8)
claim("0.87", baseline)
claim("77°", np.degrees(2 * np.arctan(K[0, 2] / K[0, 0])))   # horizontal field of view: not a narrow one
# Triangulating with the estimated pose gives the first reconstruction, in camera 0's frame.
X01 = triangulate([camera(np.eye(3), np.zeros(3)), camera(R01, t01)], [obs[0], obs[1]])
# --8<-- [end:two-view]
print(f"two-view: rotation error {rot_err:.3f} deg, direction error {dir_err:.3f} deg, "
      f"baseline {baseline:.4f}")


# --8<-- [start:scale]
# Scale the scene and every translation by s: every projection stays the same.
for s in (0.01, 0.5, 3.0, 1000.0):
    for R, t in poses:
        assert np.allclose(project(s * X_true, R, s * t), project(X_true, R, t), atol=1e-8)
# --8<-- [end:scale]


# --8<-- [start:incremental]
# Incremental start: cameras 0 and 1 from the essential matrix, points from those two views only,
# then each further camera by PnP + RANSAC against the points already triangulated.
init_R, init_t = [np.eye(3), R01], [np.zeros(3), t01]
for c in range(2, N_CAMS):
    ok, rvec, tvec, _ = cv2.solvePnPRansac(X01, obs[c], K, None, reprojectionError=3.0,
                                           flags=cv2.SOLVEPNP_EPNP)
    assert ok
    init_R.append(cv2.Rodrigues(rvec)[0])
    init_t.append(tvec.ravel())


def pack(Rs, ts, X) -> np.ndarray:
    cams = [np.r_[Rotation.from_matrix(R).as_rotvec(), t] for R, t in zip(Rs, ts)]
    return np.concatenate([np.concatenate(cams), X.ravel()])


def residuals(params: np.ndarray, n_cams: int) -> np.ndarray:
    """Reprojection errors of every point in every camera, as one vector (camera 0 is held fixed)."""
    cams = np.r_[np.zeros(6), params[: 6 * (n_cams - 1)]].reshape(n_cams, 6)
    X = params[6 * (n_cams - 1):].reshape(-1, 3)
    pred = [project(X, Rotation.from_rotvec(c[:3]).as_matrix(), c[3:]) for c in cams]
    return (np.stack(pred) - obs).ravel()


def sparsity(n_cams: int, n_pts: int) -> lil_matrix:
    """Each residual depends on 6 parameters of its camera and 3 of its point: a sparse Jacobian."""
    S = lil_matrix((n_cams * n_pts * 2, 6 * (n_cams - 1) + 3 * n_pts), dtype=int)
    for c in range(n_cams):
        for i in range(n_pts):
            rows = [2 * (c * n_pts + i), 2 * (c * n_pts + i) + 1]
            if c > 0:
                S[rows[0]:rows[1] + 1, 6 * (c - 1): 6 * c] = 1
            S[rows[0]:rows[1] + 1, 6 * (n_cams - 1) + 3 * i: 6 * (n_cams - 1) + 3 * i + 3] = 1
    return S


x0 = pack(init_R, init_t, X01)[6:]                 # drop camera 0: it defines the world frame
rms = lambda r: float(np.sqrt(np.mean(r**2)))
# --8<-- [end:incremental]


# --8<-- [start:bundle]
r_before = residuals(x0, N_CAMS)
result = least_squares(residuals, x0, jac_sparsity=sparsity(N_CAMS, N_PTS), x_scale="jac",
                       method="trf", args=(N_CAMS,))
r_after = result.fun
# The true scene in the same gauge (camera 0 at the origin, unit baseline) for comparison.
gauge_R = [R @ R0.T for R, _ in poses]
gauge_t = [(t - R @ R0.T @ t0) / baseline for R, t in poses]
r_truth = residuals(pack(gauge_R, gauge_t, X_in_cam0 / baseline)[6:], N_CAMS)
claim("1.5 px", rms(r_before))                     # after the incremental start
claim("0.41 px", rms(r_after))                     # after bundle adjustment: at the noise level
dof = r_after.size - x0.size + 1                   # +1: the scale is still free
claim("0.43 px", NOISE_PX * np.sqrt(dof / r_after.size))   # what fitting the noise is expected to leave
claim("0.49 px", rms(r_truth))                      # the true scene itself scores worse than the fit
assert rms(r_after) <= rms(r_truth)
assert rms(r_after) < 0.35 * rms(r_before) and rms(r_after) < NOISE_PX


def aligned_error(X: np.ndarray) -> float:
    """Mean 3-D error after the best similarity (rotation, translation, scale) onto the truth."""
    a, b = X - X.mean(0), X_true - X_true.mean(0)
    U, S, Vt = np.linalg.svd(b.T @ a)
    D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    s = np.trace(np.diag(S) @ D) / (a**2).sum()
    return float(np.linalg.norm(s * a @ (U @ D @ Vt).T - b, axis=1).mean())


X_ba = result.x[6 * (N_CAMS - 1):].reshape(-1, 3)
claim("0.027", aligned_error(X01))                 # 3-D error of the two-view start ...
claim("0.0044", aligned_error(X_ba))               # ... and after bundle adjustment
assert aligned_error(X_ba) < 0.25 * aligned_error(X01)
claim("6×", aligned_error(X01) / aligned_error(X_ba))   # how much better the final model is
# --8<-- [end:bundle]
print(f"BA: rms {rms(r_before):.3f} -> {rms(r_after):.3f} px ({result.nfev} evaluations); "
      f"3-D error {aligned_error(X01):.4f} -> {aligned_error(X_ba):.4f}")


# --8<-- [start:gauge]
# With no camera held fixed, the Jacobian at the solution loses rank by exactly 7:
# 3 rotations, 3 translations and 1 scale of the whole reconstruction leave every residual unchanged.
def residuals_free(params: np.ndarray) -> np.ndarray:
    cams, X = params[: 6 * N_CAMS].reshape(N_CAMS, 6), params[6 * N_CAMS:].reshape(-1, 3)
    return np.stack([project(X, Rotation.from_rotvec(c[:3]).as_matrix(), c[3:]) for c in cams]).ravel()


x_true = pack([R for R, _ in poses], [t for _, t in poses], X_true)
h = 1e-6
J = np.stack([(residuals_free(x_true + h * e) - residuals_free(x_true - h * e)) / (2 * h)
              for e in np.eye(x_true.size)], axis=1)
sv = np.linalg.svd(J, compute_uv=False)
n_null = int(np.sum(sv < 1e-6 * sv[0]))
claim("7", n_null)
claim("336", x_true.size)                          # parameters: 6 per camera, 3 per point
# --8<-- [end:gauge]
print(f"gauge: {n_null} null directions of {x_true.size}; smallest non-null sv ratio {sv[-8] / sv[0]:.2e}")

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
ax.scatter(X_true[:, 0], X_true[:, 2], s=6, c="0.5", label="points")
X_ba_world = (X_ba * baseline - t0) @ R0          # back from camera 0's frame, at the true scale
ax.scatter(X_ba_world[:, 0], X_ba_world[:, 2], s=14, facecolors="none", edgecolors="tab:green",
           lw=0.7, label="after bundle adjustment")
for k, (R, t) in enumerate(poses):
    C = -R.T @ t
    ax.plot(*np.stack([C[[0, 2]], C[[0, 2]] + 1.0 * R[2, [0, 2]]]).T, c="tab:blue", lw=1)
    ax.scatter(C[0], C[2], c="tab:blue", marker="^", s=30, label="cameras" if k == 0 else None)
ax.set(xlabel="x", ylabel="z", title="the scene from above")
ax.set_aspect("equal")
ax.legend(fontsize=7, loc="center")
before = np.linalg.norm(r_before.reshape(-1, 2), axis=1)
after = np.linalg.norm(r_after.reshape(-1, 2), axis=1)
bins = np.linspace(0, max(before.max(), 1e-9), 40)
ax2.hist(before, bins, color="tab:red", alpha=0.6, label=f"incremental start (RMS {rms(r_before):.1f} px)")
ax2.hist(after, bins, color="tab:green", alpha=0.6, label=f"after bundle adjustment (RMS {rms(r_after):.2f} px)")
ax2.set(xlabel="reprojection error (px)", ylabel="observations")
ax2.legend(fontsize=8)
save(fig, "classical-cv", "sfm-bundle-adjustment")
