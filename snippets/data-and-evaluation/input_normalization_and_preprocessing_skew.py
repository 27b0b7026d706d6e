"""Why normalise: the condition number sets how many gradient-descent steps a fit takes. What skew does: the
prediction changes from wrong normalisation constants, an RGB/BGR swap, and 0-255 inputs instead of 0-1."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from _nets import predict, small_cnn, train

from vault.claims import claim

rng = np.random.default_rng(0)
torch.manual_seed(0)

# --8<-- [start:conditioning]
# Two neighbouring pixels of 8-bit images as the inputs of a linear model: mean 120, std 50, correlation 0.6.
n = 5000
cov = 50.0**2 * np.array([[1.0, 0.6], [0.6, 1.0]])
pixels = rng.multivariate_normal([120.0, 120.0], cov, n)
target = pixels @ np.array([0.02, -0.01]) + 0.5 + rng.normal(0, 0.1, n)


def design(x: np.ndarray) -> np.ndarray:
    return np.column_stack([x, np.ones(len(x))])            # the weights and a bias


mu, sd = pixels.mean(0), pixels.std(0)
centred = pixels - mu
eigval, eigvec = np.linalg.eigh(np.cov(centred.T, bias=True))
INPUTS = {
    "raw 0-255": pixels,
    "divided by 255": pixels / 255,
    "standardised": (pixels - mu) / sd,                        # per-feature mean 0, std 1
    "whitened (PCA)": centred @ eigvec / np.sqrt(eigval),      # also decorrelated: covariance = identity
}


def gradient_descent(A: np.ndarray, b: np.ndarray, steps: int = 100_000, loop: int = 1_000) -> tuple[float, np.ndarray]:
    """Gradient descent on the least-squares loss |Aw - b|^2 / 2n from w = 0, with the step 1/L (L is the
    largest eigenvalue of the Hessian H = A^T A / n). Returns the condition number of H and the loss gap
    (loss minus its minimum) after each step, relative to the gap at the start."""
    H, g0 = A.T @ A / len(A), A.T @ b / len(A)
    lam, V = np.linalg.eigh(H)
    w_star = np.linalg.solve(H, g0)
    gap = lambda w: 0.5 * (w - w_star) @ H @ (w - w_star)   # exact for a quadratic loss
    # In the eigenbasis each error component shrinks by (1 - lam_i / L) per step: the whole history in closed form.
    c = V.T @ (0 - w_star)
    k = np.arange(1, steps + 1)[:, None]
    history = (0.5 * lam * c**2 * (1 - lam / lam[-1]) ** (2 * k)).sum(1) / gap(np.zeros(len(H)))
    w = np.zeros(len(H))                                    # the same thing, step by step, for the first steps
    for i in range(loop):
        w -= (H @ w - g0) / lam[-1]
        assert np.isclose(gap(w) / gap(np.zeros(len(H))), history[i], rtol=1e-6, atol=1e-12)
    return lam[-1] / lam[0], history


TOL = 1e-6
runs = {name: gradient_descent(design(x), target) for name, x in INPUTS.items()}
kappa = {name: k for name, (k, _) in runs.items()}
steps = {name: int(np.argmax(h <= TOL)) + 1 if (h <= TOL).any() else None for name, (_, h) in runs.items()}
claim(r"2.6\times10^{5}", kappa["raw 0-255"])
claim("97", kappa["divided by 255"])
claim("4.1", kappa["standardised"])                  # about (1 + 0.6) / (1 - 0.6), from the correlation alone
claim("1.0", kappa["whitened (PCA)"])
assert steps["raw 0-255"] is None                    # not converged within 100,000 steps
claim("567", steps["divided by 255"])
claim("22", steps["standardised"])
claim("1 step", steps["whitened (PCA)"])
# The rate is set by kappa: each step shrinks the slowest direction's error by (1 - 1/kappa), so the
# steps needed grow linearly with kappa, about (kappa / 2) ln(1 / TOL).
for name in ["divided by 255", "standardised"]:
    predicted = np.log(TOL) / (2 * np.log(1 - 1 / kappa[name]))
    assert 0.5 * predicted <= steps[name] <= 1.1 * predicted, name
claim("1.8 million", kappa["raw 0-255"] / 2 * np.log(1 / TOL) / 1e6, rel=0.05)   # what raw inputs would need
# --8<-- [end:conditioning]


# --8<-- [start:data]
# Two 3-class tasks on 16x16 RGB images, trained with the same pipeline:
#  - shape: a horizontal bar, a vertical bar or a disk, in a random colour on a random background,
#    so colour carries no information about the label;
#  - colour: a disk whose hue is red, yellow or green (colour is the label), on a grey background.
yy, xx = np.mgrid[0:16, 0:16]
HUES = np.array([[220, 40, 30], [225, 200, 40], [40, 170, 50]])


def draw(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 3, n)
    images = np.empty((n, 16, 16, 3), np.uint8)
    for i, c in enumerate(labels):
        cy, cx = rng.integers(5, 11, 2)
        r = rng.integers(2, 5)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        if kind == "shape":
            bar_h = (abs(yy - cy) <= 1) & (abs(xx - cx) <= r + 2)
            bar_v = (abs(xx - cx) <= 1) & (abs(yy - cy) <= r + 2)
            mask = [bar_h, bar_v, disk][c]
            fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            while np.abs(fg - bg).sum() < 150:                 # keep the shape visible
                fg = rng.uniform(0, 255, 3)
        else:
            mask, fg, bg = disk, HUES[c] + rng.normal(0, 20, 3), np.full(3, rng.uniform(90, 170))
        images[i] = (np.where(mask[..., None], fg, bg) + rng.normal(0, 8, (16, 16, 3))).clip(0, 255)
    return images, labels
# --8<-- [end:data]


# --8<-- [start:skew]
def fit_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the training set, on the 0-1 scale."""
    x = images.reshape(-1, 3) / 255.0
    return x.mean(0), x.std(0)


