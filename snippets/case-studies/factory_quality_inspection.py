"""Factory quality inspection: the line-rate budget, pixel-to-millimetre arithmetic, a classical
sub-pixel measurement on synthetic backlit parts, and what cascading or fusing two stages does to
recall and false rejects."""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np

from _figures import save

rng = np.random.default_rng(0)


# --8<-- [start:budget]
PARTS_PER_MIN = 600
budget_ms = 60_000 / PARTS_PER_MIN                       # one part every 100 ms
sensor_px = 2448 * 2048                                  # a 5 MP machine-vision sensor, 8-bit mono
gige_bytes_per_s = 1e9 / 8                               # GigE Vision link, before protocol overhead
transfer_ms = sensor_px / gige_bytes_per_s * 1000
assert budget_ms == 100.0 and sensor_px == 5_013_504      # 5.0 MB per image
assert round(transfer_ms, 1) == 40.1                     # 40% of the budget just to move the image
assert transfer_ms + 15 > 60_000 / 1200                  # at 1,200/min (50 ms) transfer + 15 ms of work overflow
parts_per_day = PARTS_PER_MIN * 60 * 24
assert parts_per_day == 864_000
# --8<-- [end:budget]


# --8<-- [start:resolution]
FOV_MM, WIDTH_PX = 80.0, 2448
mm_per_px = FOV_MM / WIDTH_PX
tolerance_band_mm = 0.10                                 # +-0.05 mm on a nominal dimension
assert round(mm_per_px, 4) == 0.0327
assert round(tolerance_band_mm / mm_per_px, 2) == 3.06   # the whole band is 3 pixels wide...
assert round(tolerance_band_mm / 10 / mm_per_px, 2) == 0.31   # ...the 10:1 rule asks for 0.3 px
# --8<-- [end:resolution]


# --8<-- [start:render]
SIZE = 400                                               # image side, pixels
MM_PER_PX = 0.06                                         # this test rig: 24 mm field of view


def render_part(length_mm: float, width_mm: float, angle_deg: float, centre_px, rng) -> np.ndarray:
    """A backlit rectangular part: dark silhouette on a bright background. Each pixel gets the
    fraction of its area the part covers (exact for an axis-aligned part, a close approximation at
    the small tilts of a fixtured one), then the optics' blur and sensor noise."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    a = np.deg2rad(angle_deg)
    u = (xs - centre_px[0]) * np.cos(a) + (ys - centre_px[1]) * np.sin(a)
    v = -(xs - centre_px[0]) * np.sin(a) + (ys - centre_px[1]) * np.cos(a)
    half_l, half_w = length_mm / MM_PER_PX / 2, width_mm / MM_PER_PX / 2
    cover = np.clip(half_l + 0.5 - np.abs(u), 0, 1) * np.clip(half_w + 0.5 - np.abs(v), 0, 1)
    img = 220.0 - 190.0 * cover                                       # background 220, part 30
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(np.rint(img + rng.normal(0, 2.0, img.shape)), 0, 255).astype(np.uint8)
# --8<-- [end:render]


# --8<-- [start:measure]
def measure_contour(img: np.ndarray) -> tuple[float, float]:
    """Otsu threshold, largest contour, minimum-area rectangle: pixel-level edges."""
    _, mask = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    (_, _), (w, h), _ = cv2.minAreaRect(max(contours, key=cv2.contourArea))
    return max(w, h), min(w, h)


def measure_moments(img: np.ndarray, blur_sigma: float = 1.0) -> tuple[float, float]:
    """Sub-pixel: treat each pixel's grey level as the fraction of it the part covers, and read
    length and width from the second moments. For a uniform L x W rectangle the variance along
    its axes is L^2/12 and W^2/12; the optics' blur adds sigma^2, which calibration knows."""
    _, mask = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    near = cv2.dilate(mask, np.ones((9, 9), np.uint8)) > 0
    x, y, w, h = cv2.boundingRect(cv2.dilate(mask, np.ones((15, 15), np.uint8)))
    # Grey levels of bare background and of solid part, measured in this image (lighting drifts).
    bg = img[y:y + h, x:x + w][~near[y:y + h, x:x + w]].mean()
    fg = img[cv2.erode(mask, np.ones((9, 9), np.uint8)) > 0].mean()
    roi = (bg - img[y:y + h, x:x + w].astype(float)) / (bg - fg)     # coverage in [0, 1] + noise
    m = cv2.moments(roi.astype(np.float32))
    cov = np.array([[m["mu20"], m["mu11"]], [m["mu11"], m["mu02"]]]) / m["m00"]
    lam = np.sort(np.linalg.eigvalsh(cov))[::-1] - blur_sigma**2
    return float(np.sqrt(12 * lam[0])), float(np.sqrt(12 * lam[1]))


true_l, true_w = 16.0, 8.0
errors = {"contour": [], "moments": []}
for _ in range(16):
    img = render_part(true_l, true_w, rng.uniform(-2, 2), rng.uniform(180, 220, 2), rng)   # fixtured
    for name, fn in (("contour", measure_contour), ("moments", measure_moments)):
        l_px, w_px = fn(img)
        errors[name] += [l_px - true_l / MM_PER_PX, w_px - true_w / MM_PER_PX]
