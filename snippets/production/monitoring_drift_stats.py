"""Monitoring without labels: PSI and KS on an input feature, and confidence-based performance estimation (CBPE)
tracking accuracy under covariate shift, and missing concept drift."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from scipy import optimize, stats

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:psi]
def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index over deciles of the reference: sum (q - p) ln(q / p)."""
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.histogram(reference, edges)[0] / len(reference)
    q = np.histogram(current, edges)[0] / len(current)
    p, q = np.clip(p, eps, None), np.clip(q, eps, None)          # empty bins would give log(0)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_level(value: float) -> str:
    """The credit-scoring convention: < 0.1 stable, 0.1-0.25 investigate, > 0.25 act."""
    return "stable" if value < 0.1 else "investigate" if value < 0.25 else "act"


# With no drift PSI is not zero: its noise floor is about (bins - 1)(1/n + 1/m).
claim("0.036", 9 * (1 / 500 + 1 / 500))
claim("0.009", 9 * (1 / 2000 + 1 / 2000))
for n in (500, 2000, 10_000):
    null = [psi(rng.normal(size=n), rng.normal(size=n)) for _ in range(200)]
    assert abs(np.mean(null) / (9 * 2 / n) - 1) < 0.2
small_window_max = max(psi(rng.normal(size=500), rng.normal(size=500)) for _ in range(200))
claim("0.097", small_window_max)          # 500-sample windows come close to "investigate" on noise alone

# A mean shift of d standard deviations gives PSI close to d^2 (the J-divergence of two Gaussians).
for d in (0.32, 0.5):
    assert abs(np.mean([psi(rng.normal(size=5000), rng.normal(d, 1, 2000)) for _ in range(20)]) - d * d) < 0.03

# KS at production volume: a 0.02-sigma shift is "significant" and irrelevant. 50 repetitions, because
# one p-value at this effect size is a lottery ticket (anywhere from 1e-8 to 0.1).
n, reps = 100_000, 50
a, b = np.sort(rng.normal(size=(reps, n)), 1), np.sort(rng.normal(0.02, 1, (reps, n)), 1)
ecdf = lambda s, at: np.searchsorted(s, at, side="right") / len(s)
D = np.array([np.abs(ecdf(x, np.r_[x, y]) - ecdf(y, np.r_[x, y])).max() for x, y in zip(a, b)])
p_ks = stats.kstwobign.sf(D * np.sqrt(n * n / (n + n)))       # the asymptotic p-value, as ks_2samp uses here
claim("0.008", 0.02 * stats.norm.pdf(0))                       # the D the shift itself implies
claim("$D = 0.010$", np.median(D))
claim("8\\times10^{-5}", np.median(p_ks))
claim("94%", (p_ks < 0.01).mean())                             # "significant" nine times in ten
claim("below 0.01", max(psi(x, y) for x, y in zip(a[:10], b[:10])))   # while PSI says nothing happened
# --8<-- [end:psi]


# --8<-- [start:stream]
def sample_inputs(n: int, centre: float) -> np.ndarray:
    """x1: two blobs at +-centre (the informative feature); x2: irrelevant noise."""
    x1 = rng.normal(np.where(rng.random(n) < 0.5, -centre, centre), 1.0)
    return np.stack([x1, rng.normal(size=n)], axis=1)


def sample_labels(x: np.ndarray, boundary: float = 0.0) -> np.ndarray:
    """The true P(y=1 | x) = sigmoid(3 (x1 - boundary)); changing `boundary` is concept drift."""
    return (rng.random(len(x)) < 1 / (1 + np.exp(-3 * (x[:, 0] - boundary)))).astype(int)


def fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 20) -> np.ndarray:
    """Logistic regression by Newton's method; well specified here, hence calibrated."""
    X = np.c_[x, np.ones(len(x))]
    w = np.zeros(X.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-X @ w))
        w += np.linalg.solve(X.T @ (X * (p * (1 - p))[:, None]), X.T @ (y - p))
    return w


def predict_proba(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.c_[x, np.ones(len(x))] @ w))


x_ref = sample_inputs(20_000, centre=1.5)
w = fit_logistic(x_ref, sample_labels(x_ref))

# 30 days, 2,000 predictions a day. Days 10-19: the camera degrades, inputs slide towards the
# boundary (covariate shift). Day 20 on: camera fixed, but the defect specification changed (concept drift).
days = []
for day in range(30):
    centre = 1.5 - 0.12 * (day - 9) if 10 <= day <= 19 else 1.5
    boundary = 1.0 if day >= 20 else 0.0
    x = sample_inputs(2000, centre)
    y = sample_labels(x, boundary)                 # arrive days or weeks later
    proba = predict_proba(w, x)
    true_acc = float(((proba > 0.5) == y).mean())
    cbpe_acc = float(np.maximum(proba, 1 - proba).mean())     # needs no labels
    days.append((psi(x_ref[:, 0], x[:, 0]), true_acc, cbpe_acc))
psi_day, true_day, cbpe_day = map(np.array, zip(*days))
# --8<-- [end:stream]