def preprocess(rgb: np.ndarray, mean, std, scale: float = 255.0, order=(0, 1, 2)) -> torch.Tensor:
    """The training pipeline: uint8 HWC RGB -> float, / 255, per-channel standardise, CHW."""
    x = (rgb[..., list(order)].astype(np.float32) / scale - mean) / std
    return torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float32)


IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
# Raw 0-255 ImageNet pixels against the unit scale initialisation assumes: their root-mean-square value.
claim("about 130", np.sqrt(np.mean((255 * IMAGENET_MEAN) ** 2 + (255 * IMAGENET_STD) ** 2)), tol=5)
skew = {}
for kind in ["shape", "colour"]:
    train_rgb, train_y = draw(kind, 1500)
    test_rgb, test_y = draw(kind, 600)
    mean, std = fit_stats(train_rgb)
    x_train = preprocess(train_rgb, mean, std)
    model = train(small_cnn(3, 3, width=8), x_train, torch.tensor(train_y), epochs=8, lr=1e-2)
    reference = predict(model, preprocess(test_rgb, mean, std))
    serving = {                                                  # each differs from training in one place
        "same pipeline": preprocess(test_rgb, mean, std),
        "ImageNet mean/std instead of the dataset's": preprocess(test_rgb, IMAGENET_MEAN, IMAGENET_STD),
        "BGR instead of RGB": preprocess(test_rgb, mean, std, order=(2, 1, 0)),
        "0-255 instead of 0-1 (no / 255)": preprocess(test_rgb, mean, std, scale=1.0),
    }
    skew[kind] = {}
    # The cheap guard: per-channel means of each 64-image serving batch, in standard deviations of the
    # same statistic over training batches (which are 0 on average after standardisation).
    batch_means = torch.stack([x_train[i:i + 64].mean(dim=(0, 2, 3)) for i in range(0, 1500 - 63, 64)])
    spread = batch_means.std(dim=0)
    for name, x in serving.items():
        p = predict(model, x)
        skew[kind][name] = {"accuracy": (p.argmax(1).numpy() == test_y).mean(),
                            "changed": (p.argmax(1) != reference.argmax(1)).float().mean().item(),
                            "confidence": p.max(1).values.mean().item(),
                            "prob shift": (p - reference).abs().sum(1).mean().item() / 2,
                            "alarm z": max((x[i:i + 64].mean(dim=(0, 2, 3)) / spread).abs().max().item()
                                           for i in range(0, 600 - 63, 64))}

