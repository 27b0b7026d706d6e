"""A/B testing a model: sample size and power for a CTR lift (checked by simulation), the significance test,
guardrails, a sample-ratio-mismatch check, the cost of peeking, and cluster randomisation."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from scipy import stats

from vault.claims import claim

rng = np.random.default_rng(0)
z = stats.norm.ppf


# --8<-- [start:sample-size]
def n_per_arm(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm for a two-sided two-proportion z-test to detect p1 -> p2."""
    p_bar = (p1 + p2) / 2
    num = (z(1 - alpha / 2) * math.sqrt(2 * p_bar * (1 - p_bar))
           + z(power) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2
    return math.ceil(num / (p2 - p1) ** 2)


def two_proportion_test(clicks_a, n_a, clicks_b, n_b):
    """Pooled z statistic and two-sided p-value; works on arrays of experiments too."""
    p_pool = (clicks_a + clicks_b) / (n_a + n_b)
    se = np.sqrt(p_pool * (1 - p_pool) * (1 / n_a + 1 / n_b))
    zs = (clicks_b / n_b - clicks_a / n_a) / se
    return zs, 2 * stats.norm.sf(np.abs(zs))


n = n_per_arm(0.10, 0.105)
claim("57,763", n)                                   # a 5% relative lift on a 10% per-user click rate
claim("about 58,000", n, tol=500)
claim("14,751", n_per_arm(0.10, 0.11))               # twice the lift, about a quarter of the users
claim("77,328", n_per_arm(0.10, 0.105, power=0.9))   # 90% power costs a third more
claim("2.9 days", n / 20_000)                        # at 20,000 new users per arm a day

# Check by simulation: 4,000 experiments of n users per arm.
sims = 4000
clicks_a = rng.binomial(n, 0.10, sims)
power_sim = (two_proportion_test(clicks_a, n, rng.binomial(n, 0.105, sims), n)[1] < 0.05).mean()
false_pos = (two_proportion_test(clicks_a, n, rng.binomial(n, 0.10, sims), n)[1] < 0.05).mean()
claim("80.2%", power_sim)                            # the formula's 80% power holds
claim("5.3%", false_pos)                             # and the test keeps its 5% error rate under A = B
# --8<-- [end:sample-size]


# --8<-- [start:analysis]
# One experiment: the new ranking model (B) against production (A), n users each.
a_clicks, b_clicks = rng.binomial(n, 0.100), rng.binomial(n, 0.105)
z_stat, p_value = two_proportion_test(a_clicks, n, b_clicks, n)
diff = b_clicks / n - a_clicks / n
se = math.sqrt((a_clicks / n) * (1 - a_clicks / n) / n + (b_clicks / n) * (1 - b_clicks / n) / n)
ci = (diff - 1.96 * se, diff + 1.96 * se)
assert (p_value < 0.05) == (ci[0] > 0 or ci[1] < 0)   # the test and the interval agree
claim("$p = 0.30$", p_value)                          # B really is 5% better, and the test misses it
claim("-0.16", 100 * ci[0])                           # the interval, in percentage points
claim("+0.53", 100 * ci[1])

# Over the 4,000 simulated experiments above, the 95% interval covers the true lift 95% of the time.
b_sim = rng.binomial(n, 0.105, sims)
d_sim = (b_sim - clicks_a) / n
se_sim = np.sqrt(clicks_a / n * (1 - clicks_a / n) / n + b_sim / n * (1 - b_sim / n) / n)
coverage = ((d_sim - 1.96 * se_sim < 0.005) & (0.005 < d_sim + 1.96 * se_sim)).mean()
claim("94.8%", coverage)


def sample_ratio_mismatch(n_a: int, n_b: int, expected_share_a: float = 0.5) -> float:
    """Chi-square p-value that the observed split matches the intended one. A tiny p means the
    assignment or logging is broken, and the experiment's results cannot be trusted."""
    total = n_a + n_b
    return float(stats.chisquare([n_a, n_b], [total * expected_share_a, total * (1 - expected_share_a)]).pvalue)


assert sample_ratio_mismatch(57_763, 57_763) > 0.5
claim("1.9\\times10^{-4}", sample_ratio_mismatch(57_763, 56_500))   # 2% missing from B: its timeouts not logged


def guardrails(lat_a: np.ndarray, lat_b: np.ndarray, err_a: int, err_b: int, n_arm: int) -> list[str]:
    """The new model must not win on clicks by losing on latency or reliability."""
    problems = []
    if np.percentile(lat_b, 95) > 1.10 * np.percentile(lat_a, 95):
        problems.append("p95 latency more than 10% worse")
    zs, p = two_proportion_test(err_a, n_arm, err_b, n_arm)
    if zs > 0 and p / 2 < 0.05:                                        # one-sided: B has more errors
        problems.append("error rate significantly higher")
    return problems


lat_a = rng.lognormal(np.log(40), 0.3, 10_000)                          # ms
lat_b = rng.lognormal(np.log(48), 0.3, 10_000)                          # a heavier model
assert guardrails(lat_a, lat_a * 1.02, 60, 66, n) == []
assert guardrails(lat_a, lat_b, 60, 110, n) == ["p95 latency more than 10% worse", "error rate significantly higher"]
# --8<-- [end:analysis]


# --8<-- [start:peeking]
# Peeking: testing after every 1/20 of the planned sample and stopping at the first p < 0.05, with A = B.
peeks, sims = 20, 4000
step = n // peeks
ca = rng.binomial(step, 0.10, (sims, peeks)).cumsum(1)
cb = rng.binomial(step, 0.10, (sims, peeks)).cumsum(1)
looked = step * np.arange(1, peeks + 1)
p_peek = two_proportion_test(ca, looked, cb, looked)[1]
fpr_peeking = (p_peek < 0.05).any(axis=1).mean()
claim("24.8%", fpr_peeking)                        # "5%" false positives become a quarter
claim("64%", 1 - 0.95 ** 20)                       # 20 independent metrics: P(at least one moves by chance)

# Randomising by store (cluster), not by image: the design effect inflates the sample size.
images_per_store, icc, stores = 1000, 0.01, 40
design_effect = 1 + (images_per_store - 1) * icc
claim("10.99", design_effect)
# Simulated: store rates ~ Beta(a, b) with mean 0.1 and ICC 1 / (a + b + 1) = 0.01, 40 stores per arm.
sim = np.random.default_rng(1)                     # its own generator, so the figure below keeps its data
rates = sim.beta(9.9, 89.1, (4000, stores))
store_mean = sim.binomial(images_per_store, rates).sum(1) / (stores * images_per_store)
de_sim = store_mean.var() / (0.1 * 0.9 / (stores * images_per_store))
claim("10.8", de_sim)                              # the variance of the arm's rate, against i.i.d. images

# CUPED: subtract theta * (x - mean x), x = a pre-experiment covariate correlated rho = 0.5 with y.
x = sim.standard_normal((2, 40_000, 50))           # arm, experiment, user
y = 0.5 * x + math.sqrt(1 - 0.5 ** 2) * sim.standard_normal(x.shape)
xc, yc = x - x.mean((0, 2), keepdims=True), y - y.mean((0, 2), keepdims=True)
theta = (xc * yc).sum((0, 2), keepdims=True) / (xc ** 2).sum((0, 2), keepdims=True)
y_cuped = y - theta * xc
lift, lift_cuped = y[1].mean(1) - y[0].mean(1), y_cuped[1].mean(1) - y_cuped[0].mean(1)
claim("0.74", lift_cuped.var() / lift.var())       # (1 - rho^2)(1 - 1/2n) = 0.7425 with theta fitted in-sample
# --8<-- [end:peeking]


# --8<-- [start:ratio-metric]
# CTR as clicks / impressions, randomised by user: each user sees several impressions and has their own
# click propensity, so impressions are not independent. 1,000 A/A experiments of 1,000 users per arm.
imps = 1 + sim.poisson(9, (2, 1000, 1000))               # arm, experiment, user
clicks = sim.binomial(imps, sim.beta(0.5, 4.5, imps.shape))   # per-user CTR, mean 10%
ctr = clicks.sum(-1) / imps.sum(-1)


def delta_var(c: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Var(sum c / sum i) over users, by the delta method (Deng, Knoblich & Lu, 2018)."""
    mc, mi = c.mean(-1), i.mean(-1)
    vc, vi = c.var(-1, ddof=1), i.var(-1, ddof=1)
    cov = ((c - mc[..., None]) * (i - mi[..., None])).sum(-1) / (c.shape[-1] - 1)
    return (vc / mi ** 2 - 2 * mc * cov / mi ** 3 + mc ** 2 * vi / mi ** 4) / c.shape[-1]


diff = ctr[1] - ctr[0]                                   # A = B: every "win" is a false positive
se_naive = np.sqrt((ctr * (1 - ctr) / imps.sum(-1)).sum(0))   # as if each impression were a coin flip
se_delta = np.sqrt(delta_var(clicks, imps).sum(0))
claim("1.6×", diff.std() / se_naive.mean())               # the naive standard error is too small
claim("within 2%", diff.std() / se_delta.mean() - 1)      # the delta method gets it right
claim("23%", (np.abs(diff / se_naive) > 1.96).mean())     # an A/A test "wins" 23% of the time
claim("4.8%", (np.abs(diff / se_delta) > 1.96).mean())    # and 5% with the right variance
# --8<-- [end:ratio-metric]

sizes = np.array([5_000, 15_000, 30_000, 45_000, 57_763, 80_000, 110_000])
grid = np.linspace(2_000, 115_000, 200)
theory = stats.norm.cdf((0.005 - z(0.975) * np.sqrt(2 * 0.1025 * 0.8975 / grid))
                        / np.sqrt((0.09 + 0.105 * 0.895) / grid))
simulated = [(two_proportion_test(rng.binomial(m, 0.10, 4000), m, rng.binomial(m, 0.105, 4000), m)[1]
              < 0.05).mean() for m in sizes]
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot(grid / 1000, theory, "-", label="normal approximation")
ax.plot(sizes / 1000, simulated, "o", label="simulation (4,000 experiments each)")
ax.axhline(0.8, color="0.5", ls="--", lw=1)
ax.axvline(n / 1000, color="0.5", ls=":", lw=1)
ax.text(n / 1000 + 2, 0.3, f"n = {n:,} per arm", fontsize=8)
ax.set(xlabel="users per arm (thousands)", ylabel="power",
       title="Detecting a CTR lift from 10.0% to 10.5% at α = 0.05")
ax.legend(fontsize=8, loc="lower right")
save(fig, "production", "ab-power-curve")

print(f"n per arm {n}; simulated power {power_sim:.3f}; false positives {false_pos:.3f}; "
      f"with peeking {fpr_peeking:.3f}; "
      f"CI coverage {coverage:.3f}; SRM p {sample_ratio_mismatch(57_763, 56_500):.1e}")
print(f"one experiment: A {a_clicks / n:.4f}, B {b_clicks / n:.4f}, z {z_stat:.2f}, p {p_value:.4f}, "
      f"95% CI for the lift [{ci[0]:.4f}, {ci[1]:.4f}]")
