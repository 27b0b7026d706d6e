"""Class imbalance 1:50: why accuracy misleads, class weights, resampling, focal loss, PR-AUC, thresholds."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)

# --8<-- [start:data]
D, RATIO = 10, 50                                      # 10 features, 50 negatives per positive


def make(n_pos: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Negatives ~ N(0, I); positives shifted by 1.5 along 4 of the 10 axes: they overlap."""
    gen = torch.Generator().manual_seed(seed)
    shift = torch.zeros(D)
    shift[:4] = 1.5
    neg = torch.randn(RATIO * n_pos, D, generator=gen)
    pos = torch.randn(n_pos, D, generator=gen) + shift
    return torch.cat([neg, pos]), torch.cat([torch.zeros(RATIO * n_pos), torch.ones(n_pos)])


X_train, y_train = make(200, seed=0)                   # 10,000 negatives, 200 positives
X_val, y_val = make(200, seed=1)                       # for choosing thresholds
X_test, y_test = make(1000, seed=2)                    # 50,000 negatives, 1,000 positives
prevalence = 1 / (RATIO + 1)
# --8<-- [end:data]


# --8<-- [start:metrics]
def precision_recall_f1(scores: np.ndarray, y: np.ndarray, threshold: float):
    pred = scores >= threshold
    tp = int((pred & (y == 1)).sum())
    precision = tp / max(int(pred.sum()), 1)
    recall = tp / int(y.sum())
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    """PR-AUC as AP: the mean of precision@k over the ranks k where a positive sits."""
    y_sorted = y[np.argsort(-scores)]
    precision_at_k = np.cumsum(y_sorted) / np.arange(1, len(y) + 1)
    return float(precision_at_k[y_sorted == 1].mean())


def roc_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), via ranks (Mann-Whitney U)."""
    ranks = np.argsort(np.argsort(scores)) + 1
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_f1_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """Threshold moving: the score cut-off that maximises F1 (pick it on validation data)."""
    order = np.argsort(-scores)
    tp = np.cumsum(y[order])
    f1 = 2 * tp / (np.arange(1, len(y) + 1) + y.sum())   # 2TP / (predicted pos + actual pos)
    return float(scores[order][np.argmax(f1)])
# --8<-- [end:metrics]


y_te = y_test.numpy().astype(int)

# --8<-- [start:baseline]
# The all-negative "classifier": 98% accuracy, zero recall.
all_negative = np.zeros(len(y_te))
accuracy = float((all_negative == y_te).mean())
assert abs(accuracy - RATIO / (RATIO + 1)) < 1e-12     # 50/51
claim("98.04%", accuracy)
assert precision_recall_f1(all_negative, y_te, 0.5)[1] == 0.0
# Balanced accuracy (the mean of the per-class recalls) is not fooled: 0.5, chance level.
balanced = 0.5 * (float((all_negative[y_te == 0] == 0).mean()) + float((all_negative[y_te == 1] == 1).mean()))
assert balanced == 0.5
# Random scores: ROC-AUC 0.5 whatever the imbalance, PR-AUC = prevalence (about 0.02).
random_scores = np.random.default_rng(0).random(len(y_te))
claim("0.5, whatever the imbalance", roc_auc(random_scores, y_te))
claim("the prevalence, 0.02", average_precision(random_scores, y_te))
# --8<-- [end:baseline]


# --8<-- [start:losses]
def focal_loss(logits, targets, gamma: float = 2.0, alpha: float | None = 0.25):
    """Lin et al. (2017): BCE scaled by (1 - p_t)^gamma, so confident, correct examples fade out."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = logits.sigmoid()
    p_t = p * targets + (1 - p) * (1 - targets)           # probability of the true class
    loss = (1 - p_t) ** gamma * bce
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean()


def plain_bce(logits, targets):
    return F.binary_cross_entropy_with_logits(logits, targets)


def weighted_bce(logits, targets):                         # every positive counts 50 times
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor(float(RATIO)))


z, t = torch.randn(100), (torch.rand(100) < 0.3).float()
assert torch.allclose(focal_loss(z, t, gamma=0.0, alpha=None), plain_bce(z, t))   # gamma = 0 is BCE
# --8<-- [end:losses]