s, c = skew["shape"], skew["colour"]
IMAGENET = "ImageNet mean/std instead of the dataset's"
BGR, NO_SCALE = "BGR instead of RGB", "0-255 instead of 0-1 (no / 255)"
claim("over 93%", s["same pipeline"]["accuracy"]), claim("100.0%", c["same pipeline"]["accuracy"])
# Wrong constants shift and rescale every channel: few predictions flip, but the probabilities move.
claim("under 2.1%", s[IMAGENET]["changed"]), claim("0.2%", c[IMAGENET]["changed"])
claim("0.011–0.038", s[IMAGENET]["prob shift"]), claim("0.036", c[IMAGENET]["prob shift"])
# BGR: mild where colour is noise (the shape model uses colour a little), ruinous where colour is the label.
claim("under 9%", s[BGR]["changed"]), claim("54.7–54.9%", c[BGR]["changed"])
assert s[BGR]["changed"] > 0.005                   # some shape predictions flip: that model uses colour a little
claim("less than 5 points", 100 * (s["same pipeline"]["accuracy"] - s[BGR]["accuracy"]))  # the accuracy lost
assert s[BGR]["accuracy"] < s["same pipeline"]["accuracy"]                                    # ... and it is lost
claim("45.1–45.3%", c[BGR]["accuracy"])
# No / 255: every input about 255 times too large. Wrong on both tasks, and certain.
claim("over 10%", s[NO_SCALE]["changed"]), claim("19–26%", c[NO_SCALE]["changed"])
assert s[NO_SCALE]["changed"] > max(s[IMAGENET]["changed"], s[BGR]["changed"])   # the worst skew for shapes
claim("74–81%", c[NO_SCALE]["accuracy"])
assert all(m[NO_SCALE]["accuracy"] < m["same pipeline"]["accuracy"] for m in (s, c))   # accuracy falls on both
claim("over 0.998", min(s[NO_SCALE]["confidence"], c[NO_SCALE]["confidence"]))
claim("0.93–0.97", s["same pipeline"]["confidence"])
assert s[NO_SCALE]["confidence"] > s["same pipeline"]["confidence"]               # ...and it grows more certain
# The input-statistics alarm (largest |z| over 9 serving batches): the scale bug is unmissable; the
# channel swap barely moves the channel means.
claim("3.6", max(s["same pipeline"]["alarm z"], c["same pipeline"]["alarm z"]))
claim("7.6", c[BGR]["alarm z"]), claim("1.8", s[BGR]["alarm z"])   # random colours: R and B look alike
claim("over 4,000", min(s[NO_SCALE]["alarm z"], c[NO_SCALE]["alarm z"]))
claim("4.6", s[IMAGENET]["alarm z"]), claim("5.1", c[IMAGENET]["alarm z"])   # wrong constants: as marginal as BGR
# --8<-- [end:skew]



for kind in skew:
    for name, r in skew[kind].items():
        print(kind, name, {k: round(float(v), 4) for k, v in r.items()})
print({k: (f"{kappa[k]:.3g}", steps[k]) for k in INPUTS})

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
fig.subplots_adjust(wspace=0.3)
for name, (_, history) in runs.items():
    gaps = np.r_[1.0, history]                               # step 0 is the start, gap 1
    at = np.unique(np.geomspace(1, len(gaps), 300).astype(int)) - 1   # log-spaced steps: the same curve, 300 points
    ax1.loglog(at + 1, np.maximum(gaps[at], 1e-17), label=f"{name} (κ = {kappa[name]:.2g})")
ax1.axhline(TOL, c="0.5", ls=":", lw=1)
ax1.set(xlabel="gradient-descent steps + 1", ylabel="loss gap / initial gap", ylim=(1e-9, 2), xlim=(1, 1e5),
        title="Least squares on two pixels: same data, four scalings")
ax1.legend(fontsize=8, loc="lower left")
names = ["same pipeline", IMAGENET, BGR, NO_SCALE]
short = ["same pipeline", "ImageNet\nmean/std", "BGR", "no / 255"]
for j, kind in enumerate(["shape", "colour"]):
    ax2.bar(np.arange(4) + 0.4 * j, [100 * skew[kind][n]["changed"] for n in names], width=0.38,
            label=f"{kind} task")
ax2.set_xticks(np.arange(4) + 0.2, short, fontsize=8)
ax2.set(ylabel="test predictions changed (%)", title="One serving-side change each")
ax2.legend(fontsize=8)
save(fig, "data-and-evaluation", "input-normalization-skew", exact=False)