err = {k: np.abs(v) for k, v in errors.items()}
required_px = tolerance_band_mm / 10 / MM_PER_PX          # the 10:1 rule on this rig: 0.17 px
assert round(required_px, 2) == 0.17
assert err["moments"].max() < required_px / 3       # grey-level moments: comfortably inside
assert err["contour"].max() > required_px            # pixel-level edges are not enough
assert abs(err["contour"].max() - 0.67) < 0.02 and err["moments"].max() < 0.02
# --8<-- [end:measure]


# --8<-- [start:gauge]
# Calibrate the scale on a reference part of certified size, then measure production parts.
ref = render_part(20.0, 10.0, 0.5, (200, 200), rng)
scale = 20.0 / measure_moments(ref)[0]                     # mm per pixel, from the gauge block
assert abs(scale - MM_PER_PX) < 1e-4

NOMINAL, TOL = 16.0, 0.05
lengths = rng.normal(NOMINAL, 0.04, 40)                    # the process spreads about the nominal
measured = np.array([measure_moments(render_part(L, 8.0, rng.uniform(-2, 2), rng.uniform(180, 220, 2), rng))[0]
                     for L in lengths]) * scale
assert np.abs(measured - lengths).max() < 0.005            # millimetres: 5 um
# Every part more than 0.01 mm from a tolerance limit is judged right; parts closer than the
# measurement uncertainty are what a guard band (a narrower acceptance zone) is for.
in_tol_true = np.abs(lengths - NOMINAL) <= TOL
in_tol_meas = np.abs(measured - NOMINAL) <= TOL
clear = np.abs(np.abs(lengths - NOMINAL) - TOL) > 0.01
assert (in_tol_true == in_tol_meas)[clear].all() and (~in_tol_true).sum() >= 5   # some real rejects
# --8<-- [end:gauge]


# --8<-- [start:cascade]
DEFECT_RATE = 0.005                                        # 0.5% of parts carry a surface defect
r_pre, r_dl = 0.97, 0.99                                   # recall of a cheap pre-filter and of the DL model
f_pre, f_dl = 0.02, 0.01                                   # their false-reject rates on good parts

# Sequential gate: the DL model only sees what the pre-filter flags. Recall multiplies.
recall_gate = r_pre * r_dl
# Parallel fusion: reject when either stage flags. Misses multiply, false rejects add up.
recall_or = 1 - (1 - r_pre) * (1 - r_dl)
false_reject_or = 1 - (1 - f_pre) * (1 - f_dl)

escapes = lambda recall: parts_per_day * DEFECT_RATE * (1 - recall)   # noqa: E731
assert round(escapes(r_dl), 1) == 43.2                     # DL on every part
assert round(escapes(recall_gate), 1) == 171.5             # gated: four times as many escapes
assert round(escapes(recall_or), 2) == 1.30                # fused: almost none...
assert round(false_reject_or, 4) == 0.0298                 # ...for 3% of good parts sent to review

# Is the DL model on every part affordable? Assumed 3 ms classical + 25 ms DL, plus the transfer.
assert 40.1 + 3 + 25 < budget_ms
# --8<-- [end:cascade]

print(f"budget {budget_ms:.0f} ms/part, GigE transfer {transfer_ms:.1f} ms, {mm_per_px:.4f} mm/px")
print(f"max error: contour {err['contour'].max():.2f} px, moments {err['moments'].max():.3f} px; "
      f"gauge scale {scale:.5f} mm/px; max length error {np.abs(measured - lengths).max() * 1000:.1f} um")
print(f"escapes/day: DL alone {escapes(r_dl):.1f}, gated {escapes(recall_gate):.1f}, OR-fused "
      f"{escapes(recall_or):.2f} with {false_reject_or:.2%} false rejects")

fig, (a1, a2) = plt.subplots(1, 2, figsize=(7, 3.2))
show = render_part(true_l, true_w, 1.0, (200.3, 200.6), np.random.default_rng(1))
_, m = cv2.threshold(show, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
c = max(cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0], key=cv2.contourArea)
box = cv2.boxPoints(cv2.minAreaRect(c))
a1.imshow(show, cmap="gray")
a1.plot(*np.vstack([box, box[:1]]).T, c="tab:orange", lw=1)
a1.set_title("backlit part, 16 x 8 mm", fontsize=9)
a1.axis("off")
jit = np.random.default_rng(2)
for x, (name, label) in enumerate([("contour", "threshold +\ncontour"), ("moments", "grey-level\nmoments")]):
    a2.scatter(x + jit.uniform(-0.15, 0.15, len(err[name])), err[name], s=10, label=label)
a2.axhline(required_px, c="tab:red", ls="--", lw=1)
a2.text(0.5, required_px * 1.15, "10:1 rule for a 0.1 mm band", ha="center", fontsize=7, color="tab:red")
a2.set_yscale("log")
a2.set_xticks([0, 1], ["threshold + contour", "grey-level moments"], fontsize=8)
a2.set(ylabel="|error| (px)", title="Edge precision, 32 measurements each", xlim=(-0.5, 1.5))
fig.tight_layout()
save(fig, "case-studies", "inspection-measurement")
