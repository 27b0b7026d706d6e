"""Median against Gaussian on impulse noise, bilateral on an edge, Otsu written out, opening and components."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from skimage import data

from vault.claims import claim

rng = np.random.default_rng(0)
camera = data.camera()                     # 512x512 uint8, bundled with scikit-image


# --8<-- [start:denoise]
def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for 8-bit images."""
    mse = np.mean((ref.astype(np.float64) - img.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


# Salt-and-pepper: 10% of the pixels set to 0 or 255.
sp = camera.copy()
hit = rng.random(camera.shape) < 0.10
sp[hit] = np.where(rng.random(hit.sum()) < 0.5, 0, 255)

sp_gauss = cv2.GaussianBlur(sp, (5, 5), sigmaX=1.0)
sp_median = cv2.medianBlur(sp, 3)
claim("14.7 dB", psnr(camera, sp))             # the noisy image
claim("23.2 dB", psnr(camera, sp_gauss))       # Gaussian smears each impulse into a grey blob
claim("29.4 dB", psnr(camera, sp_median))      # the median simply discards them
assert psnr(camera, sp_median) > psnr(camera, sp_gauss) + 5

# Gaussian noise (sigma = 15 grey levels): now the Gaussian filter is the better of the two.
gn = np.clip(camera + rng.normal(0, 15, camera.shape), 0, 255).astype(np.uint8)
gn_gauss = cv2.GaussianBlur(gn, (5, 5), sigmaX=1.0)
gn_median = cv2.medianBlur(gn, 3)
claim("24.8 dB", psnr(camera, gn))
claim("28.6 dB", psnr(camera, gn_gauss))
claim("28.1 dB", psnr(camera, gn_median))
assert psnr(camera, gn_gauss) > psnr(camera, gn_median)
# Like for like: the mean of the same 3x3 window ties with the median on this image; the Gaussian's
# lead comes from its wider support (sum of squared weights 0.083 against 1/9 for a 3x3 mean).
gn_box = cv2.blur(gn, (3, 3))
claim("28.15 dB", psnr(camera, gn_box))
claim("28.13 dB", psnr(camera, gn_median))
claim("0.083", float((cv2.getGaussianKernel(5, 1.0) ** 2).sum() ** 2))
# --8<-- [end:denoise]
print(f"salt-and-pepper: noisy {psnr(camera, sp):.2f}, gauss {psnr(camera, sp_gauss):.2f}, "
      f"median {psnr(camera, sp_median):.2f} dB; gaussian noise: noisy {psnr(camera, gn):.2f}, "
      f"gauss {psnr(camera, gn_gauss):.2f}, median {psnr(camera, gn_median):.2f} dB")


# --8<-- [start:bilateral]
# A vertical step from 60 to 190 grey levels, plus Gaussian noise of sigma 10.
step = np.full((128, 128), 60.0)
step[:, 64:] = 190.0
noisy_step = np.clip(step + rng.normal(0, 10, step.shape), 0, 255).astype(np.uint8)

g = cv2.GaussianBlur(noisy_step, (0, 0), sigmaX=3.0).astype(np.float64)
b = cv2.bilateralFilter(noisy_step, d=19, sigmaColor=40, sigmaSpace=3.0).astype(np.float64)


def flat_noise(img: np.ndarray) -> float:
    """Standard deviation of the residual far from the edge (columns 8-40 and 88-120)."""
    return float(np.concatenate([(img - step)[:, 8:40], (img - step)[:, 88:120]]).std())


def edge_rise(img: np.ndarray) -> float:
    """Largest jump between neighbouring columns of the row-averaged profile, as a share of the step."""
    return float(np.diff(img.mean(axis=0)).max() / 130.0)


claim("10.0", flat_noise(noisy_step.astype(np.float64)), tol=0.1)
claim("10.6", 2 * np.sqrt(np.pi) * 3.0)     # the noise reduction a Gaussian of sigma 3 should give
claim("10.5", flat_noise(noisy_step.astype(np.float64)) / flat_noise(g))   # ... and gives
claim("0.95", flat_noise(g))                  # both smooth the flat regions ...
claim("1.19", flat_noise(b))
claim("13%", edge_rise(g))                   # ... but Gaussian spreads the step over many columns
claim("99%", edge_rise(b))                   # while bilateral keeps almost all of it in one
assert edge_rise(b) > 5 * edge_rise(g) and flat_noise(b) < 0.25 * flat_noise(noisy_step.astype(float))
# --8<-- [end:bilateral]
print(f"bilateral: flat noise gauss {flat_noise(g):.2f} bilateral {flat_noise(b):.2f}; "
      f"edge rise gauss {edge_rise(g):.3f} bilateral {edge_rise(b):.3f}")


# --8<-- [start:otsu]
def otsu_threshold(img: np.ndarray) -> int:
    """The grey level t maximising the between-class variance w0*w1*(mu0 - mu1)^2 of {<= t} and {> t}."""
    p = np.bincount(img.ravel(), minlength=256).astype(np.float64)
    p /= p.sum()
    levels = np.arange(256)
    w0 = np.cumsum(p)                         # weight of the class {<= t}
    m0 = np.cumsum(p * levels)                # its first moment
    mu_total = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        # w0 w1 (mu0 - mu1)^2 rewritten with cumulative sums only: (mu_T w0 - m0)^2 / (w0 (1 - w0))
        between = (mu_total * w0 - m0) ** 2 / (w0 * (1.0 - w0))
    between[~np.isfinite(between)] = 0.0
    return int(np.argmax(between))


bimodal = np.clip(np.concatenate([rng.normal(70, 12, 6000), rng.normal(170, 20, 4000)]), 0, 255)
bimodal = bimodal.astype(np.uint8).reshape(100, 100)
for img in (camera, bimodal, noisy_step, gn):
    t_cv, mask_cv = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    t = otsu_threshold(img)
    assert t == int(t_cv)                     # the same threshold as OpenCV ...
    assert np.array_equal(mask_cv, np.where(img > t, 255, 0).astype(np.uint8))   # ... and the same mask
claim("t = 102", otsu_threshold(camera))
claim("t = 120", otsu_threshold(bimodal))

# A small object: 1% of the pixels at 170 over a background at 70. The histogram is no longer
# bimodal enough, and the threshold falls into the background mode.
small = np.clip(np.concatenate([rng.normal(70, 12, 9900), rng.normal(170, 12, 100)]), 0, 255)
small = small.astype(np.uint8).reshape(100, 100)
t_small = otsu_threshold(small)
claim("t = 72", t_small)
claim("41%", np.mean(small > t_small))       # of the image called foreground, for a 1% object
# --8<-- [end:otsu]
print(f"otsu: camera {otsu_threshold(camera)}, bimodal {otsu_threshold(bimodal)}")


# --8<-- [start:morphology]
# 12 discs of radius 9-14 px on a 256x256 mask, then 1.5% of the pixels flipped to foreground.
mask = np.zeros((256, 256), np.uint8)
centres = [(40 + 60 * (k % 4), 50 + 75 * (k // 4)) for k in range(12)]
for (cx, cy) in centres:
    cv2.circle(mask, (cx, cy), int(rng.integers(9, 15)), 255, -1)
specks = mask.copy()
specks[rng.random(mask.shape) < 0.015] = 255

kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
opened = cv2.morphologyEx(specks, cv2.MORPH_OPEN, kernel)     # erosion, then dilation

n_clean = cv2.connectedComponents(mask, connectivity=8)[0] - 1     # label 0 is the background
n_specks = cv2.connectedComponents(specks, connectivity=8)[0] - 1
n_opened = cv2.connectedComponents(opened, connectivity=8)[0] - 1
assert n_clean == 12 and n_opened == 12
claim("892", n_specks - n_clean)
claim("904", n_specks)
# Opening removes everything the 5x5 disc cannot fit inside, and gives back the shapes it fits in.
changed = np.mean(opened != mask)
claim("under 0.1%", changed)

# The components' statistics: areas and centroids come with the labels.
n, labels, stats, centroids = cv2.connectedComponentsWithStats(opened, connectivity=8)
areas = stats[1:, cv2.CC_STAT_AREA]
assert np.allclose(np.sort(centroids[1:], axis=0), np.sort(np.array(centres, float), axis=0), atol=0.5)

# 4- against 8-connectivity: two squares touching only at a corner.
corner = np.zeros((8, 8), np.uint8)
corner[1:4, 1:4] = 255
corner[4:7, 4:7] = 255
claim("2 components", cv2.connectedComponents(corner, connectivity=4)[0] - 1)
claim("1 component", cv2.connectedComponents(corner, connectivity=8)[0] - 1)
# --8<-- [end:morphology]
print(f"components: clean {n_clean}, with specks {n_specks}, opened {n_opened}; changed {changed:.5f}; "
      f"areas {areas.min()}-{areas.max()}")

fig, axes = plt.subplots(1, 4, figsize=(12, 3.3))
crop = (slice(60, 260), slice(180, 380))
panels = [(sp, f"salt and pepper 10%: {psnr(camera, sp):.1f} dB"),
          (sp_gauss, f"Gaussian 5x5: {psnr(camera, sp_gauss):.1f} dB"),
          (sp_median, f"median 3x3: {psnr(camera, sp_median):.1f} dB")]
for ax, (img, title) in zip(axes, panels):
    ax.imshow(img[crop], cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
axes[3].plot(noisy_step.mean(axis=0)[40:88], "0.6", lw=1, label="noisy")
axes[3].plot(g.mean(axis=0)[40:88], "tab:red", lw=2, label="Gaussian σ=3")
axes[3].plot(b.mean(axis=0)[40:88], "tab:green", lw=2, label="bilateral")
axes[3].set_title("step edge, row-averaged profile", fontsize=9)
axes[3].set_xlabel("column")
axes[3].legend(fontsize=8)
save(fig, "classical-cv", "filters-denoise")
