"""Grid vs random vs quasi-random search when 2 of 5 hyperparameters matter; importance of the learning
rate; successive halving on real training curves."""
from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from _figures import save
from scipy.stats import qmc
from sklearn.datasets import load_digits

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# --8<-- [start:objective]
def val_error(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """A stand-in for validation error over 5 hyperparameters scaled to [0, 1] (log scale for rates).
    Only x0 (think: learning rate) and x1 (think: weight decay) matter; x2..x4 barely do."""
    return (1 - np.exp(-((x[:, 0] - a) / 0.1) ** 2 - ((x[:, 1] - b) / 0.25) ** 2)
            + 0.01 * ((x[:, 2:] - 0.5) ** 2).sum(axis=1))


BUDGET = 3**5                                                    # 243 trials
levels = (np.arange(3) + 0.5) / 3                                # 3 values per axis, cell centres
grid = np.array(list(itertools.product(levels, repeat=5)))
assert len(grid) == BUDGET
# --8<-- [end:objective]

# --8<-- [start:grid-vs-random]
regret = {"grid": [], "random": [], "Halton": []}
for seed in range(20):                                           # 20 problems, optimum placed at random
    rng = np.random.default_rng(100 + seed)
    a, b = rng.uniform(0.05, 0.95, size=2)
    best = val_error(np.array([[a, b, 0.5, 0.5, 0.5]]), a, b)[0]
    trials = {"grid": grid, "random": rng.uniform(size=(BUDGET, 5)),
              "Halton": qmc.Halton(d=5, scramble=True, seed=seed).random(BUDGET)}
    for name, x in trials.items():
        regret[name].append(val_error(x, a, b).min() - best)    # how far the best trial is from optimal
regret = {k: np.array(v) for k, v in regret.items()}

claim("3", len(np.unique(grid[:, 0])))                           # the grid tries 3 learning rates,
claim("9", len(np.unique(grid[:, :2], axis=0)))                  # 9 (x0, x1) pairs, each 27 times ...
claim("243", len(np.unique(trials["random"][:, 0])))             # ... random search tries 243
claim("0.28", np.median(regret["grid"]))                         # median regret, grid
claim("0.035", np.median(regret["random"]))                      # median regret, random: 8x lower
claim("0.045", np.median(regret["Halton"]))
claim("wins on 18", (regret["random"] < regret["grid"]).sum())   # random beats grid on most problems
claim("the grid on 18", (regret["Halton"] < regret["grid"]).sum())     # quasi-random beats the grid as often,
claim("Halton on 13", (regret["random"] < regret["Halton"]).sum())   # and random vs Halton is a coin flip:
claim("0.26", 2 * sum(math.comb(20, j) for j in range(13, 21)) / 2**20)   # two-sided binomial p
# Why random works at all: each trial lands in the best 5% of the space with probability 0.05.
claim("95%", 1 - 0.95**60)                                       # 60 trials: P(at least one in the top 5%)
claim("0.94", regret["grid"].max())                              # the grid's worst case: it missed the peak
claim("0.18", regret["random"].max())
# --8<-- [end:grid-vs-random]


# --8<-- [start:trainer]
digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
X = (X - X.mean()) / X.std()
y = torch.tensor(digits.target)
perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
X_tr, y_tr, X_va, y_va = X[perm[:1000]], y[perm[:1000]], X[perm[1000:]], y[perm[1000:]]
UNIT = 8                                                         # one budget unit = 8 steps of batch 32


def train_many(lr, wd, beta1, units: int, hidden: int = 32, seed: int = 0) -> np.ndarray:
    """Train K small MLPs at once (one per configuration; AdamW written out with per-config lr,
    weight decay and beta1). Returns the validation loss of each after every budget unit: (K, units)."""
    K = len(lr)
    gen = torch.Generator().manual_seed(seed)
    params = [(torch.randn(K, 64, hidden, generator=gen) * math.sqrt(2 / 64)).requires_grad_(),
              torch.zeros(K, 1, hidden, requires_grad=True),
              (torch.randn(K, hidden, 10, generator=gen) * math.sqrt(1 / hidden)).requires_grad_(),
              torch.zeros(K, 1, 10, requires_grad=True)]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    lr, wd, beta1 = (torch.as_tensor(h, dtype=torch.float32).view(K, 1, 1) for h in (lr, wd, beta1))

    def forward(x):
        h = torch.relu(torch.baddbmm(params[1], x.expand(K, -1, -1), params[0]))
        return torch.baddbmm(params[3], h, params[2])

    curves, t = np.zeros((K, units)), 0
    for unit in range(units):
        for _ in range(UNIT):
            t += 1
            idx = torch.randint(0, len(X_tr), (32,), generator=gen)      # the same batches for all K
            loss = F.cross_entropy(forward(X_tr[idx]).reshape(-1, 10), y_tr[idx].repeat(K), reduction="sum") / 32
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g, m_, v_ in zip(params, grads, m, v):
                    m_.mul_(beta1).add_((1 - beta1) * g)
                    v_.mul_(0.999).add_(0.001 * g * g)
                    p.mul_(1 - lr * wd)                                  # decoupled weight decay
                    p.sub_(lr * (m_ / (1 - beta1**t)) / ((v_ / (1 - 0.999**t)).sqrt() + 1e-8))
        with torch.no_grad():
            val = F.cross_entropy(forward(X_va).reshape(-1, 10), y_va.repeat(K), reduction="none")
            curves[:, unit] = torch.nan_to_num(val.view(K, -1).mean(dim=1), nan=10.0).numpy()
    return curves


rng = np.random.default_rng(0)
K, MAX_UNITS = 81, 27
BOX = {"learning rate": (-4.5, 0), "weight decay": (-5, -1), "1 - beta1": (-2, -0.3)}   # log10 ranges
hp = {name: 10 ** rng.uniform(*BOX[name], K) for name in BOX}   # sampled on a log scale
curves = train_many(hp["learning rate"], hp["weight decay"], 1 - hp["1 - beta1"], MAX_UNITS)
final = curves[:, -1]
claim("216 steps", MAX_UNITS * UNIT)                             # the whole run, for every configuration
claim("4.5 decades", np.diff(BOX["learning rate"])[0])          # the widths of the boxes searched:
claim("only 1.7", np.diff(BOX["1 - beta1"])[0])                 # importance is relative to them
# --8<-- [end:trainer]


# --8<-- [start:importance]
def r2_of_quadratic_fit(h: np.ndarray, target: np.ndarray) -> float:
    """Share of the variance of the final loss explained by one hyperparameter alone (log scale)."""
    A = np.stack([np.log10(h) ** 2, np.log10(h), np.ones_like(h)], axis=1)
    residual = target - A @ np.linalg.lstsq(A, target, rcond=None)[0]
    return 1 - residual.var() / target.var()


importance = {name: r2_of_quadratic_fit(h, final) for name, h in hp.items()}
claim("0.93", importance["learning rate"])
claim("0.06", importance["weight decay"])
claim("0.01", importance["1 - beta1"])
# --8<-- [end:importance]


# --8<-- [start:successive-halving]
def successive_halving(curves: np.ndarray, eta: int = 3) -> tuple[int, int]:
    """Start every configuration with 1 unit; keep the best 1/eta, give them eta times the budget,
    resuming from their checkpoints; repeat until one is left. Returns (winner, units spent)."""
    alive, budget, spent, done = np.arange(len(curves)), 1, 0, 0
    while True:
        spent += (budget - done) * len(alive)                     # resume: pay only for the new units
        if len(alive) == 1:
            return int(alive[0]), spent
        alive = alive[np.argsort(curves[alive, budget - 1])[: max(1, len(alive) // eta)]]
        done, budget = budget, budget * eta


full_cost = 27 * MAX_UNITS                                        # train all 27 to the end: 729 units
ranks, sh_loss, best_loss, equal_budget_random = [], [], [], []
for group in range(3):                                            # three independent searches of 27
    c = curves[27 * group: 27 * (group + 1)]
    winner, spent = successive_halving(c)
    ranks.append(int((c[:, -1] < c[winner, -1]).sum()) + 1)       # 1 = it found the best of the 27
    sh_loss.append(c[winner, -1])
    best_loss.append(c[:, -1].min())
    n = spent // MAX_UNITS                                        # the same compute buys 3 full runs:
    ordered = np.sort(c[:, -1])                                   # expected best of 3 drawn from the 27
    p_min = [math.comb(27 - i, n - 1) / math.comb(27, n) for i in range(1, 28)]
    equal_budget_random.append(float(np.dot(p_min, ordered)))
claim("81", spent)
claim("9×", full_cost / spent)                                    # 9 times less compute ...
assert sorted(ranks) == [1, 3, 6]                                 # ... and the ranks of what SH picked
claim("at worst the 6th", max(ranks))
claim("0.11–0.15", min(sh_loss)), claim("0.11–0.15", max(sh_loss))
claim("0.09–0.11", min(best_loss)), claim("0.09–0.11", max(best_loss))
claim("0.27–0.37", min(equal_budget_random)), claim("0.27–0.37", max(equal_budget_random))
# --8<-- [end:successive-halving]

print("median regret", {k: round(float(np.median(v)), 4) for k, v in regret.items()},
      "random beats grid", int((regret["random"] < regret["grid"]).sum()))
print("importance", {k: round(v, 3) for k, v in importance.items()})
print("SH ranks", ranks, "SH", np.round(sh_loss, 3), "best", np.round(best_loss, 3),
      "equal-budget random", np.round(equal_budget_random, 3), f"cost {spent} vs {full_cost}")

fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
rng = np.random.default_rng(100)
a, b = rng.uniform(0.05, 0.95, size=2)
u = np.linspace(0, 1, 200)
U0, U1 = np.meshgrid(u, u)
Z = val_error(np.c_[U0.ravel(), U1.ravel(), np.full((U0.size, 3), 0.5)], a, b).reshape(U0.shape)
for ax, pts, title in [(ax1, grid, "Grid: 243 trials, 9 distinct (x0, x1)"),
                       (ax2, rng.uniform(size=(BUDGET, 5)), "Random: 243 trials, 243 distinct")]:
    ax.contourf(U0, U1, Z, levels=12, cmap="viridis_r", alpha=0.8)
    ax.scatter(pts[:, 0], pts[:, 1], s=8, c="white", edgecolors="k", linewidths=0.4)
    ax.set(xlabel="x0 (matters most)", ylabel="x1 (matters)", title=title, xlim=(0, 1), ylim=(0, 1))
c = curves[:27]
budget, alive = 1, np.arange(27)
while len(alive) > 1:
    alive = alive[np.argsort(c[alive, budget - 1])[: len(alive) // 3]]
    budget *= 3
units = np.arange(1, MAX_UNITS + 1)
for i in range(27):
    ax3.plot(units, np.minimum(c[i], 3), c="0.75", lw=0.8)
ax3.plot(units, np.minimum(c[alive[0]], 3), c="tab:red", lw=2, label="successive halving's pick")
ax3.plot(units, c[np.argmin(c[:, -1])], c="tab:green", lw=1.5, ls="--", label="best after full training")
for r in (1, 3, 9):
    ax3.axvline(r, c="0.5", lw=0.6, ls=":")
ax3.set(xscale="log", xlabel="budget (units of 8 steps)", ylabel="validation loss (clipped at 3)",
        title="27 configurations; cuts at 1, 3, 9 units")
ax3.legend(fontsize=8)
save(fig, "deep-learning", "hyperparameter-search", exact=False)
