"""Epipolar geometry on a synthetic two-camera scene: normalised eight-point F, E, pose, triangulation."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save

from vault.claims import claim

rng = np.random.default_rng(0)

# --8<-- [start:scene]
W, H = 640, 480
K = np.array([[800.0, 0.0, 320.0],
              [0.0, 800.0, 240.0],
              [0.0, 0.0, 1.0]])
R, _ = cv2.Rodrigues(np.array([0.03, 0.15, 0.02]))        # second camera: turned ~9 degrees
t = np.array([-0.6, 0.05, 0.6])                           # baseline ~0.85 m, sideways and forward


def skew(v: np.ndarray) -> np.ndarray:
    """[v]x, so that skew(v) @ w == np.cross(v, w)."""
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def h(p: np.ndarray) -> np.ndarray:
    """To homogeneous coordinates: append a column of ones."""
    return np.c_[p, np.ones(len(p))]


def project(P: np.ndarray, X: np.ndarray) -> np.ndarray:
    x = (P @ np.c_[X, np.ones(len(X))].T).T
    return x[:, :2] / x[:, 2:]


P1 = K @ np.c_[np.eye(3), np.zeros(3)]                    # world frame = camera 1
P2 = K @ np.c_[R, t]
# Random points 4-10 m deep, seen by both cameras: back-project random pixels of camera 1.
uv = np.c_[rng.uniform(20, W - 20, 400), rng.uniform(20, H - 20, 400)]
X = (np.linalg.inv(K) @ h(uv).T).T * rng.uniform(4, 10, (400, 1))
x2_all = project(P2, X)
visible = (x2_all > 20).all(axis=1) & (x2_all[:, 0] < W - 20) & (x2_all[:, 1] < H - 20)
n = 60
X = X[visible][:n]
x1_true, x2_true = project(P1, X), project(P2, X)
x1 = x1_true + rng.normal(0, 0.5, x1_true.shape)          # 0.5 px detection noise
x2 = x2_true + rng.normal(0, 0.5, x2_true.shape)
assert len(X) == n and (X[:, 2] > 3.9).all() and (X @ R[2] + t[2] > 3).all()   # in front of both cameras

# The ground truth from the geometry: E = [t]x R, F = K^-T E K^-1.
E_true = skew(t) @ R
F_true = np.linalg.inv(K).T @ E_true @ np.linalg.inv(K)
assert np.abs(np.einsum("ij,jk,ik->i", h(x2_true), F_true, h(x1_true))).max() < 1e-9   # x'^T F x = 0
# --8<-- [end:scene]


# --8<-- [start:eight-point]
def normalise(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hartley: move the centroid to 0 and scale so the mean distance is sqrt(2)."""
    c = p.mean(axis=0)
    s = np.sqrt(2) / np.linalg.norm(p - c, axis=1).mean()
    T = np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])
    return (T @ h(p).T).T, T


def eight_point(p1: np.ndarray, p2: np.ndarray, normalised: bool = True) -> np.ndarray:
    """Fundamental matrix from n >= 8 correspondences, with x2^T F x1 = 0."""
    if normalised:
        q1, T1 = normalise(p1)
        q2, T2 = normalise(p2)
    else:
        q1, q2, T1, T2 = h(p1), h(p2), np.eye(3), np.eye(3)
    # Each correspondence gives one linear equation in the 9 entries of F.
    A = np.einsum("ni,nj->nij", q2, q1).reshape(-1, 9)
    F = np.linalg.svd(A)[2][-1].reshape(3, 3)             # least-squares null vector
    U, S, Vt = np.linalg.svd(F)
    F = U @ np.diag([S[0], S[1], 0.0]) @ Vt               # enforce rank 2
    F = T2.T @ F @ T1                                     # undo the normalisation
    return F / np.linalg.norm(F)


