"""Domain shift from a new camera: a two-sample test (MMD with a permutation test, and a domain classifier)
flags the new camera's images and passes a second batch from the old one; re-estimating batch-norm statistics
on unlabelled target images (AdaBN) recovers part of the lost accuracy, and more of it for the shifts that are
per-channel offsets and scales."""
from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from torch import nn

from _figures import save
from _nets import predict, train
from vault.claims import claim

rng = np.random.default_rng(0)
torch.manual_seed(0)

# --8<-- [start:cameras]
# Digits upsampled to 16x16 as the "old camera"; the "new camera" sees the same scenes with a different
# response: lower contrast, a brighter black level, a gamma curve, a softer lens and more sensor noise.
digits, labels = load_digits(return_X_y=True)
order = rng.permutation(len(digits))
scenes = np.kron(digits[order].reshape(-1, 8, 8) / 16.0, np.ones((2, 2)))   # 1,797 scenes in [0, 1]
labels = labels[order]


def old_camera(s: np.ndarray) -> np.ndarray:
    return s + rng.normal(0, 0.05, s.shape)


def new_camera(s: np.ndarray, blur: float = 0.7) -> np.ndarray:
    soft = gaussian_filter(s, sigma=(0, blur, blur)) if blur else s
    return 0.25 + 0.6 * soft ** 0.7 + rng.normal(0, 0.07, s.shape)


src_train, src_test = slice(0, 1000), slice(1000, 1400)          # labelled old-camera images
tgt = slice(1400, None)                                           # 397 scenes seen by the new camera
as_tensor = lambda a: torch.tensor(a[:, None], dtype=torch.float32)
x_train, x_src = as_tensor(old_camera(scenes[src_train])), as_tensor(old_camera(scenes[src_test]))
x_tgt = as_tensor(new_camera(scenes[tgt]))
x_tgt_soft = as_tensor(new_camera(scenes[tgt], blur=1.2))         # the same camera with a softer lens
mean, std = x_train.mean(), x_train.std()                         # input standardisation, fit on the source
norm = lambda x: (x - mean) / std
# --8<-- [end:cameras]