# --8<-- [start:checks]
stable, covariate, concept = slice(0, 10), slice(17, 20), slice(20, 30)
assert (psi_day[stable] < 0.1).all()                                  # no false alarms
assert (psi_day[covariate] > 0.25).all()                              # the camera drift is flagged
claim("day 14", int(np.argmax(psi_day > 0.25)))                       # five days into it
claim("93.4%", true_day[stable].mean())                               # and it really costs accuracy:
claim("85.0%", true_day[covariate].mean())
claim("84.8%", cbpe_day[covariate].mean())                            # CBPE tracks it without labels
assert np.abs(cbpe_day - true_day)[:20].max() < 0.03
assert (psi_day[concept] < 0.1).all()                                 # concept drift: inputs look fine
claim("83.7%", true_day[concept].mean())
claim("93.3%", cbpe_day[concept].mean())                              # CBPE is blind; only labels see it

# How many labelled samples for a +-1 point 95% interval on a 90% accuracy?
n_labels = int(np.ceil(stats.norm.ppf(0.975) ** 2 * 0.9 * 0.1 / 0.01 ** 2))
claim("3,458", n_labels)
# --8<-- [end:checks]

# --8<-- [start:calibration]
# CBPE needs calibration on the *new* inputs. Here the truth has a 5% label-noise floor that a logistic
# model cannot represent; a temperature fitted on the reference makes it calibrated there, on average.
true_p = lambda x: 0.05 + 0.9 / (1 + np.exp(-6 * x[:, 0]))
x_cal = sample_inputs(20_000, centre=1.5)
y_cal = (rng.random(len(x_cal)) < true_p(x_cal)).astype(int)
w_mis = fit_logistic(x_cal, y_cal)
z_cal = np.c_[x_cal, np.ones(len(x_cal))] @ w_mis
acc_cal = float(((z_cal > 0) == y_cal).mean())
cbpe = lambda z, T: float(np.maximum(1 / (1 + np.exp(-z / T)), 1 / (1 + np.exp(z / T))).mean())
T = optimize.brentq(lambda t: cbpe(z_cal, t) - acc_cal, 0.1, 10)      # temperature scaling on the reference

x_new = sample_inputs(20_000, centre=0.42)                            # covariate shift towards the boundary
y_new = (rng.random(len(x_new)) < true_p(x_new)).astype(int)          # P(y | x) unchanged
z_new = np.c_[x_new, np.ones(len(x_new))] @ w_mis
acc_new, cbpe_new = float(((z_new > 0) == y_new).mean()), cbpe(z_new, T)
claim("92.5%", acc_cal)                                               # calibrated on the reference...
assert abs(cbpe(z_cal, T) - acc_cal) < 1e-6
claim("87.1%", acc_new)                                               # ...but not on the shifted inputs:
claim("83.0%", cbpe_new)                                              # the estimate is off by 4 points
# --8<-- [end:calibration]

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.3))
for ax in (ax1, ax2):
    ax.axvspan(9.5, 19.5, color="tab:orange", alpha=0.12, lw=0)
    ax.axvspan(19.5, 29.5, color="tab:purple", alpha=0.12, lw=0)
    ax.set_xlabel("day")
ax1.plot(psi_day, "o-", ms=3, color="tab:blue")
ax1.axhline(0.1, ls="--", color="0.5", lw=1)
ax1.axhline(0.25, ls="--", color="tab:red", lw=1)
ax1.text(0.3, 0.27, "0.25: act", fontsize=7, color="tab:red")
ax1.text(0.3, 0.12, "0.1: investigate", fontsize=7, color="0.4")
ax1.set(ylabel="PSI of input feature x1", title="Input drift (no labels needed)")
ax2.plot(true_day, "o-", ms=3, label="true accuracy (delayed labels)")
ax2.plot(cbpe_day, "s--", ms=3, label="CBPE estimate (no labels)")
ax2.set(ylabel="accuracy", title="Performance: estimated vs true")
ax2.text(10, 0.985, "covariate shift", fontsize=7, color="tab:orange")
ax2.text(20, 0.985, "concept drift", fontsize=7, color="tab:purple")
ax2.set_ylim(0.75, 1.0)
ax2.legend(fontsize=7, loc="lower left")
save(fig, "production", "monitoring-psi-cbpe")

print(f"PSI stable max {psi_day[stable].max():.3f}, covariate days 17-19 {np.round(psi_day[covariate], 2)}, "
      f"concept max {psi_day[concept].max():.3f}; 500-sample null max {small_window_max:.3f}")
print(f"accuracy stable {true_day[stable].mean():.3f}, covariate {true_day[covariate].mean():.3f} "
      f"(CBPE {cbpe_day[covariate].mean():.3f}), concept {true_day[concept].mean():.3f} "
      f"(CBPE {cbpe_day[concept].mean():.3f}); KS median D {np.median(D):.4f} p {np.median(p_ks):.1e}, "
      f"p < 0.01 in {(p_ks < 0.01).mean():.0%}; labels for +-1pt {n_labels}")
print(f"calibration under shift: reference accuracy {acc_cal:.3f}, shifted {acc_new:.3f}, CBPE {cbpe_new:.3f}")
