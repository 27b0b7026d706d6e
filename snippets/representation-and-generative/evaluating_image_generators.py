"""Evaluating generators on synthetic features: FID written out against SciPy's matrix square root, its bias at
small sample sizes, the Inception Score's blind spots, and k-NN precision and recall catching the mode dropping
that a single FID number blurs."""
from __future__ import annotations

from itertools import pairwise

import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from scipy import linalg
from scipy.special import logsumexp

from vault.claims import claim

rng = np.random.default_rng(0)
D, K = 32, 10                                     # feature dimension (2,048 for Inception-v3), number of modes
MODES = rng.normal(0, 1.0, (K, D))                # the "classes" of the real data, in feature space
SPREAD = 0.5
MEAN, COV = MODES.mean(0), np.cov(MODES, rowvar=False, bias=True) + SPREAD**2 * np.eye(D)   # the real mixture's
aux = np.random.default_rng(1)                    # for the extra checks, so they leave the main draws as they are


def sample(n: int, modes: np.ndarray, spread: float = SPREAD) -> np.ndarray:
    """n feature vectors from an equal mixture of isotropic Gaussians around the given modes."""
    k = rng.integers(0, len(modes), n)
    return modes[k] + spread * rng.standard_normal((n, D))


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(sq, 0, None))


# --8<-- [start:fid]
def fid(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}), with the square root via a symmetric eigenproblem."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr (S_a S_b)^{1/2} = sum of sqrt(eig(S_a^{1/2} S_b S_a^{1/2})): a symmetric PSD matrix, so eigh is stable.
    w, V = np.linalg.eigh(s_a)
    root_a = (V * np.sqrt(np.clip(w, 0, None))) @ V.T
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_sqrt)


def fid_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """The reference formula, as the common implementations write it, with scipy.linalg.sqrtm."""
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


real, fake = sample(5000, MODES), sample(5000, MODES, spread=0.6)
assert abs(fid(real, fake) - fid_scipy(real, fake)) < 1e-6 * fid_scipy(real, fake)
# Two Gaussians: the closed form for N(0, I) against N(m, s^2 I) is ||m||^2 + D (1 - s)^2.
assert np.isclose(fid(rng.standard_normal((200_000, 4)), 0.5 + 2 * rng.standard_normal((200_000, 4))),
                  4 * 0.25 + 4 * 1.0, rtol=0.02)
# --8<-- [end:fid]

# --8<-- [start:bias]
# Two sets drawn from the SAME distribution: the true FID is 0, the estimate is not.
sizes = [250, 500, 1000, 2000, 5000, 20000]
fid_same = {n: np.mean([fid(sample(n, MODES), sample(n, MODES)) for _ in range(3)]) for n in sizes}
assert all(fid_same[a] > fid_same[b] for a, b in pairwise(sizes))    # falls monotonically with n
slope = np.polyfit(1 / np.array(sizes), [fid_same[n] for n in sizes], 1)[0]

# The bias is ~ c / n: FID at n samples against the FID the same two models would score with infinite samples.
good, worse = sample(50_000, MODES, spread=0.52), sample(50_000, MODES, spread=0.55)
fid_good_small = fid(real[:500], good[:500])
fid_worse_large = fid(real, worse[:5000])
fid_good_large = fid(real, good[:5000])
assert fid_good_large < fid_worse_large < fid_good_small        # the better model loses when scored on 500 samples
claim("1.4", fid_same[250])
claim("0.016", fid_same[20000])
claim("about 360", slope, tol=30)                 # FID of identical distributions ~ 360 / n here
claim("0.07", fid_good_large)
claim("0.14", fid_worse_large)
claim("0.66", fid_good_small)
# The mean term alone is E||mu_a - mu_b||^2 = 2 Tr(S) / n; the square-root term supplies the rest of the slope.
mean_term = 2 * np.trace(COV)
assert mean_term < slope / 2
# The floor grows with the feature dimension: for whitened features, n * FID is about D^2 / 2.
d_big, n_big = 128, 5000
white = fid(aux.standard_normal((n_big, d_big)), aux.standard_normal((n_big, d_big))) * n_big / d_big**2
claim("78", mean_term)                            # of the ~360 / n
claim("0.54", white)                    # n * FID / D^2 at D = 128
# --8<-- [end:bias]


# --8<-- [start:prd]
def knn_radius(x: np.ndarray, k: int = 3) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour in its own set (itself excluded)."""
    d = distances(x, x)
    return np.sort(d, axis=1)[:, k]


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkaanniemi et al. (2019): a sample is 'in' a manifold if it falls inside some k-NN ball of that set."""
    r_real, r_fake = knn_radius(real, k), knn_radius(fake, k)
    d = distances(fake, real)
    precision = (d <= r_real[None, :]).any(axis=1).mean()                   # fakes inside the real manifold
    recall = (d.T <= r_fake[None, :]).any(axis=1).mean()                    # reals inside the fake manifold
    return float(precision), float(recall)


