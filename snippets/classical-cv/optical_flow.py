"""Lucas-Kanade by hand on a texture moved by a known sub-pixel flow; the aperture problem; Farneback."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save

from vault.claims import claim

rng = np.random.default_rng(0)

# --8<-- [start:texture]
N = 160
KY, KX = np.fft.fftfreq(N)[:, None], np.fft.fftfreq(N)[None, :]


def smooth_texture(sigma: float = 2.0) -> np.ndarray:
    """Periodic random texture: white noise low-passed by a Gaussian of `sigma` px, unit variance."""
    f = np.fft.fft2(rng.normal(size=(N, N))) * np.exp(-2 * (np.pi * sigma) ** 2 * (KX**2 + KY**2))
    t = np.real(np.fft.ifft2(f))
    return ((t - t.mean()) / t.std()).astype(np.float32)


def shift(img: np.ndarray, u: float, v: float) -> np.ndarray:
    """Exact sub-pixel translation by (u, v) via the Fourier shift theorem: out(x) = img(x - d)."""
    return np.real(np.fft.ifft2(np.fft.fft2(img) * np.exp(-2j * np.pi * (KX * u + KY * v)))).astype(np.float32)


def to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 40 + 128, 0, 255).astype(np.uint8)
# --8<-- [end:texture]


# --8<-- [start:lk]
def grad(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences (periodic borders)."""
    return ((np.roll(img, -1, 1) - np.roll(img, 1, 1)) / 2, (np.roll(img, -1, 0) - np.roll(img, 1, 0)) / 2)


