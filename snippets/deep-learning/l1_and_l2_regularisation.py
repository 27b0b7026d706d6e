"""L1 gives exact zeros through soft-thresholding, L2 only shrinks; SGD with L2 equals weight decay;
Adam with L2 does not equal AdamW, and decays each weight by the inverse of its gradient scale."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from sklearn.linear_model import Lasso
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# --8<-- [start:prox]
def prox_l1(z: np.ndarray, t: float) -> np.ndarray:
    """argmin_w 1/2 (w - z)^2 + t |w|: soft-thresholding. Every |z| <= t lands exactly on 0."""
    return np.sign(z) * np.maximum(np.abs(z) - t, 0.0)


def prox_l2(z: np.ndarray, t: float) -> np.ndarray:
    """argmin_w 1/2 (w - z)^2 + t/2 w^2: a uniform shrink. Zero only if z is."""
    return z / (1 + t)


z = np.linspace(-2, 2, 4001)
assert (prox_l1(z, 0.5)[np.abs(z) <= 0.5] == 0).all()          # a whole interval maps to exactly 0
assert (prox_l2(z, 0.5)[z != 0] != 0).all()                     # L2 never gives an exact 0
for w0 in (-1.3, 0.2, 0.9):                                     # the closed forms are the minimisers
    grid = np.linspace(-3, 3, 600001)
    assert abs(grid[np.argmin(0.5 * (grid - w0) ** 2 + 0.5 * np.abs(grid))] - prox_l1(np.array(w0), 0.5)) < 1e-5
# --8<-- [end:prox]


# --8<-- [start:lasso]
rng = np.random.default_rng(0)
n, d, k = 100, 50, 5                                             # 50 features, 5 of them matter
X = rng.normal(size=(n, d))
w_true = np.zeros(d)
w_true[:k] = rng.choice([-1, 1], k) * rng.uniform(1, 3, k)
y = X @ w_true + rng.normal(0, 0.5, n)
lam = 0.15
L = np.linalg.eigvalsh(X.T @ X / n).max()                        # Lipschitz constant of the data term

# L1 by proximal gradient (ISTA): a gradient step on the data term, then soft-thresholding.
w_l1 = np.zeros(d)
for _ in range(2000):
    w_l1 = prox_l1(w_l1 - X.T @ (X @ w_l1 - y) / (n * L), lam / L)
sk = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(X, y).coef_
assert np.abs(w_l1 - sk).max() < 1e-9                            # = scikit-learn's coordinate descent
claim("45", (w_l1[k:] == 0).sum())                               # every irrelevant weight exactly 0 ...
assert (w_l1[:k] != 0).all()                                     # ... every true one kept

# L2 at the same strength, in closed form: shrinks everything, zeroes nothing.
w_l2 = np.linalg.solve(X.T @ X / n + lam * np.eye(d), X.T @ y / n)
claim("0 exact zeros", (w_l2 == 0).sum())
claim("0.081", np.abs(w_l2[k:]).mean())                          # mean |w| of the 45 irrelevant ones

# L1 by plain (sub)gradient descent, as `loss + lam * w.abs().sum()` with autograd does it:
w_sub = np.zeros(d)
for _ in range(2000):
    w_sub -= 0.5 / L * (X.T @ (X @ w_sub - y) / n + lam * np.sign(w_sub))
claim("0 exact zeros", (w_sub == 0).sum())
claim("0.044", np.abs(w_sub[k:]).max())                           # they jitter around 0 instead
# --8<-- [end:lasso]


# --8<-- [start:sgd]
torch.manual_seed(0)
Xt, yt = torch.randn(256, 10, dtype=torch.float64), torch.randn(256, 1, dtype=torch.float64)


def make() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1)).double()


def data_loss(net, t):
    idx = torch.arange(32 * (t % 8), 32 * (t % 8 + 1))
    return ((net(Xt[idx]) - yt[idx]) ** 2).mean()


LR, WD, STEPS = 0.05, 0.01, 100


def run_sgd(mode: str, momentum: float = 0.0, wd: float = WD) -> torch.Tensor:
    net = make()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=momentum,
                          weight_decay=wd if mode == "torch weight_decay" else 0.0)
    for t in range(STEPS):
        loss = data_loss(net, t)
        if mode == "L2 in the loss":
            loss = loss + wd / 2 * sum((p ** 2).sum() for p in net.parameters())
        opt.zero_grad()
        loss.backward()
        if mode == "decoupled decay":                             # w <- (1 - lr * wd) w - lr * grad
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(1 - LR * wd)
        opt.step()
    return torch.cat([p.detach().flatten() for p in net.parameters()])


l2, wd_torch, decoupled = run_sgd("L2 in the loss"), run_sgd("torch weight_decay"), run_sgd("decoupled decay")
assert (l2 - wd_torch).abs().max() < 1e-12 and (l2 - decoupled).abs().max() < 1e-12   # all three equal
# The same decay per step written as L2 needs the learning-rate factor: d = lr * lambda.
# With momentum, L2 (decay inside the velocity) and decoupled decay (SGDW) part ways:
l2_m, decoupled_m = run_sgd("L2 in the loss", 0.9), run_sgd("decoupled decay", 0.9)
assert (l2_m - run_sgd("torch weight_decay", 0.9)).abs().max() < 1e-12
def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / a.norm()).item()


claim("36%", rel(l2_m, decoupled_m))
# The velocity sums the L2 term over ~1/(1 - 0.9) = 10 steps: SGDW needs a 10x coefficient to match.
claim("6.9%", rel(l2_m, run_sgd("decoupled decay", 0.9, wd=10 * WD)))
# --8<-- [end:sgd]


# --8<-- [start:adam]
def run_adam(mode: str) -> torch.Tensor:
    net = make()
    opt = (torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1) if mode == "AdamW"
           else torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)
           if mode == "Adam decoupled"
           else torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=0.1 if mode == "torch Adam wd" else 0.0))
    for t in range(STEPS):
        loss = data_loss(net, t)
        if mode == "L2 in the loss":
            loss = loss + 0.1 / 2 * sum((p ** 2).sum() for p in net.parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in net.parameters()])


adam_l2, adam_wd, adamw = run_adam("L2 in the loss"), run_adam("torch Adam wd"), run_adam("AdamW")
assert (adam_l2 - adam_wd).abs().max() < 1e-12                 # Adam(weight_decay) is L2 ...
claim("93%", rel(adamw, adam_l2))                               # ... and far from AdamW
assert (run_adam("Adam decoupled") - adamw).abs().max() < 1e-12  # Adam(decoupled_weight_decay=True) is AdamW


# Why: three groups of weights with pure-noise gradients of RMS 0.01, 1 and 100. Decay is all
# that pulls them to 0. AdamW shrinks every group by (1 - lr * wd)^T; L2 through Adam is divided
# by sqrt(v), so it crushes the quiet weights and barely touches the loud ones.
def decay_by_group(opt_name: str, T: int = 1000, lr: float = 1e-3, wd: float = 0.1) -> np.ndarray:
    w = nn.Parameter(torch.ones(3, 1000, dtype=torch.float64))
    scale = torch.tensor([[0.01], [1.0], [100.0]], dtype=torch.float64)
    opt = (torch.optim.AdamW if opt_name == "AdamW" else torch.optim.Adam)([w], lr=lr, weight_decay=wd)
    gen = torch.Generator().manual_seed(0)
    for _ in range(T):
        w.grad = scale * torch.randn(3, 1000, generator=gen, dtype=torch.float64)
        opt.step()
    return w.detach().mean(dim=1).numpy()


kept_adamw, kept_adam_l2 = decay_by_group("AdamW"), decay_by_group("Adam")
claim("0.905", (1 - 1e-3 * 0.1) ** 1000)
assert np.allclose(kept_adamw, (1 - 1e-3 * 0.1) ** 1000, atol=0.01)   # the same for every group
claim("0.26", kept_adam_l2[0])                                          # quiet weights: decayed hard,
claim("8 times", (1 - kept_adam_l2[0]) / (1 - kept_adamw[0]), tol=0.5)  # 8x AdamW's decay
claim("0.90", kept_adam_l2[1])                                          # RMS 1: as much as AdamW
claim("over 0.99", kept_adam_l2[2])                                     # loud weights: no decay at all
# --8<-- [end:adam]

print(f"lasso: {(w_l1 == 0).sum()} zeros; ridge: {(w_l2 == 0).sum()} zeros, irrelevant mean |w| "
      f"{np.abs(w_l2[k:]).mean():.4f}; subgradient L1 max irrelevant |w| {np.abs(w_sub[k:]).max():.4f}")
print(f"SGD momentum L2 vs SGDW {rel(l2_m, decoupled_m):.4f}; Adam-L2 vs AdamW {rel(adamw, adam_l2):.4f}")
print("kept after 1000 steps, AdamW", kept_adamw.round(4), "Adam + L2", kept_adam_l2.round(4))

fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
fig.subplots_adjust(wspace=0.3)
ax1.plot(z, z, c="0.8", lw=0.8, label="no penalty")
ax1.plot(z, prox_l1(z, 0.5), lw=2, label="L1: soft-threshold (t = 0.5)")
ax1.plot(z, prox_l2(z, 0.5), lw=2, label="L2: shrink by 1/(1 + t)")
ax1.set(xlabel="weight before the penalty step", ylabel="after", title="One proximal step")
ax1.legend(fontsize=7)
idx = np.arange(d)
ax2.plot(idx, w_l2, "o", c="C1", ms=4, label="L2 (ridge): small, never 0")
ax2.plot(idx, w_l1, "s", c="C0", ms=3, label="L1 (lasso, ISTA): exactly 0")
ax2.axhline(0, c="0.7", lw=0.6)
ax2.set(xlabel="feature (first 5 are real)", ylabel="weight", title="45 of 45 noise weights exactly 0 with L1")
ax2.legend(fontsize=7)
ax3.bar(np.arange(3) - 0.2, kept_adamw, width=0.4, label="AdamW")
ax3.bar(np.arange(3) + 0.2, kept_adam_l2, width=0.4, label="Adam + L2")
ax3.set_xticks(range(3), ["0.01", "1", "100"])
ax3.set(xlabel="RMS of the group's (pure-noise) gradient", ylabel="mean weight after 1,000 steps (from 1)",
        title="Weight decay 0.1, lr 1e-3: what is left")
ax3.legend(fontsize=7)
save(fig, "deep-learning", "l1-l2-regularisation")
