"""Near-duplicates across a random split inflate accuracy; a grouped split does not; a perceptual hash finds the
groups.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from _figures import save
from scipy import ndimage
from scipy.fft import dctn
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.stats import binom
from sklearn.datasets import load_digits
from sklearn.linear_model import RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier

from vault.claims import claim

rng = np.random.default_rng(0)

# --8<-- [start:data]
# 250 "scenes", each photographed 8 times: a burst, or frames of one video. A scene is a handwritten
# digit (scikit-learn's bundled digits, upsampled to 32x32) under its own lighting gradient; the shots
# differ by a sub-pixel shift, blur, exposure and sensor noise, as consecutive frames do.
digits = load_digits()
N_SCENES, SHOTS = 250, 8
yy, xx = np.mgrid[0:32, 0:32] / 31 - 0.5


def scene(i: int) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.25 + 0.35 * rng.uniform(0.5, 1) * (xx * np.cos(angle) + yy * np.sin(angle))
    return np.maximum(light, ndimage.zoom(digits.images[i] / 16, 4, order=1)).clip(0, 1)


def shot(img: np.ndarray) -> np.ndarray:
    out = ndimage.shift(img, rng.uniform(-0.6, 0.6, 2), order=1, mode="nearest")
    out = ndimage.gaussian_filter(out, rng.uniform(0, 0.6))
    out = out * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    return (out + rng.normal(0, 0.03, out.shape)).clip(0, 1)


picked = rng.choice(len(digits.images), N_SCENES, replace=False)
scenes = [scene(i) for i in picked]
X = np.stack([shot(s) for s in scenes for _ in range(SHOTS)])      # 2,000 images
y = np.repeat(digits.target[picked], SHOTS)
group = np.repeat(np.arange(N_SCENES), SHOTS)                       # which scene each image shows
features = X.reshape(len(X), 16, 2, 16, 2).mean(axis=(2, 4)).reshape(len(X), -1)  # 16x16 pixels
# --8<-- [end:data]


# --8<-- [start:split]
def grouped_split(groups: np.ndarray, fractions: tuple[float, ...], rng) -> list[np.ndarray]:
    """Assign whole groups to train/val/test until each part holds its share of images.
    With every image its own group (groups = arange(n)) this is the plain random split."""
    order = rng.permutation(np.unique(groups))
    sizes = np.bincount(groups)[order]
    cuts = np.searchsorted(np.cumsum(sizes), np.cumsum(fractions)[:-1] * len(groups))
    parts = [np.flatnonzero(np.isin(groups, g)) for g in np.split(order, cuts)]
    for a in range(len(parts)):                     # no group may sit on two sides of a split
        for b in range(a + 1, len(parts)):
            assert not set(groups[parts[a]]) & set(groups[parts[b]])
    return parts


def accuracy(model, train: np.ndarray, test: np.ndarray) -> float:
    return model.fit(features[train], y[train]).score(features[test], y[test])


MODELS = {"1-NN": lambda: KNeighborsClassifier(n_neighbors=1), "linear": lambda: RidgeClassifier(alpha=1.0)}
SEEDS = range(10)
claim("10 splits", len(SEEDS))
results = {name: {"random": [], "grouped": []} for name in MODELS}
leaked = []                     # share of test images with a sibling (same scene) in train
for seed in SEEDS:
    for split, groups in [("random", np.arange(len(X))), ("grouped", group)]:
        train, val, test = grouped_split(groups, (0.7, 0.1, 0.2), np.random.default_rng(seed))
        for name, make in MODELS.items():
            results[name][split].append(accuracy(make(), train, test))
        if split == "random":
            leaked.append(np.isin(group[test], group[train]).mean())

mean = {name: {s: np.mean(v) for s, v in r.items()} for name, r in results.items()}
claim("100%", np.mean(leaked))                  # a random split leaves a sibling of every test image in train
claim("99.8%", mean["1-NN"]["random"])          # the memoriser finds each test image's sibling
claim("89.0%", mean["1-NN"]["grouped"])
claim("96.6%", mean["linear"]["random"])
claim("83.9%", mean["linear"]["grouped"])
claim("10.8 points", 100 * (mean["1-NN"]["random"] - mean["1-NN"]["grouped"]))
claim("12.7 points", 100 * (mean["linear"]["random"] - mean["linear"]["grouped"]))
for name in MODELS:                             # the random split wins on every one of the 10 seeds
    gaps = np.array(results[name]["random"]) - np.array(results[name]["grouped"])
    claim("at least 3.6 points", 100 * gaps.min())
# Images of one scene are right or wrong together, so the test set holds far less evidence than its
# image count suggests: its effective size is nearer the number of scenes.
claim("10.5 points", 100 * np.ptp(results["1-NN"]["grouped"]))   # best minus worst grouped split
train, val, test = grouped_split(group, (0.7, 0.1, 0.2), np.random.default_rng(0))
correct = KNeighborsClassifier(n_neighbors=1).fit(features[train], y[train]).predict(features[test]) == y[test]
per_scene = np.array([correct[group[test] == g].mean() for g in np.unique(group[test])])
se_images = np.sqrt(correct.mean() * (1 - correct.mean()) / len(test))   # binomial: images independent
se_scenes = per_scene.std(ddof=1) / np.sqrt(len(per_scene))              # scenes independent
claim("408 images", len(test)), claim("51 scenes", len(per_scene))
claim("1.4 points", 100 * se_images), claim("3.5 points", 100 * se_scenes)
# --8<-- [end:split]


# --8<-- [start:phash]
def phash(img: np.ndarray) -> np.ndarray:
    """64-bit DCT hash: the 8x8 lowest frequencies of a 32x32 grey image, each bit = above the median."""
    low = dctn(img, norm="ortho")[:8, :8].ravel()
    return np.packbits(low > np.median(low[1:])).view(np.uint64)[0]   # the median skips the DC term


hashes = np.array([phash(img) for img in X])
hamming = np.bitwise_count(hashes[:, None] ^ hashes[None, :])     # 2,000 x 2,000 distances, 0..64
assert (np.bitwise_count(hashes) == 32).all()   # DC bit set + 31 of 63 above their median: 32 ones
assert (hamming % 2 == 0).all()                 # so two hashes always differ in an even number of bits
pairs = np.triu_indices(len(X), 1)
same = group[pairs[0]] == group[pairs[1]]


# Duplicates are transitive: link every pair under the threshold, take connected components,
# and split by component, as if the scenes were unknown.
def hash_groups(threshold: int) -> np.ndarray:
    return connected_components(csr_matrix(hamming <= threshold), directed=False)[1]


table = {}
for t in (6, 8, 10):
    found = hash_groups(t)
    row = {"same linked": (hamming[pairs] <= t)[same].mean(), "other linked": (hamming[pairs] <= t)[~same].mean(),
           "scenes whole": np.mean([len(np.unique(found[group == g])) == 1 for g in range(N_SCENES)]),
           "largest": np.bincount(found).max(), "leaked": [], **{name: [] for name in MODELS}}
    for seed in SEEDS:
        train, val, test = grouped_split(found, (0.7, 0.1, 0.2), np.random.default_rng(seed))
        row["leaked"].append(np.isin(group[test], group[train]).mean())
        for name, make in MODELS.items():
            row[name].append(accuracy(make(), train, test))
    table[t] = {k: np.mean(v) for k, v in row.items()}
    for name in MODELS:                         # every threshold removes the inflation
        assert table[t][name] < mean[name]["random"] - 0.05

claim("73%", table[6]["same linked"]), claim("0.009%", table[6]["other linked"])
claim("89%", table[6]["scenes whole"]), claim("7.7%", table[6]["leaked"])
claim("89.3%", table[6]["1-NN"]), claim("80.2%", table[6]["linear"])
claim("90%", table[8]["same linked"]), claim("0.04%", table[8]["other linked"])
claim("98%", table[8]["scenes whole"]), claim("1.7%", table[8]["leaked"])
claim("85.9%", table[8]["1-NN"]), claim("77.2%", table[8]["linear"])
claim("97%", table[10]["same linked"]), claim("0.11%", table[10]["other linked"])
claim("100%", table[10]["scenes whole"]), claim("0.0%", table[10]["leaked"])
claim("73.9%", table[10]["1-NN"]), claim("62.5%", table[10]["linear"])
claim("72 images", table[8]["largest"]), claim("232 images", table[10]["largest"])
# Over-linking merges look-alike scenes: leakage falls, and the estimate drops below the honest one.
assert table[6]["leaked"] > table[8]["leaked"] > table[10]["leaked"]
assert all(table[10][name] < table[8][name] < mean[name]["grouped"] for name in MODELS)
# --8<-- [end:phash]


# --8<-- [start:size]
# How precise is a test-set accuracy? Binomial: the standard error of p from n images.
def accuracy_se(p: float, n: int) -> float:
    return np.sqrt(p * (1 - p) / n)


claim("±1.9 points", 100 * 1.96 * accuracy_se(0.9, 1000))   # 95% interval at 90%, n = 1,000
claim("±0.6 points", 100 * 1.96 * accuracy_se(0.9, 10000))
# Picking the best of 20 equally good models (true accuracy 90%) by their score on the same 1,000
# test images: with independent errors, the expected maximum of 20 binomials, against 90% for each.
k = np.arange(1001)
cdf = binom.cdf(k, 1000, 0.9)
expected_best = np.sum(1 - cdf[:-1] ** 20) / 1000              # E[max] = sum over k of P(max > k)
claim("91.7%", expected_best)
# --8<-- [end:size]


print({n: {s: f"{v:.3f}" for s, v in m.items()} for n, m in mean.items()}, f"leaked {np.mean(leaked):.4f}")
print({t: {k: round(float(v), 5) for k, v in row.items()} for t, row in table.items()})
print(f"SE images {se_images:.4f}, scenes {se_scenes:.4f}; best of 20 {expected_best:.4f}")

# The figure: shots of two scenes with their distances, the distance histograms, and the splits.
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1.3, 1.2, 1.2]})
fig.subplots_adjust(wspace=0.28)
montage = np.ones((2 * 44, 4 * 34))                 # 32x32 shots with a 12-px strip above each for its label
for row, s in enumerate([0, 1]):
    for col in range(4):
        montage[row * 44 + 11:row * 44 + 43, col * 34 + 1:col * 34 + 33] = X[s * SHOTS + col]
        axes[0].text(col * 34 + 17, row * 44 + 6, f"d = {hamming[s * SHOTS, s * SHOTS + col]}", ha="center",
                     va="center", fontsize=8)
axes[0].imshow(montage, cmap="gray", vmin=0, vmax=1)
axes[0].set(xticks=[], yticks=[], title="Shots of two scenes")
for side in axes[0].spines.values():
    side.set_visible(False)
bins = np.arange(0, 42, 2) - 1                      # balanced 64-bit hashes differ in an even number of bits
axes[1].hist(hamming[pairs][same], bins=bins, density=True, alpha=0.7, label="same scene")
axes[1].hist(hamming[pairs][~same], bins=bins, density=True, alpha=0.7, label="different scenes")
axes[1].axvline(9, c="k", ls="--", lw=1)
axes[1].set(xlabel="pHash Hamming distance (bits of 64)", ylabel="share of pairs", title="Pairs of images")
axes[1].legend(fontsize=8)
names = ["random", "pHash groups", "scenes"]
for j, name in enumerate(MODELS):
    vals = [mean[name]["random"], table[8][name], mean[name]["grouped"]]
    axes[2].bar(np.arange(3) + 0.38 * j, [100 * v for v in vals], width=0.36, label=name)
axes[2].set_xticks(np.arange(3) + 0.19, names, fontsize=8)
axes[2].set(ylim=(60, 101), ylabel="test accuracy (%)", title="Accuracy, mean of 10 splits")
axes[2].legend(fontsize=8, loc="upper right")
save(fig, "data-and-evaluation", "dataset-splits-leakage")