# --8<-- [start:detect]
def cnn(width: int = 8) -> nn.Sequential:
    """conv-BN-ReLU-pool twice, then a linear head on the flattened 4x4 maps (digits need the layout)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * width, 10))


model = train(cnn(), norm(x_train), torch.tensor(labels[src_train]), epochs=6, lr=1e-2)


@torch.no_grad()
def embed(x: torch.Tensor) -> np.ndarray:
    """The penultimate layer: the globally pooled features the classifier head sees."""
    return model[:-1](norm(x)).numpy()


def mmd2(k: np.ndarray, n: int) -> float:
    """Unbiased squared maximum mean discrepancy (Gretton et al., 2012) between the first n points and the
    rest, from their joint kernel matrix k."""
    m = len(k) - n
    kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
    return ((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
            - 2 * kab.mean())


NULLS: list[list[float]] = []


def mmd_test(a: np.ndarray, b: np.ndarray, permutations: int = 200, seed: int = 0) -> tuple[float, float]:
    """The permutation test: shuffle the domain labels, recompute MMD^2; the p-value is the share as large."""
    z = np.vstack([a, b])
    d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    k = np.exp(-d2 / np.median(d2))                     # RBF kernel, bandwidth by the median heuristic
    observed = mmd2(k, len(a))
    r = np.random.default_rng(seed)
    null = [mmd2(k[np.ix_(q, q)], len(a)) for q in (r.permutation(len(z)) for _ in range(permutations))]
    NULLS.append(null)
    return observed, (1 + sum(v >= observed for v in null)) / (1 + permutations)


def domain_auc(a: np.ndarray, b: np.ndarray) -> float:
    """A domain classifier: cross-validated ROC AUC of logistic regression telling the two sets apart."""
    z, d = np.vstack([a, b]), np.r_[np.zeros(len(a)), np.ones(len(b))]
    p = cross_val_predict(LogisticRegression(max_iter=1000), z, d, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                          method="predict_proba")[:, 1]
    return roc_auc_score(d, p)


ref, same_camera, new = embed(x_src[:200]), embed(x_src[200:]), embed(x_tgt[:200])
mmd_same, p_same = mmd_test(ref, same_camera)
mmd_new, p_new = mmd_test(ref, new)
auc_same, auc_new = domain_auc(ref, same_camera), domain_auc(ref, new)
claim("0.69", p_same), claim("0.005", p_new)              # 0.005 = 1/201: no permutation came close
claim("0.43", auc_same), claim("1.00", auc_new)
assert p_same > 0.05 and p_new < 0.01 and auc_new > 0.95
# --8<-- [end:detect]


# --8<-- [start:adabn]
def accuracy(m: nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    return float((predict(m, norm(x)).argmax(1).numpy() == y).mean())


@torch.no_grad()
def adabn(m: nn.Module, x: torch.Tensor) -> nn.Module:
    """AdaBN (Li et al., 2018): replace every BN layer's running mean and variance by those of the unlabelled
    target images; the learned weights, gamma and beta stay as they are."""
    for layer in m.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None                                 # a cumulative average over the target batches
    m.train()
    for i in range(0, len(x), 100):
        m(norm(x[i:i + 100]))
    return m.eval()



y_src, y_tgt = labels[src_test], labels[tgt]
acc = {"old camera": accuracy(model, x_src, y_src),
       "new camera": accuracy(model, x_tgt, y_tgt),
       "soft lens": accuracy(model, x_tgt_soft, y_tgt)}
adapted = adabn(copy.deepcopy(model), x_tgt)
adapted_soft = adabn(copy.deepcopy(model), x_tgt_soft)
acc["new camera + AdaBN"] = accuracy(adapted, x_tgt, y_tgt)
acc["soft lens + AdaBN"] = accuracy(adapted_soft, x_tgt_soft, y_tgt)
# The cheaper half-measure: give the target images the source's global mean and std at the input.
own = lambda x: (x - x.mean()) / x.std() * std + mean
acc["new camera, input re-standardised"] = accuracy(model, own(x_tgt), y_tgt)
acc["soft lens, input re-standardised"] = accuracy(model, own(x_tgt_soft), y_tgt)
gap_closed = lambda before, after: (acc[after] - acc[before]) / (acc["old camera"] - acc[before])
claim("97.5%", acc["old camera"]), claim("29.5%", acc["new camera"]), claim("11.1%", acc["soft lens"])
claim("96.0%", acc["new camera + AdaBN"]), claim("90.9%", acc["soft lens + AdaBN"])
claim("94.0%", acc["new camera, input re-standardised"]), claim("85.4%", acc["soft lens, input re-standardised"])
claim("98%", gap_closed("new camera", "new camera + AdaBN")), claim("92%", gap_closed("soft lens", "soft lens + AdaBN"))
assert acc["soft lens + AdaBN"] < acc["old camera"] - 0.05          # blur changes content, not only statistics
assert acc["new camera + AdaBN"] > acc["new camera, input re-standardised"]
claim("2.1%", np.sqrt(0.9 * 0.1 / 200))          # the standard error of an accuracy near 90% on 200 labels
for k, v in acc.items():
    print(f"{k:35} {v:.3f}")
# --8<-- [end:adabn]

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.3]})
fig.subplots_adjust(wspace=0.25)
ax1.hist(NULLS[1], bins=np.linspace(-0.002, 0.004, 25), color="0.7", label="null: old + new pooled, labels shuffled")
ax1.axvline(mmd_same, c="C0", label=f"old vs old camera (p = {p_same:.2f})")
ax1.axvline(mmd_new, c="C3", label=f"old vs new camera (p = {p_new:.3f})")
ax1.set_xscale("symlog", linthresh=1e-3)
ax1.set(xlabel="MMD² of penultimate-layer features (symlog)", ylabel="permutations", title="Two-sample test on 200 + 200 images")
ax1.legend(fontsize=8, loc="upper center")
groups = ["new camera", "soft lens"]
for j, (suffix, name) in enumerate([("", "source statistics"), (", input re-standardised", "input re-standardised"),
                                    (" + AdaBN", "AdaBN")]):
    ax2.bar(np.arange(2) + 0.27 * j, [100 * acc[g + suffix] for g in groups], width=0.25, label=name)
ax2.axhline(100 * acc["old camera"], c="k", ls=":", lw=1, label="old camera")
ax2.set_xticks(np.arange(2) + 0.27, ["new camera (tone, noise, mild blur)", "same, softer lens"], fontsize=9)
ax2.set(ylabel="test accuracy on the new camera (%)", ylim=(0, 125), yticks=range(0, 101, 20), title="What re-estimating statistics recovers")
ax2.legend(fontsize=8, loc="upper left", ncol=2)
save(fig, "data-and-evaluation", "domain-shift")
