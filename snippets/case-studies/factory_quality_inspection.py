"""Factory quality inspection: the line-rate budget, pixel-to-millimetre arithmetic, a classical
sub-pixel measurement on synthetic backlit parts, and what cascading or fusing two stages does to
recall and false rejects."""
from __future__ import annotations

import math

import cv2
import matplotlib.pyplot as plt
import numpy as np
from _figures import save

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:budget]
PARTS_PER_MIN = 600
budget_ms = 60_000 / PARTS_PER_MIN                       # one part every 100 ms
sensor_px = 2448 * 2048                                  # a 5 MP machine-vision sensor, 8-bit mono
gige_bytes_per_s = 1e9 / 8                               # GigE Vision link, before protocol overhead
transfer_ms = sensor_px / gige_bytes_per_s * 1000
claim("100 ms per part", budget_ms)
claim("5.0 MB", sensor_px / 1e6)
claim("40.1 ms", transfer_ms)
parts_per_day = PARTS_PER_MIN * 60 * 24
claim("864,000", parts_per_day)
# --8<-- [end:budget]


# --8<-- [start:pipeline]
# The stages run as a pipeline: while part n is processed, part n+1 is on the wire. Throughput
# needs every stage to finish within the part interval; latency (the sum of the stages) must
# beat the time the part takes to reach the reject gate. Stage times are assumptions to measure.
STAGES_MS = {"GigE transfer": transfer_ms, "classical CV (CPU)": 3.0, "DL model (GPU)": 25.0,
             "decision and PLC": 2.0}
PITCH_M, GATE_M = 0.10, 0.60          # assumed: parts 100 mm apart, reject gate 0.6 m downstream
latency_ms = sum(STAGES_MS.values())
claim("70 ms", latency_ms)
for rate in (600, 1_200):
    interval_ms = 60_000 / rate
    belt_m_per_s = PITCH_M * rate / 60
    time_to_gate_ms = GATE_M / belt_m_per_s * 1000
    busiest = max(STAGES_MS.values()) / interval_ms        # utilisation of the slowest stage
    assert max(STAGES_MS.values()) < interval_ms and latency_ms < time_to_gate_ms
    if rate == 600:
        claim("600 ms", time_to_gate_ms)                    # at 1 m/s
    if rate == 1_200:
        claim("80%", busiest)                              # the link is the bottleneck, and it fits
        claim("300 ms", time_to_gate_ms)                    # the latency budget at 2 m/s
        claim("2 parts", math.ceil(latency_ms / interval_ms))   # in flight at once: tag results by part
# --8<-- [end:pipeline]


# --8<-- [start:resolution]
FOV_MM, WIDTH_PX = 80.0, 2448
mm_per_px = FOV_MM / WIDTH_PX
tolerance_band_mm = 0.10                                 # +-0.05 mm on a nominal dimension
claim("0.0327 mm", mm_per_px)
claim("about 3 pixels", tolerance_band_mm / mm_per_px, tol=0.1)   # the whole band: 3.06 px...
claim("0.3 px", tolerance_band_mm / 10 / mm_per_px)               # ...the 10:1 rule asks for this
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
claim("0.17 px", required_px)
assert err["moments"].max() < required_px / 3       # grey-level moments: comfortably inside
assert err["contour"].max() > required_px            # pixel-level edges are not enough
claim("0.67 px", err["contour"].max()), claim("under 0.02 px", err["moments"].max())
claim("4×", err["contour"].max() / required_px)
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
claim("within 2 µm", np.abs(measured - lengths).max() * 1000)   # in micrometres
# Every part more than 0.01 mm from a tolerance limit is judged right; parts closer than the
# measurement uncertainty are what a guard band (a narrower acceptance zone) is for.
in_tol_true = np.abs(lengths - NOMINAL) <= TOL
in_tol_meas = np.abs(measured - NOMINAL) <= TOL
clear = np.abs(np.abs(lengths - NOMINAL) - TOL) > 0.01
assert (in_tol_true == in_tol_meas)[clear].all() and (~in_tol_true).sum() >= 5   # some real rejects

# Guard band (ISO 14253-1): accept only inside the tolerance shrunk by the expanded uncertainty
# U = k u (k = 2), so that no accepted part can be out of tolerance by more than chance allows.
u_mm = np.std(measured - lengths, ddof=1)                  # standard uncertainty, from these parts
U_mm = 2 * u_mm
claim("0.5 µm", u_mm * 1000), claim("1.0 µm", U_mm * 1000)
claim("0.049 mm", TOL - U_mm)                              # the acceptance limits around nominal
accept = np.abs(measured - NOMINAL) <= TOL - U_mm
assert not (accept & ~in_tol_true).any()                   # no bad part accepted
assert (in_tol_true & ~accept).sum() <= 1                 # the price: good parts in the guard zone
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
claim("43.2", escapes(r_dl))                               # DL on every part
claim("171.5", escapes(recall_gate))                       # gated: four times as many escapes
claim("1.30", escapes(recall_or))                          # fused: almost none...
claim("2.98%", false_reject_or)                            # ...for 3% of good parts sent to review

# Which is better depends on what an escape costs against a false reject. Break-even ratio:
good_per_day = parts_per_day * (1 - DEFECT_RATE)
extra_false_rejects = good_per_day * (false_reject_or - f_dl)
escapes_saved = escapes(r_dl) - escapes(recall_or)
claim("406", extra_false_rejects / escapes_saved)          # fusion pays if an escape costs more

# Attribute agreement for the pass/fail labels: two inspectors who agree on 95% of parts, each
# calling 10% defective, agree far less than 95% beyond chance (Cohen's kappa).
p_observed, p_chance = 0.95, 0.9 * 0.9 + 0.1 * 0.1
claim("0.72", (p_observed - p_chance) / (1 - p_chance))
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