def epipolar_distance(F: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Symmetric point-to-epipolar-line distance in pixels."""
    l2, l1 = (F @ h(p1).T).T, (F.T @ h(p2).T).T
    r = np.einsum("ij,ij->i", h(p2), l2)
    return 0.5 * (np.abs(r) / np.hypot(l2[:, 0], l2[:, 1]) + np.abs(r) / np.hypot(l1[:, 0], l1[:, 1]))
# --8<-- [end:eight-point]


# --8<-- [start:check-f]
F = eight_point(x1, x2)
F_raw = eight_point(x1, x2, normalised=False)
same_sign = lambda A, B: A * np.sign(np.sum(A * B))
F_ref = F_true / np.linalg.norm(F_true)

assert abs(np.linalg.det(F)) < 1e-12 and np.linalg.matrix_rank(F, tol=1e-9) == 2
claim("0.002", np.linalg.norm(same_sign(F, F_ref) - F_ref))       # equal up to scale (and sign)
d_norm = epipolar_distance(F, x1_true, x2_true).mean()             # against the noise-free points
d_raw = epipolar_distance(F_raw, x1_true, x2_true).mean()
claim("0.26 px", d_norm)


def median_error(normalised: bool, trials: int = 50, k: int = 12, sigma: float = 2.0) -> float:
    """Median epipolar error over random draws of k correspondences with sigma px noise."""
    r = np.random.default_rng(1)
    errs = []
    for _ in range(trials):
        i = r.choice(n, k, replace=False)
        Fk = eight_point(x1_true[i] + r.normal(0, sigma, (k, 2)), x2_true[i] + r.normal(0, sigma, (k, 2)),
                         normalised=normalised)
        errs.append(epipolar_distance(Fk, x1_true, x2_true).mean())
    return float(np.median(errs))


mc_norm, mc_raw = median_error(True), median_error(False)
claim("from 7.2 px", mc_raw), claim("to 3.3 px", mc_norm)           # normalisation matters...
claim("2.2×", mc_raw / mc_norm)


def conditioning(p1: np.ndarray, p2: np.ndarray) -> float:
    """sigma_1 / sigma_8 of the 8-point design matrix: how stable its null vector is."""
    s = np.linalg.svd(np.einsum("ni,nj->nij", p2, p1).reshape(-1, 9), compute_uv=False)
    return s[0] / s[7]


cond_raw = conditioning(h(x1), h(x2))
cond_norm = conditioning(normalise(x1)[0], normalise(x2)[0])
claim("1.4 \\times 10^5", cond_raw), claim("to 34", cond_norm)     # ...because pixels ~ 1e2..1e5 in A
claim("4,200×", cond_raw / cond_norm, tol=50)                      # rounded to the hundred

F_cv, _ = cv2.findFundamentalMat(x1, x2, cv2.FM_8POINT)
assert np.linalg.norm(same_sign(F_cv / np.linalg.norm(F_cv), F) - F) < 1e-3   # OpenCV: same algorithm

# Epipoles: F e1 = 0 and F^T e2 = 0. e2 is camera 1's centre seen by camera 2 (K t), e1 the reverse.
def epipoles(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e1, e2 = np.linalg.svd(F)[2][-1], np.linalg.svd(F.T)[2][-1]
    return e1[:2] / e1[2], e2[:2] / e2[2]


e1_true, e2_true = K @ (-R.T @ t), K @ t
e1_true, e2_true = e1_true[:2] / e1_true[2], e2_true[:2] / e2_true[2]
exact = epipoles(eight_point(x1_true, x2_true))                    # noise-free: exact
assert np.allclose(exact[0], e1_true, atol=1e-6) and np.allclose(exact[1], e2_true, atol=1e-6)
e1, e2 = epipoles(F)                                               # with 0.5 px noise: the least stable part
pp = K[:2, 2]
assert np.linalg.norm(e1 - e1_true) < 0.15 * np.linalg.norm(e1_true - pp)
assert np.linalg.norm(e2 - e2_true) < 0.15 * np.linalg.norm(e2_true - pp)
claim("x = −701", e1[0]), claim("−767", e1_true[0])               # image 1 (the figure's titles)
claim("x = −438", e2[0]), claim("−480", e2_true[0])               # image 2
# --8<-- [end:check-f]


# --8<-- [start:essential]
E = K.T @ F @ K
s = np.linalg.svd(E, compute_uv=False)
claim("0.993", s[1] / s[0])                                       # two (nearly) equal singular values ...
assert s[2] / s[0] < 1e-9                                         # ... and one zero
_, R_est, t_est, _ = cv2.recoverPose(E, x1, x2, K)                 # picks the 1 of 4 (R, t) in front
angle_err = np.degrees(np.linalg.norm(cv2.Rodrigues(R_est @ R.T)[0]))
claim("0.21°", angle_err)
claim("1.6°", np.degrees(np.arccos(t_est.ravel() @ t / np.linalg.norm(t))))   # direction only: no scale

# The four candidates by hand: E = U diag(1,1,0) V^T, R = U W V^T or U W^T V^T, t = +-u3.
U, _, Vt = np.linalg.svd(E)
U, Vt = U * np.sign(np.linalg.det(U)), Vt * np.sign(np.linalg.det(Vt))   # proper rotations
Wz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
Ra, Rb, u3 = U @ Wz @ Vt, U @ Wz.T @ Vt, U[:, 2]
R1_cv, R2_cv, t_cv = cv2.decomposeEssentialMat(E)
assert {tuple(np.round(M, 9).ravel()) for M in (Ra, Rb)} == {tuple(np.round(M, 9).ravel()) for M in (R1_cv, R2_cv)}
assert np.allclose(np.abs(u3), np.abs(t_cv.ravel()))
assert any(np.allclose(R_est, M) for M in (Ra, Rb))                # recoverPose kept one of them
# --8<-- [end:essential]


# --8<-- [start:triangulate]
def triangulate(P1: np.ndarray, P2: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation: x ~ P X gives x * P[2] - P[0] = 0 and y * P[2] - P[1] = 0."""
    out = []
    for (u1, v1), (u2, v2) in zip(p1, p2):
        A = np.stack([u1 * P1[2] - P1[0], v1 * P1[2] - P1[1], u2 * P2[2] - P2[0], v2 * P2[2] - P2[1]])
        Xh = np.linalg.svd(A)[2][-1]
        out.append(Xh[:3] / Xh[3])
    return np.array(out)


X_dlt = triangulate(P1, P2, x1, x2)
X_cv = cv2.triangulatePoints(P1, P2, x1.T, x2.T)
X_cv = (X_cv[:3] / X_cv[3]).T
assert np.abs(X_dlt - X_cv).max() < 1e-6                           # same linear method
rel_err = np.linalg.norm(X_dlt - X, axis=1) / X[:, 2]
claim("0.76%", np.median(rel_err))                                 # of the depth, median
assert np.abs(project(P1, X_dlt) - x1).max() < 2.0                 # reprojects onto the measurements
# --8<-- [end:triangulate]


# --8<-- [start:rectified]
# Rectified stereo: same K, no rotation, pure horizontal baseline B. Epipolar lines are image rows,
# and depth follows from disparity: Z = f * B / d.
B = 0.12
F_rect = np.linalg.inv(K).T @ skew(np.array([-B, 0, 0])) @ np.linalg.inv(K)
xl = x1_true
xr = project(K @ np.c_[np.eye(3), [-B, 0, 0]], X)
line = (F_rect @ h(xl).T).T                                        # a*x + b*y + c = 0 in the right image
assert np.allclose(line[:, 0], 0, atol=1e-12)                      # no x term: horizontal lines
assert np.allclose(-line[:, 2] / line[:, 1], xl[:, 1])             # ... at the same row y
assert np.allclose(xr[:, 1], xl[:, 1])
assert np.allclose(K[0, 0] * B / (xl[:, 0] - xr[:, 0]), X[:, 2])   # Z = f B / d
# Depth resolution: dZ/dd = Z^2 / (f B). At 5 m, one pixel of disparity is ~26 cm of depth.
claim("26 cm", 100 * 5.0**2 / (K[0, 0] * B))                     # f = 800 px, B = 12 cm, Z = 5 m
# --8<-- [end:rectified]

# --8<-- [start:sampson]
def sampson(F: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """First-order geometric error of x2^T F x1 = 0 (px^2): the residual over its gradient norm."""
    Fx1, Ftx2 = (F @ h(p1).T).T, (F.T @ h(p2).T).T
    r = np.einsum("ij,ij->i", h(p2), Fx1)
    return r**2 / (Fx1[:, 0] ** 2 + Fx1[:, 1] ** 2 + Ftx2[:, 0] ** 2 + Ftx2[:, 1] ** 2)


d_s = sampson(F, x1, x2)
assert np.allclose(d_s, [cv2.sampsonDistance(h(a[None])[0], h(b[None])[0], F) for a, b in zip(x1, x2)])
# Noise of 0.5 px per coordinate: only its component normal to the constraint surface (1 of 4
# dimensions) shows, so with the true F the mean Sampson error should be near 0.5^2 = 0.25 px^2.
claim("0.20 px²", np.mean(sampson(F_true, x1, x2)))
assert 0.5 * 0.25 < np.mean(sampson(F_true, x1, x2)) < 1.5 * 0.25

# A plane-induced homography is compatible with F: F ~ [e']x H for any plane n^T X = d.
nrm, dist = np.array([0.1, -0.2, 1.0]) / np.linalg.norm([0.1, -0.2, 1.0]), 6.0
H_plane = K @ (R + np.outer(t, nrm) / dist) @ np.linalg.inv(K)
F_from_H = skew(K @ t) @ H_plane
assert np.allclose(same_sign(F_from_H / np.linalg.norm(F_from_H), F_ref), F_ref, atol=1e-12)
# --8<-- [end:sampson]

print(f"F vs truth (unit norm): {np.linalg.norm(same_sign(F, F_ref) - F_ref):.4f}; "
      f"mean epipolar distance: normalised {d_norm:.3f} px, unnormalised {d_raw:.2f} px; "
      f"12 points, 2 px noise, median over 50 draws: {mc_norm:.2f} vs {mc_raw:.2f} px; "
      f"design matrix conditioning {cond_norm:.0f} vs {cond_raw:.0f}")
print(f"epipoles: image 1 {np.round(e1, 1)} (true {np.round(e1_true, 1)}), "
      f"image 2 {np.round(e2, 1)} (true {np.round(e2_true, 1)})")
print(f"E singular values {np.round(s / s[0], 4)}; pose: rotation error {angle_err:.3f} deg")
print(f"triangulation: median error {np.median(rel_err):.2%} of depth, max {rel_err.max():.2%}")

fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
show = rng.choice(n, 8, replace=False)
colors = plt.cm.tab10(np.arange(8))
lines2 = (F @ h(x1[show]).T).T                                      # lines in image 2 from points in image 1
lines1 = (F.T @ h(x2[show]).T).T
for ax, pts, lines, title in [(axes[0], x1[show], lines1, "image 1"), (axes[1], x2[show], lines2, "image 2")]:
    xs = np.array([0, W])
    for (a, b, c), p, col in zip(lines, pts, colors):
        ax.plot(xs, -(a * xs + c) / b, color=col, lw=1)
        ax.scatter(*p, color=col, s=18, zorder=3)
    ax.set(xlim=(0, W), ylim=(H, 0), title=f"{title}: epipolar lines meet at the\n"
           f"epipole, x = {e1[0] if title == 'image 1' else e2[0]:.0f} (off-image)")
    ax.title.set_fontsize(9)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
save(fig, "classical-cv", "epipolar-lines")
