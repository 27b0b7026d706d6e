"""Airport face recognition: the false-accept / false-reject trade-off from two score distributions,
and what 1:N search against a gallery does to false matches at airport scale."""
from __future__ import annotations

import math
from statistics import NormalDist

import matplotlib.pyplot as plt
import numpy as np
from _figures import save

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:scores]
# Cosine similarity between two face embeddings. Illustrative distributions: impostor pairs (two
# different people) centre near 0, genuine pairs (same person, live camera vs passport photo) near 0.6.
IMPOSTOR = NormalDist(mu=0.0, sigma=0.08)
GENUINE = NormalDist(mu=0.60, sigma=0.095)


def far(t: float) -> float:
    """False accept (false match) rate: an impostor pair scores at or above t. Upper tail via erfc,
    which stays accurate at 1e-9, where 1 - cdf would round to zero."""
    return 0.5 * math.erfc((t - IMPOSTOR.mean) / (IMPOSTOR.stdev * math.sqrt(2)))


def frr(t: float) -> float:
    """False reject (false non-match) rate: a genuine pair scores below t."""
    return GENUINE.cdf(t)


def threshold_for_far(target: float) -> float:
    return IMPOSTOR.mean - IMPOSTOR.stdev * NormalDist().inv_cdf(target)


t4, t6 = threshold_for_far(1e-4), threshold_for_far(1e-6)
assert abs(far(t6) - 1e-6) < 1e-9
# Tightening the threshold 100x on false accepts costs false rejects:
claim("0.07%", frr(t4)), claim("1.0%", frr(t6))

# The formula agrees with sampling: 2 million impostor and 200,000 genuine comparisons.
imp = rng.normal(IMPOSTOR.mean, IMPOSTOR.stdev, 2_000_000)
gen = rng.normal(GENUINE.mean, GENUINE.stdev, 200_000)
assert abs((imp >= t4).mean() - far(t4)) < 3e-5
assert abs((gen < t6).mean() - frr(t6)) < 1e-3
# --8<-- [end:scores]


# --8<-- [start:one-to-n]
def fpir(far_1to1: float, gallery_size: float) -> float:
    """False positive identification rate: a person who is NOT enrolled matches at least one of
    gallery_size enrolled templates, if comparisons are independent: 1 - (1 - FAR)^N ~ N * FAR."""
    return -math.expm1(gallery_size * math.log1p(-far_1to1))


assert math.isclose(fpir(1e-6, 300), 300e-6, rel_tol=1e-3)      # small N: N * FAR
claim("0.03%", fpir(1e-6, 300)), claim("9.5%", fpir(1e-6, 100_000))   # large N: no longer small

# Monte Carlo check of the formula at FAR = 1e-4, a 300-face gallery, 20,000 non-enrolled probes.
hits = (rng.normal(IMPOSTOR.mean, IMPOSTOR.stdev, (20_000, 300)) >= t4).any(axis=1)
assert abs(hits.mean() - fpir(1e-4, 300)) < 0.005               # about 3% of probes
claim("0.0296", fpir(1e-4, 300)), claim("0.0295", hits.mean())
# --8<-- [end:one-to-n]



# --8<-- [start:airport]
PASSENGERS_PER_DAY = 100_000          # assumed: a large hub's departing passengers


def false_matches_per_day(far_1to1: float, gallery_size: int, probes: int = PASSENGERS_PER_DAY) -> float:
    return probes * fpir(far_1to1, gallery_size)


# Boarding against the flight's own manifest (300 faces) vs against everyone flying today.
per_flight = false_matches_per_day(1e-6, 300)
whole_day = false_matches_per_day(1e-6, PASSENGERS_PER_DAY)
claim("30", per_flight), claim("9,516", whole_day)

# To bring the whole-day gallery down to 30 false matches a day, FAR must fall to about 3e-9:
needed = 30 / PASSENGERS_PER_DAY / PASSENGERS_PER_DAY
t_needed = threshold_for_far(needed)
assert abs(false_matches_per_day(needed, PASSENGERS_PER_DAY) - 30) < 0.1
claim("$3 \\times 10^{-9}$", needed)
claim("7.8%", frr(t_needed))                # ...which rejects this share of genuine travellers
claim("7,817", PASSENGERS_PER_DAY * frr(t_needed))

# Compute and storage are not the constraint: accuracy is.
TEMPLATE_BYTES = 512 * 4                  # a 512-d float32 embedding
claim("about 205 MB", TEMPLATE_BYTES * PASSENGERS_PER_DAY / 1e6)   # a whole day's templates
claim("153,600", 512 * 300), claim("307,200", 2 * 512 * 300)       # MACs and FLOPs for one flight
# --8<-- [end:airport]