n = 2000
real = sample(n, MODES)
models = {
    "all modes, faithful": sample(n, MODES),
    "drops 2 of 10 modes": sample(n, MODES[2:]),
    "all modes, extra noise": sample(n, MODES) + 0.7 * rng.standard_normal((n, D)),
}
# FID's blind spot: one Gaussian with the real features' mean and covariance, and no modes at all.
models["one Gaussian, moments matched"] = aux.multivariate_normal(MEAN, COV, n)
scores = {name: (fid(real, x), *precision_recall(real, x)) for name, x in models.items()}
(f_ok, p_ok, r_ok), (f_drop, p_drop, r_drop), (f_noise, p_noise, r_noise), (f_blob, p_blob, r_blob) = scores.values()
assert abs(f_drop - f_noise) < 0.1 * f_drop       # FID: about the same number for two different failures ...
assert p_drop > p_ok - 0.05 and r_drop < r_ok - 0.1   # ... precision/recall: dropping modes costs recall only
assert p_noise < 0.1 and r_noise > r_ok           # ... and off-manifold samples cost precision, not recall
claim("0.11", f_ok)
claim("0.71", p_ok)
claim("0.74", r_ok)
claim("3.7", f_drop)
claim("0.72", p_drop)
claim("0.58", r_drop)
claim("3.4", f_noise)
claim("0.01", p_noise)
claim("1.00", r_noise)
claim("within 10%", abs(f_drop - f_noise) / f_drop)
assert f_blob < 2 * f_ok < f_drop                 # FID: nearly as good as the faithful generator ...
claim("0.19", f_blob)
claim("0.002", p_blob)                            # ... while almost no sample lies on the real manifold
claim("0.90", r_blob)
# --8<-- [end:prd]


# --8<-- [start:is]
def class_posterior(x: np.ndarray) -> np.ndarray:
    """p(y | x) under the true mixture: the stand-in for the Inception classifier."""
    logits = -((x[:, None, :] - MODES[None]) ** 2).sum(-1) / (2 * SPREAD**2)
    return np.exp(logits - logsumexp(logits, axis=1, keepdims=True))


def inception_score(x: np.ndarray) -> float:
    """exp E_x KL(p(y|x) || p(y)): high when each sample is confident and the classes are varied."""
    p = class_posterior(x)
    p_y = p.mean(0)
    return float(np.exp((p * (np.log(p + 1e-12) - np.log(p_y + 1e-12))).sum(1).mean()))


is_scores = {name: inception_score(x) for name, x in models.items()}   # the moment-matched Gaussian too
is_scores["one copy per class"] = inception_score(np.repeat(MODES, n // K, axis=0))
assert max(is_scores, key=is_scores.get) == "one copy per class"   # IS is maximal for K prototypes
assert abs(is_scores["all modes, extra noise"] - is_scores["all modes, faithful"]) < 0.05   # and blind to noise
claim("9.99", is_scores["all modes, faithful"])
claim("7.99", is_scores["drops 2 of 10 modes"])
claim("9.97", is_scores["all modes, extra noise"])
claim("10.00", is_scores["one copy per class"])
claim("9.33", is_scores["one Gaussian, moments matched"])
# --8<-- [end:is]

print({k: tuple(round(v, 3) for v in sc) for k, sc in scores.items()}, is_scores)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
ns = np.array(sizes)
ax1.loglog(ns, [fid_same[m] for m in sizes], "o-", label="FID, two samples of the same distribution")
ax1.loglog(ns, slope / ns, "--", c="0.5", label="c / n fit")
ax1.set(xlabel="samples per set n", ylabel="FID", title="FID is biased upwards at small n")
ax1.legend(fontsize=7)
names = list(scores)
xs = np.arange(len(names))
ax2.bar(xs - 0.25, [scores[m][0] / max(f_drop, f_noise) for m in names], 0.25, label="FID (scaled to max)")
ax2.bar(xs, [scores[m][1] for m in names], 0.25, label="precision")
ax2.bar(xs + 0.25, [scores[m][2] for m in names], 0.25, label="recall")
ax2.set_xticks(xs, ["faithful", "drops modes", "extra noise", "one Gaussian"], fontsize=8)
ax2.set(title="What one FID number hides", ylim=(0, 1.15))
ax2.legend(fontsize=7, loc="upper left")
save(fig, "representation-and-generative", "generator-metrics")
