"""Noisy labels: test accuracy against the share of flipped training labels for a network that memorises them;
the clean-first, noise-later dynamics that small-loss selection exploits; confident learning, written out,
finding the flipped labels from out-of-fold probabilities; and the accuracy recovered by cleaning."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from _nets import train
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from torch import nn

from vault.claims import claim

rng = np.random.default_rng(0)

# --8<-- [start:data]
# scikit-learn's 8x8 digits (10 classes): 1,000 training images, 200 validation images whose labels are as
# noisy as the training labels (all a real project has), and 597 test images with clean labels.
X, y = load_digits(return_X_y=True)
order = rng.permutation(len(X))
X, y = X[order], y[order]
mu, sd = X[:1000].mean(0), X[:1000].std(0) + 1e-6
X = torch.tensor((X - mu) / sd, dtype=torch.float32)
tr, va, te = slice(0, 1000), slice(1000, 1200), slice(1200, None)
C = 10


def flip(labels: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric noise: each label, with probability `rate`, becomes one of the other C - 1 classes."""
    r = np.random.default_rng(seed)
    flipped = r.random(len(labels)) < rate
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + r.integers(1, C, flipped.sum())) % C
    return noisy, flipped


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, C))   # 19k weights for 1,000 images


class MLPs(nn.Module):
    """R copies of mlp() trained side by side, one per set of labels: the same initial weights and the same
    batches, but each copy has its own loss, gradient and Adam state, so it trains as it would alone."""

    def __init__(self, copies: int):
        super().__init__()
        one = mlp()
        self.w1, self.w2 = (nn.Parameter(layer.weight.T.repeat(copies, 1, 1)) for layer in (one[0], one[2]))
        self.b1, self.b2 = (nn.Parameter(layer.bias.repeat(copies, 1, 1)) for layer in (one[0], one[2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:                # (n, 64) -> logits (R, n, C)
        hidden = torch.relu(torch.baddbmm(self.b1, x.expand(len(self.w1), -1, -1), self.w1))
        return torch.baddbmm(self.b2, hidden, self.w2)


def per_copy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The sum of each copy's mean cross-entropy on its own labels (a label of -100 leaves an example out)."""
    return sum(nn.functional.cross_entropy(out, target) for out, target in zip(logits, labels.T))
# --8<-- [end:data]


# --8<-- [start:memorise]
EPOCHS, RATES = 20, [0.0, 0.2, 0.4, 0.6]


def fit(labels: list[np.ndarray], y_vals: list[np.ndarray], flipped: list[np.ndarray]) -> list[dict]:
    """Train one MLP per set of training labels (side by side) to the end, watching after each epoch: clean
    test accuracy, noisy validation accuracy, the per-example training loss, and the share of flipped labels
    each network reproduces."""
    target = torch.tensor(np.stack(labels, axis=1))              # (1,000, R)
    histories = [[] for _ in labels]

    def watch(epoch: int, model: nn.Module) -> None:
        with torch.no_grad():
            logits = model(X)                                    # every image, every copy
        predicted = logits.argmax(2).numpy()
        for r, history in enumerate(histories):
            history.append({"test": (predicted[r, te] == y[te]).mean(), "val": (predicted[r, va] == y_vals[r]).mean(),
                            "loss": nn.functional.cross_entropy(logits[r, tr], target[:, r].clamp(min=0),
                                                                reduction="none").numpy(),
                            "fits flipped": (predicted[r, tr] == labels[r])[flipped[r]].mean()
                            if flipped[r].any() else 0.0,
                            "probs": logits[r].softmax(1).numpy()})

    train(MLPs(len(labels)), X[tr], target, epochs=EPOCHS, lr=1e-2, batch=100, loss_fn=per_copy_loss,
          on_epoch=watch)
    runs = []
    for history, lab, flp in zip(histories, labels, flipped):
        stop = int(np.argmax([h["val"] for h in history]))      # early stopping on the NOISY validation set
        runs.append({"history": history, "stop": stop, "labels": lab, "flipped": flp,
                     "probs": history[-1]["probs"], "final": history[-1]["test"], "early": history[stop]["test"]})
    return runs


noisy = [flip(y[tr], rate, seed=1) for rate in RATES]
y_vals = [flip(y[va], rate, seed=2)[0] for rate in RATES]       # validation labels as noisy as the training labels
runs = dict(zip(RATES, fit([lab for lab, _ in noisy], y_vals, [flp for _, flp in noisy])))

final = {r: runs[r]["final"] for r in RATES}
early = {r: runs[r]["early"] for r in RATES}
claim("98.0%", final[0.0])
claim("83.9%", final[0.2]), claim("67.5%", final[0.4]), claim("40–41%", final[0.6])
assert final[0.0] > final[0.2] > final[0.4] > final[0.6]                 # every flipped label costs accuracy
claim("94.5%", runs[0.4]["history"][-1]["fits flipped"])                 # the network memorises the noise...
claim("7.0%", runs[0.4]["history"][runs[0.4]["stop"]]["fits flipped"])  # ...but only late
# early stopping keeps most of it
claim("97.8%", early[0.0]), claim("92.6%", early[0.2]), claim("87.9%", early[0.4]), claim("75.2%", early[0.6])
assert all(early[r] > final[r] + 0.1 for r in [0.4, 0.6])
# Symmetric noise keeps the ranking: a model with clean accuracy a scores (1 - r) a + r (1 - a) / (C - 1) on
# labels flipped at rate r, a line rising in a, so a noisy validation set still picks the right epoch.
clean = runs[0.0]["probs"][va].argmax(1)                        # the model trained on clean labels
a = (clean == y[va]).mean()
y_val = y_vals[RATES.index(0.4)]
predicted, measured = 0.6 * a + 0.4 * (1 - a) / (C - 1), (clean == y_val).mean()
claim("96.5%", a), claim("60.0%", measured), claim("58.1%", predicted)
assert abs(measured - predicted) < 2 * np.sqrt(predicted * (1 - predicted) / 200)   # within sampling error
claim("0.56", 1 - 0.4 * C / (C - 1))        # the slope: differences between models shrink by this factor
# --8<-- [end:memorise]


# --8<-- [start:small_loss]
def small_loss_recall(loss: np.ndarray, flipped: np.ndarray) -> float:
    """Flag the examples with the largest training loss, as many as there are flipped labels (in practice
    an estimate of the noise rate sets that number); the share of the flipped labels among them."""
    k = int(flipped.sum())
    return float(flipped[np.argsort(-loss)[:k]].mean())        # with k flags, precision = recall


run = runs[0.4]
recall_by_epoch = [small_loss_recall(h["loss"], run["flipped"]) for h in run["history"]]
claim("94.2%", recall_by_epoch[run["stop"]])                   # early, before the noise is memorised
claim("65.1%", recall_by_epoch[-1])                            # late: flipped labels now have small loss too
assert recall_by_epoch[run["stop"]] > recall_by_epoch[-1] + 0.2
# --8<-- [end:small_loss]


# --8<-- [start:confident]
def confident_learning(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confident learning (Northcutt et al., 2021) from out-of-sample probabilities: the threshold of class j
    is the mean probability of j over the examples labelled j. An example is confidently of class j when
    p_j reaches t_j (the most probable such j if several do). The confident joint counts (given label,
    confident class) pairs; an example off its diagonal is a label issue, and j is its suggested label."""
    thresholds = np.array([probs[labels == j, j].mean() for j in range(C)])
    above = probs >= thresholds
    confident = np.where(above.any(1), np.where(above, probs, -np.inf).argmax(1), -1)   # -1: no class is
    joint = np.zeros((C, C), int)
    np.add.at(joint, (labels[confident >= 0], confident[confident >= 0]), 1)
    issues = (confident >= 0) & (confident != labels)
    return issues, confident, joint


y_noisy, flipped = run["labels"], run["flipped"]
# Out-of-fold probabilities: each example is scored by a model that never saw its (noisy) label.
probs = cross_val_predict(LogisticRegression(C=0.1, max_iter=300), X[tr].numpy(), y_noisy,
                          cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
issues, suggested, joint = confident_learning(probs, y_noisy)
precision, recall = flipped[issues].mean(), issues[flipped].mean()
claim("85.8%", precision), claim("85.8%", recall)
claim("46.8%", (joint.sum() - np.trace(joint)) / joint.sum())  # the noise rate it estimates; the truth is below
claim("41.5%", flipped.mean())
claim("78.1%", (suggested[issues] == y[tr][issues]).mean())     # a flagged label's suggested class is right
# The same rule on the memorising network's own training-set probabilities finds almost nothing.
in_sample, _, _ = confident_learning(run["probs"][tr], y_noisy)
claim("0.0%", in_sample[flipped].mean())
# --8<-- [end:confident]


# --8<-- [start:fix]
removed, relabelled = fit([np.where(issues, -100, y_noisy), np.where(issues, suggested, y_noisy)], [y_val, y_val],
                         [flipped & ~issues, flipped & ~issues])      # -100: the flagged examples are left out
fixes = {"noisy labels": run, "flagged removed": removed, "flagged relabelled": relabelled}
for name, r in fixes.items():
    print(f"{name:20} test accuracy {r['final']:.3f} after {EPOCHS} epochs, {r['early']:.3f} early-stopped")
claim("88.8%", removed["final"]), claim("86.6%", relabelled["final"])
claim("91.5%", removed["early"]), claim("91.3%", relabelled["early"])
assert removed["final"] > run["final"] + 0.15 and removed["early"] > run["early"]
# --8<-- [end:fix]

for r in RATES:
    h = runs[r]["history"]
    print(r, "final", round(runs[r]["final"], 4), "early", round(runs[r]["early"], 4), "stop", runs[r]["stop"],
          "fits", [round(float(x["fits flipped"]), 3) for x in h[::3]],
          "test", [round(float(x["test"]), 3) for x in h[::3]])
print("small-loss recall by epoch", np.round(recall_by_epoch, 3))
print("CL", precision, recall, joint.sum(), issues.sum(),
      "removed stop", removed["stop"], "relabelled stop", relabelled["stop"])

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
fig.subplots_adjust(wspace=0.28)
pct = [100 * r for r in RATES]
ax1.plot(pct, [100 * final[r] for r in RATES], "o-", label=f"trained {EPOCHS} epochs (memorises)")
ax1.plot(pct, [100 * early[r] for r in RATES], "s-", label="early-stopped on noisy validation")
ax1.plot([40], [100 * removed["final"]], "*", ms=12, c="C2", label=f"40%, flagged labels removed, {EPOCHS} epochs")
ax1.set(xlabel="training labels flipped (%)", ylabel="clean test accuracy (%)", ylim=(30, 100),
        title="Digits, MLP: accuracy against label noise")
ax1.legend(fontsize=8, loc="lower left")
epochs = np.arange(1, EPOCHS + 1)
h = run["history"]
ax2.plot(epochs, [100 * e["test"] for e in h], label="clean test accuracy")
ax2.plot(epochs, [100 * e["fits flipped"] for e in h], label="flipped labels the network reproduces")
ax2.plot(epochs, [100 * v for v in recall_by_epoch], label="flipped labels among the largest losses")
ax2.axvline(run["stop"] + 1, c="0.5", ls=":", lw=1)
ax2.set(xlabel="epoch", ylabel="%", ylim=(0, 100), title="40% flipped: clean patterns first, noise later")
ax2.legend(fontsize=8, loc="lower right")
save(fig, "data-and-evaluation", "noisy-labels", exact=False)
