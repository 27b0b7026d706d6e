"""Out-of-distribution detection on a small classifier: max-softmax, energy and Mahalanobis scores on a near
(novel class) and a far shift, their AUROC, a combined score, and a reject option at 95% in-distribution acceptance."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from _train import fit
from scipy.stats import rankdata
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)

D, K = 16, 5                                     # a 16-d "embedding", 5 known classes
class_means = rng.normal(0, 0.8, (K, D))


def sample(n: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = rng.integers(0, len(centres), n)
    return (centres[k] + rng.normal(0, 1, (n, D))).astype(np.float32), k


x_train, y_train = sample(3000, class_means)
x_val, _ = sample(1000, class_means)             # in-distribution data to set thresholds on
x_test, y_test = sample(2000, class_means)
novel_centre = class_means.mean(0, keepdims=True) + rng.normal(0, 1, (1, D))
x_near, _ = sample(2000, novel_centre)           # near OOD: an unseen class among the known ones
direction = rng.normal(size=(1, D))
x_far, _ = sample(2000, class_means[[0]] + 10 * direction / np.linalg.norm(direction))   # far OOD


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.head = nn.Linear(64, K)

    def forward(self, x):
        return self.head(self.body(x))


net = fit(Net(), torch.from_numpy(x_train), torch.from_numpy(y_train), epochs=20, lr=3e-3)


@torch.inference_mode()
def features_and_logits(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = net.body(torch.from_numpy(x))
    return z.numpy(), net.head(z).numpy()


# --8<-- [start:scores]
def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability (Hendrycks and Gimpel, 2017). Higher = more in-distribution."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return p.max(1)


def neg_energy(logits: np.ndarray, T: float = 1.0) -> np.ndarray:
    """-E(x) = T logsumexp(f(x)/T) (Liu et al., 2020). Keeps the common offset of the logits (the
    log-partition), which softmax discards: softmax(f + c) = softmax(f), but -E(f + c) = -E(f) + c."""
    m = logits.max(1)
    return m + T * np.log(np.exp((logits - m[:, None]) / T).sum(1))


z_train, _ = features_and_logits(x_train)
mu = np.stack([z_train[y_train == c].mean(0) for c in range(K)])
centred = z_train - mu[y_train]
precision = np.linalg.pinv(centred.T @ centred / len(z_train))     # one covariance shared by all classes


def neg_mahalanobis(z: np.ndarray) -> np.ndarray:
    """-min_c (z - mu_c)^T Sigma^-1 (z - mu_c) on penultimate features (Lee et al., 2018)."""
    d = np.stack([np.einsum("ij,jk,ik->i", z - mu[c], precision, z - mu[c]) for c in range(K)], 1)
    return -d.min(1)


def auroc(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """P(ID score > OOD score) + P(tie) / 2, via the Mann-Whitney U statistic with average ranks for ties
    (a saturated softmax gives many exact ties at 1.0)."""
    ranks = rankdata(np.concatenate([score_in, score_out]))
    n_in, n_out = len(score_in), len(score_out)
    return float((ranks[:n_in].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))
# --8<-- [end:scores]


def all_scores(x: np.ndarray) -> dict[str, np.ndarray]:
    z, logits = features_and_logits(x)
    return {"MSP": msp(logits), "energy": neg_energy(logits), "Mahalanobis": neg_mahalanobis(z)}


# --8<-- [start:evaluate]
s_val, s_test, s_near, s_far = map(all_scores, (x_val, x_test, x_near, x_far))


def id_percentile(name: str, values: np.ndarray) -> np.ndarray:
    """Where a score falls in the in-distribution validation scores (0 = below all of them)."""
    return np.searchsorted(np.sort(s_val[name]), values) / len(s_val[name])


for s in (s_val, s_test, s_near, s_far):       # flag if either view finds the input unusual
    s["energy + Mahalanobis"] = np.minimum(id_percentile("energy", s["energy"]),
                                           id_percentile("Mahalanobis", s["Mahalanobis"]))

table = {name: (auroc(s_test[name], s_near[name]), auroc(s_test[name], s_far[name])) for name in s_test}
acc_id = float((features_and_logits(x_test)[1].argmax(1) == y_test).mean())

claim("94.3%", acc_id)                                          # overlapping classes, not a toy 100%
assert table["energy"][0] > table["MSP"][0]                     # near OOD: logit scores work...
assert table["Mahalanobis"][0] < table["energy"][0] - 0.05      # ...better than feature density
assert table["Mahalanobis"][1] > 0.99                           # far OOD: feature density is near perfect...
assert max(table["MSP"][1], table["energy"][1]) < 0.7           # ...while the ReLU net is confidently wrong
claim("0.84", table["MSP"][0]), claim("0.56", table["MSP"][1])                 # AUROC near, far
claim("0.90", table["energy"][0]), claim("0.59", table["energy"][1])
claim("0.79", table["Mahalanobis"][0]), claim("1.00", table["Mahalanobis"][1])
claim("0.87", table["energy + Mahalanobis"][0]), claim("1.00", table["energy + Mahalanobis"][1])
# --8<-- [end:evaluate]

# --8<-- [start:reject]
score = "energy + Mahalanobis"
pred_id = features_and_logits(x_test)[1].argmax(1)
# Traffic = 2,000 known-class inputs + 2,000 of a new product; a new-product input is always wrong.
correct = np.r_[pred_id == y_test, np.zeros(len(x_near), bool)]
trade_off = {}
for target in (1.0, 0.95, 0.9, 0.8):                            # share of ID inputs to accept
    threshold = np.quantile(s_val[score], 1 - target) if target < 1 else -np.inf
    accept_id, accept_near = s_test[score] >= threshold, s_near[score] >= threshold
    accepted = np.r_[accept_id, accept_near]
    trade_off[target] = (accept_id.mean(), accept_near.mean(), correct[accepted].mean(),
                         (pred_id == y_test)[accept_id].mean())

for target in (0.95, 0.9, 0.8):
    assert abs(trade_off[target][0] - target) < 0.02            # the acceptance target holds on test
rate_id, rate_near, acc_traffic, acc_known = map(np.array, zip(*trade_off.values()))
assert (np.diff(rate_near) < 0).all() and (np.diff(acc_traffic) > 0).all() and (np.diff(acc_known) > 0).all()
claim("61%", trade_off[0.95][1])                # AUROC 0.87, yet most of the new product passes at 95%...
claim("44%", trade_off[0.9][1])
claim("20%", trade_off[0.8][1])                 # ...and it takes rejecting 20% of good traffic to stop it
# Accuracy on all accepted traffic, and on the accepted known-class inputs only:
claim("47.1%", trade_off[1.0][2]), claim("94.3%", trade_off[1.0][3])    # no rejection
claim("57.9%", trade_off[0.95][2]), claim("95.1%", trade_off[0.95][3])
claim("64.4%", trade_off[0.9][2]), claim("95.4%", trade_off[0.9][3])
claim("77.2%", trade_off[0.8][2]), claim("97.1%", trade_off[0.8][3])
# --8<-- [end:reject]

fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
for ax, name in zip(axes, ("energy", "Mahalanobis")):
    lo = np.percentile(np.r_[s_test[name], s_near[name], s_far[name]], 1)
    hi = np.percentile(np.r_[s_test[name], s_near[name], s_far[name]], 99.5)
    bins = np.linspace(lo, hi, 50)
    for data, label, colour in ((s_test[name], "in-distribution", "tab:blue"),
                                (s_near[name], "near OOD (new class)", "tab:orange"),
                                (s_far[name], "far OOD", "tab:red")):
        ax.hist(np.clip(data, lo, hi), bins=bins, alpha=0.55, color=colour, label=label, density=True)
    ax.set(title=f"{name} score (AUROC near {table[name][0]:.2f}, far {table[name][1]:.2f})",
           xlabel="score (higher = more in-distribution)", yticks=[])
    ax.title.set_fontsize(9)
axes[0].legend(fontsize=7, loc="upper left")
save(fig, "production", "ood-scores", exact=False)

for name, (near, far) in table.items():
    print(f"{name:22s} AUROC near {near:.3f} far {far:.3f}")
print(f"ID accuracy {acc_id:.3f}")
for target, (a_id, a_near, a_all, a_known) in trade_off.items():
    print(f"target {target:.2f}: ID accepted {a_id:.3f}, new class accepted {a_near:.3f}, "
          f"accuracy on accepted traffic {a_all:.3f}, on accepted known-class inputs {a_known:.3f}")