# --8<-- [start:train]
def train(loss_fn, oversample: bool = False, steps: int = 600, batch: int = 256) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    # Oversampling: draw positives 50x as often, so batches are balanced on average.
    sample_weight = torch.where(y_train == 1, float(RATIO), 1.0)
    for _ in range(steps):
        if oversample:
            idx = torch.multinomial(sample_weight, batch, replacement=True, generator=gen)
        else:
            idx = torch.randint(len(X_train), (batch,), generator=gen)
        opt.zero_grad()
        loss_fn(net(X_train[idx]).squeeze(1), y_train[idx]).backward()
        opt.step()
    return net


models = {
    "plain BCE": train(plain_bce),
    "class weights": train(weighted_bce),
    "oversampling": train(plain_bce, oversample=True),
    "focal loss": train(focal_loss),
}
# --8<-- [end:train]


# --8<-- [start:evaluate]
def probabilities(net: nn.Module, X: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return net(X).squeeze(1).sigmoid().numpy()


y_va = y_val.numpy().astype(int)
report = {}
for name, net in models.items():
    p_test, p_val = probabilities(net, X_test), probabilities(net, X_val)
    threshold = best_f1_threshold(p_val, y_va)             # tuned on validation, applied to test
    report[name] = dict(
        accuracy=float(((p_test >= 0.5) == y_te).mean()),
        at_half=precision_recall_f1(p_test, y_te, 0.5),
        threshold=threshold,
        tuned=precision_recall_f1(p_test, y_te, threshold),
        pr_auc=average_precision(p_test, y_te), roc_auc=roc_auc(p_test, y_te),
        mean_p=float(p_test.mean()))
plain, weighted, over = report["plain BCE"], report["class weights"], report["oversampling"]

# The table, row by row: accuracy, precision/recall/F1 at 0.5, tuned threshold, F1 there, PR-AUC, ROC-AUC.
P, W, O, Fo = ((r["accuracy"], *r["at_half"], r["threshold"], r["tuned"][2], r["pr_auc"], r["roc_auc"])
               for r in report.values())
claim("0.988", P[0]); claim("0.76", P[1]); claim("0.54", P[2]); claim("0.63", P[3])
claim("0.35", P[4]); claim("0.62", P[5]); claim("0.675", P[6]); claim("0.971", P[7])
claim("0.943", W[0]); claim("0.24", W[1]); claim("0.89", W[2]); claim("0.38", W[3])
claim("0.97", W[4]); claim("0.67", W[5]); claim("0.714", W[6]); claim("0.975", W[7])
claim("0.944", O[0]); claim("0.25", O[1]); claim("0.89", O[2]); claim("0.38", O[3])
claim("0.99", O[4]); claim("0.66", O[5]); claim("0.714", O[6]); claim("0.974", O[7])
claim("0.987", Fo[0]); claim("0.85", Fo[1]); claim("0.40", Fo[2]); claim("0.55", Fo[3])
claim("0.35", Fo[4]); claim("0.61", Fo[5]); claim("0.657", Fo[6]); claim("0.968", Fo[7])
# Weighting and resampling move the default operating point: recall at 0.5 jumps, precision and
# accuracy fall; the weighted model is less accurate than predicting "no" always.
claim("0.980", accuracy)
assert weighted["accuracy"] < accuracy
# The ranking changes far less.
claim("less than 0.01", abs(weighted["roc_auc"] - plain["roc_auc"]))
# Threshold moving recovers F1: once tuned, all four land close together.
for r in report.values():
    claim("0.61–0.67", r["tuned"][2])
# ROC-AUC looks excellent on the same model whose PR-AUC is mediocre. Why: at a 5% false-positive
# rate, 50,000 negatives give 2,500 false alarms against 870 hits.
p_plain = probabilities(models["plain BCE"], X_test)
t5 = np.quantile(p_plain[y_te == 0], 0.95)               # threshold with FPR = 5%
prec5, rec5, _ = precision_recall_f1(p_plain, y_te, t5)
claim("87%", rec5)
claim("0.26", prec5)
claim("2,500 false alarms", ((p_plain >= t5) & (y_te == 0)).sum())
claim("870 hits", ((p_plain >= t5) & (y_te == 1)).sum())
# Weighting breaks calibration: mean predicted probability vs the true 2% prevalence.
claim("0.092", weighted["mean_p"])
claim("0.020", prevalence)
claim("0.023", plain["mean_p"])
claim("4.7 times", weighted["mean_p"] / prevalence)
# With few positives every number is noisy: the binomial standard error of a recall.
claim("0.016", np.sqrt(plain["at_half"][1] * (1 - plain["at_half"][1]) / y_te.sum()))
claim("0.035", np.sqrt(plain["at_half"][1] * (1 - plain["at_half"][1]) / y_va.sum()))
# --8<-- [end:evaluate]


# --8<-- [start:prior-correction]
# Undo the weighting: a model trained with positives weighted w has odds w times too high, so
# divide the odds by w (equivalently, subtract log w from the logit).
def correct_prior(p_w: np.ndarray, w: float) -> np.ndarray:
    return p_w / (p_w + w * (1 - p_w))


p_weighted = probabilities(models["class weights"], X_test)
p_fixed = correct_prior(p_weighted, RATIO)
claim("0.019", p_fixed.mean())                            # back to the prevalence, 0.0196
assert np.array_equal(np.argsort(p_fixed, kind="stable"), np.argsort(p_weighted, kind="stable"))
assert roc_auc(p_fixed, y_te) == weighted["roc_auc"] and average_precision(p_fixed, y_te) == weighted["pr_auc"]
# --8<-- [end:prior-correction]

print(f"all-negative accuracy {accuracy:.4f}; prevalence {prevalence:.4f}; "
      f"plain model at FPR 5%: recall {rec5:.2f}, precision {prec5:.2f}")
print(f"{'':15s}{'acc':>6s}{'P@.5':>6s}{'R@.5':>6s}{'F1@.5':>7s}{'thr':>7s}{'F1@thr':>7s}"
      f"{'PR-AUC':>8s}{'ROC-AUC':>8s}{'mean p':>8s}")
for name, r in report.items():
    p5, r5, f5 = r["at_half"]
    print(f"{name:15s}{r['accuracy']:6.3f}{p5:6.2f}{r5:6.2f}{f5:7.2f}{r['threshold']:7.3f}{r['tuned'][2]:7.2f}"
          f"{r['pr_auc']:8.3f}{r['roc_auc']:8.3f}{r['mean_p']:8.3f}")


# --8<-- [start:focal-weights]
# Where the loss comes from: share carried by easy negatives (p < 0.05) under BCE vs focal loss.
logits = torch.logit(torch.from_numpy(probabilities(models["plain BCE"], X_test)).double(), eps=1e-7)
targets = y_test.double()
bce_each = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
focal_each = (1 - torch.where(targets == 1, logits.sigmoid(), 1 - logits.sigmoid())) ** 2 * bce_each
easy = (targets == 0) & (logits.sigmoid() < 0.05)
share_bce = (bce_each[easy].sum() / bce_each.sum()).item()
share_focal = (focal_each[easy].sum() / focal_each.sum()).item()
claim("93%", easy.double().mean())                       # most examples are easy negatives
claim("7.7%", share_bce)
claim("0.01%", share_focal)                              # focal loss mutes them
# --8<-- [end:focal-weights]
print(f"easy negatives: {easy.double().mean():.1%} of examples, {share_bce:.1%} of the BCE, "
      f"{share_focal:.2%} of the focal loss")


def pr_curve(scores, y):
    order = np.argsort(-scores)
    tp = np.cumsum(y[order])
    return tp / y.sum(), tp / np.arange(1, len(y) + 1)


def roc_curve(scores, y):
    order = np.argsort(-scores)
    tp, fp = np.cumsum(y[order]), np.cumsum(1 - y[order])
    return fp / fp[-1], tp / tp[-1]


fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
for name, c in [("plain BCE", "tab:blue"), ("class weights", "tab:orange")]:
    scores = probabilities(models[name], X_test)
    fpr, tpr = roc_curve(scores, y_te)
    ax.plot(fpr, tpr, c=c, label=f"{name} (ROC-AUC {report[name]['roc_auc']:.3f})")
    rec, prec = pr_curve(scores, y_te)
    bx.plot(rec, prec, c=c, label=f"{name} (PR-AUC {report[name]['pr_auc']:.3f})")
    p5, r5, _ = report[name]["at_half"]
    bx.plot(r5, p5, "o", c=c, ms=7, mec="k")
ax.plot([0, 1], [0, 1], ":", c="0.6", label="random (0.5)")
bx.axhline(prevalence, ls=":", c="0.6", label=f"random ({prevalence:.3f})")
ax.set(xlabel="false positive rate", ylabel="recall (TPR)", title="ROC: looks solved")
bx.set(xlabel="recall", ylabel="precision", title="PR: dots = threshold 0.5", ylim=(0, 1.02))
ax.legend(fontsize=7, loc="lower right")
bx.legend(fontsize=7, loc="upper right")
save(fig, "deep-learning", "imbalanced-roc-vs-pr")