def lucas_kanade(I1, I2, x: float, y: float, win: int = 15, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Flow d of the win x win patch at (x, y): minimise sum (I2(p + d) - I1(p))^2, Gauss-Newton.

    Linearised brightness constancy Ix*u + Iy*v + It = 0 over the window gives the normal
    equations T d = -b, with the structure tensor T = sum [Ix^2, IxIy; IxIy, Iy^2].
    """
    gx, gy = grad(I1)
    patch = lambda img, cx, cy: cv2.getRectSubPix(img, (win, win), (cx, cy)).ravel()  # bilinear
    A = np.stack([patch(gx, x, y), patch(gy, x, y)], axis=1)     # (win*win, 2)
    T = A.T @ A                                                  # 2x2 structure tensor
    template = patch(I1, x, y)
    d = np.zeros(2)
    for _ in range(iters):                                       # re-warp and re-solve
        it = patch(I2, x + d[0], y + d[1]) - template            # temporal difference
        step = np.linalg.solve(T, -A.T @ it)
        d += step
        if np.abs(step).max() < 1e-4:
            break
    return d, T
# --8<-- [end:lk]


# --8<-- [start:lk-demo]
I1 = smooth_texture()
true_flow = np.array([0.6, -0.35])                       # sub-pixel, known
I2 = shift(I1, *true_flow)
grid = [(x, y) for x in range(40, 121, 10) for y in range(40, 121, 10)]     # 81 points
ours = np.array([lucas_kanade(I1, I2, x, y)[0] for x, y in grid])
claim("within 0.05 px", np.linalg.norm(ours - true_flow, axis=1).max())   # every point

p0 = np.float32(grid).reshape(-1, 1, 2)
p1, status, _ = cv2.calcOpticalFlowPyrLK(to_u8(I1), to_u8(I2), p0, None, winSize=(15, 15), maxLevel=3)
cv_flow = (p1 - p0)[:, 0]
assert status.all()
claim("within 0.05 px", np.linalg.norm(cv_flow - true_flow, axis=1).max())
assert np.abs(ours - cv_flow).max() < 0.05               # same algorithm, same answer
# --8<-- [end:lk-demo]

# --8<-- [start:pyramid]
big_flow = np.array([6.4, -4.2])                         # larger than the texture's correlation length
I2_big = shift(I1, *big_flow)
single = np.array([lucas_kanade(I1, I2_big, x, y)[0] for x, y in grid])
ok_single = (np.linalg.norm(single - big_flow, axis=1) < 0.1).mean()
p1, status, _ = cv2.calcOpticalFlowPyrLK(to_u8(I1), to_u8(I2_big), p0, None, winSize=(15, 15), maxLevel=3)
ok_pyramid = (np.linalg.norm((p1 - p0)[:, 0] - big_flow, axis=1) < 0.1).mean()
claim("7.7 px", np.linalg.norm(big_flow))
claim("49%", ok_single)       # one level converges to wrong minima at half of the points ...
claim("100%", ok_pyramid)     # ... and the pyramid fixes it
claim("about 1 px", np.linalg.norm(big_flow) / 2**3, tol=0.1)   # the motion at 1/8 resolution (level 3)
# --8<-- [end:pyramid]

# --8<-- [start:aperture]
yy, xx = np.mgrid[0:N, 0:N].astype(np.float32)
normal = np.array([np.cos(np.deg2rad(30)), np.sin(np.deg2rad(30))])   # stripes vary only along this
profile = lambda s: np.sin(2 * np.pi * s / 16) + 0.5 * np.sin(2 * np.pi * s / 7 + 1)
S1 = profile(xx * normal[0] + yy * normal[1]).astype(np.float32)
S2 = profile((xx - true_flow[0]) * normal[0] + (yy - true_flow[1]) * normal[1]).astype(np.float32)

d_full, T = lucas_kanade(S1, S2, 80, 80, iters=1)
eigvals, eigvecs = np.linalg.eigh(T)
claim("1.5 \\times 10^{-4}", eigvals[0] / eigvals[1])   # rank ~1: one gradient direction only
assert np.linalg.norm(d_full - true_flow) > 0.3           # the full 2-D solve is meaningless

# Solve only along the dominant eigenvector (the stripe normal): the normal flow.
e1 = eigvecs[:, 1]
gx, gy = grad(S1)
patch = lambda img: cv2.getRectSubPix(img, (15, 15), (80, 80)).ravel()
A = np.stack([patch(gx), patch(gy)], axis=1)
d_normal = -(e1 @ (A.T @ (patch(S2) - patch(S1)))) / eigvals[1] * e1
true_normal = (true_flow @ normal) * normal                # the component along the gradient
claim("within 0.03 px", np.linalg.norm(d_normal - true_normal))
claim("0.60 px", np.linalg.norm(true_flow - true_normal))   # the component along the stripes: invisible

# OpenCV flags such points: status 0 when the min eigenvalue is below minEigThreshold (1e-4).
_, st, min_eig = cv2.calcOpticalFlowPyrLK(to_u8(S1), to_u8(S2), np.float32([[[80, 80]]]), None,
                                          winSize=(15, 15), flags=cv2.OPTFLOW_LK_GET_MIN_EIGENVALS)
assert st[0, 0] == 0 and min_eig[0, 0] < 1e-4
# --8<-- [end:aperture]

# --8<-- [start:farneback]
# A smoothly varying flow: rotate 3 degrees and zoom 2% about the centre, then translate (1, -0.5).
c, ang, zoom, t = N / 2, np.deg2rad(3.0), 1.02, np.array([1.0, -0.5])
Aff = zoom * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
P = np.stack([xx - c, yy - c], axis=-1)
flow_gt = P @ Aff.T + t - P                                # where each pixel of frame 1 goes
src = (P - t) @ np.linalg.inv(Aff).T + c                   # backward map for rendering frame 2
F2 = cv2.remap(I1, src[..., 0].astype(np.float32), src[..., 1].astype(np.float32), cv2.INTER_CUBIC,
               borderMode=cv2.BORDER_WRAP)
flow_fb = cv2.calcOpticalFlowFarneback(to_u8(I1), to_u8(F2), None, pyr_scale=0.5, levels=3, winsize=15,
                                       iterations=3, poly_n=5, poly_sigma=1.1, flags=0)
inner = (slice(20, -20), slice(20, -20))                  # ignore borders (content leaves the frame)
epe = np.linalg.norm(flow_fb - flow_gt, axis=-1)[inner]
assert flow_fb.shape == (N, N, 2)                          # a vector for every pixel
claim("5.7 px", np.linalg.norm(flow_gt, axis=-1)[inner].max())   # the largest displacement
claim("0.11 px", epe.mean())                               # mean end-point error
# --8<-- [end:farneback]

print(f"LK (ours) max error {np.linalg.norm(ours - true_flow, axis=1).max():.3f} px, "
      f"OpenCV pyrLK max error {np.linalg.norm(cv_flow - true_flow, axis=1).max():.3f} px")
print(f"shift {big_flow}: single-level LK correct at {ok_single:.0%} of points, pyramid at {ok_pyramid:.0%}")
print(f"aperture: eigenvalue ratio {eigvals[0] / eigvals[1]:.1e}, full solve {np.round(d_full, 2)}, "
      f"normal flow {np.round(d_normal, 3)} vs true normal {np.round(true_normal, 3)}; "
      f"OpenCV min eig {min_eig[0, 0]:.1e}")
print(f"Farneback: mean EPE {epe.mean():.3f} px, median {np.median(epe):.3f} px, "
      f"max true flow {np.linalg.norm(flow_gt, axis=-1)[inner].max():.2f} px")

fig, (a0, a1) = plt.subplots(1, 2, figsize=(7.5, 3.6))
a0.imshow(I1, cmap="gray")
sl = (slice(20, -20, 12), slice(20, -20, 12))
a0.quiver(xx[sl], yy[sl], flow_gt[sl][..., 0], flow_gt[sl][..., 1], color="lime", angles="xy",
          scale_units="xy", scale=0.25, width=0.006, label="true")
a0.quiver(xx[sl], yy[sl], flow_fb[sl][..., 0], flow_fb[sl][..., 1], color="red", angles="xy",
          scale_units="xy", scale=0.25, width=0.003, label="Farneback")
a0.set_title(f"Farneback vs true flow (x4), EPE {epe.mean():.2f} px", fontsize=9)
a0.legend(fontsize=7, loc="lower right")
a0.axis("off")
a1.imshow(S1[50:110, 50:110], cmap="gray", extent=(50, 110, 110, 50))
for vec, col, lw, lab in [(true_flow, "lime", 2, "true flow"), (true_normal, "cyan", 5, "true normal flow"),
                          (d_normal, "red", 2, "recovered (normal only)")]:
    a1.annotate("", xy=(80 + 30 * vec[0], 80 + 30 * vec[1]), xytext=(80, 80),
                arrowprops=dict(arrowstyle="->", color=col, lw=lw))
    a1.plot([], [], color=col, lw=lw, label=lab)
a1.set_title("aperture problem: only the normal component (x30)", fontsize=9)
a1.legend(fontsize=7, loc="lower right")
a1.axis("off")
save(fig, "classical-cv", "optical-flow")