# --8<-- [start:mated]
# FPIR is about NON-mated searches: the person is not in the gallery. At a boarding gate most
# searches are mated: the passenger is enrolled, and N - 1 templates are other people. Two outcomes:
#   wrong identity: some impostor scores above the threshold AND above the passenger's own score;
#   ambiguous: the passenger is found, but some impostor is above the threshold as well.
def mated_outcomes(far_1to1: float, gallery_size: int) -> tuple[float, float]:
    t = threshold_for_far(far_1to1)
    g = np.linspace(GENUINE.mean - 8 * GENUINE.stdev, GENUINE.mean + 8 * GENUINE.stdev, 20_001)
    density = np.array([GENUINE.pdf(x) for x in g])
    beaten = np.array([-math.expm1((gallery_size - 1) * math.log1p(-far(max(x, t)))) for x in g])
    wrong = float(np.trapezoid(density * beaten, g))       # an impostor ranks first, above t
    return wrong, fpir(far_1to1, gallery_size - 1)          # any impostor above t


wrong_300, ambiguous_300 = mated_outcomes(1e-6, 300)
wrong_day, ambiguous_day = mated_outcomes(1e-6, PASSENGERS_PER_DAY)
claim("0.16%", wrong_day)                 # enrolled passengers given the wrong identity, N = 100,000
claim("$5 \\times 10^{-6}$", wrong_300)    # ... and with one flight's 300 templates
claim("9.5%", ambiguous_day)              # enrolled, found, but with an impostor above t: to an agent
assert wrong_day < ambiguous_day / 50     # the security failure is far rarer than the usability one
# --8<-- [end:mated]


# --8<-- [start:throughput]
# Peak boarding: lanes needed to board a 300-seat flight, 1:1 (scan a token, then look at the
# camera) against walk-through 1:N. Seconds per passenger are assumptions to measure on site.
SEATS, BOARDING_MIN = 300, 15
for name, seconds in [("1:1 with a token", 4.0), ("walk-through 1:N", 3.0)]:
    per_lane_per_min = 60 / seconds
    lanes = math.ceil(SEATS / (per_lane_per_min * BOARDING_MIN))
    if name.startswith("1:1"):
        claim("15 passengers a minute", per_lane_per_min), claim("2 lanes", lanes)
    else:
        claim("20 a minute", per_lane_per_min), claim("1 lane", lanes)
# --8<-- [end:throughput]

print(f"threshold for FAR 1e-4: {t4:.3f} (FRR {frr(t4):.2%}); for FAR 1e-6: {t6:.3f} (FRR {frr(t6):.2%})")
print(f"FPIR at FAR 1e-6: N=300 {fpir(1e-6, 300):.2e}, N=100k {fpir(1e-6, 100_000):.3f}; "
      f"Monte Carlo FPIR at FAR 1e-4, N=300: {hits.mean():.4f} vs {fpir(1e-4, 300):.4f}")
print(f"false matches/day: per-flight gallery {per_flight:.0f}, whole-day gallery {whole_day:.0f}; "
      f"FAR needed {needed:.1e} -> threshold {t_needed:.3f}, FRR {frr(t_needed):.1%}")

fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.3))
ts = np.linspace(0.0, 0.7, 300)
a1.semilogy(ts, [far(t) for t in ts], c="tab:red", label="FAR")
a1.semilogy(ts, [frr(t) for t in ts], c="tab:green", label="FRR")
for t, name in [(t4, "FAR 1e-4"), (t6, "FAR 1e-6"), (t_needed, "FAR 3e-9")]:
    a1.axvline(t, c="0.4", ls=":", lw=1)
    a1.text(t, 1e-13, name, rotation=90, fontsize=7, ha="right", va="bottom")
a1.set(xlabel="threshold on cosine similarity", ylabel="error rate", ylim=(1e-13, 1.5),
       title="1:1 trade-off")
a1.legend(fontsize=7, loc="lower right")
ns = np.logspace(0, 6, 100)
for f in (1e-4, 1e-6, 1e-8):
    a2.loglog(ns, [fpir(f, n) for n in ns], label=f"FAR {f:.0e}")
a2.axhline(1e-3, c="0.6", ls="--", lw=0.8)
a2.text(1.2, 1.3e-3, "FPIR 0.1%", fontsize=7, color="0.4")
a2.set(xlabel="gallery size N", ylabel="FPIR", title="1:N false positives grow with N", ylim=(1e-8, 1.5))
a2.legend(fontsize=7, loc="lower right")
fig.tight_layout()
save(fig, "case-studies", "face-far-frr")
