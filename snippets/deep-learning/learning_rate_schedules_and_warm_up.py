"""Warm-up + cosine written out and equal to torch's schedulers; a learning-rate range test against a
sweep of peak rates; why Adam's first steps are large, and what warm-up does about it."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from _figures import save
from sklearn.datasets import load_digits
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# --8<-- [start:schedule]
def warmup_cosine(t: np.ndarray, peak: float, total: int, warmup: int, floor: float = 0.0) -> np.ndarray:
    """Linear warm-up to `peak` over `warmup` steps, then a half cosine down to `floor` at `total`."""
    t = np.asarray(t, dtype=float)
    ramp = peak * (t + 1) / warmup
    cosine = floor + (peak - floor) * 0.5 * (1 + np.cos(np.pi * (t - warmup) / (total - warmup)))
    return np.where(t < warmup, ramp, cosine)


T, W, PEAK, FLOOR = 1000, 50, 3e-3, 3e-5
opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=PEAK)
sched = torch.optim.lr_scheduler.SequentialLR(opt, milestones=[W], schedulers=[
    torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / W, end_factor=1.0, total_iters=W - 1),
    torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T - W, eta_min=FLOOR)])
torch_lrs = []
for _ in range(T):
    torch_lrs.append(opt.param_groups[0]["lr"])
    opt.step()
    sched.step()
ours = warmup_cosine(np.arange(T), PEAK, T, W, FLOOR)
assert np.abs(np.array(torch_lrs) / ours - 1).max() < 1e-12       # equal step for step, all 1,000
assert ours[0] == PEAK / W and ours[W - 1] == PEAK and abs(ours[-1] - FLOOR) < 1e-8
# --8<-- [end:schedule]


# --8<-- [start:model]
digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
X = (X - X.mean()) / X.std()
y = torch.tensor(digits.target)
perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
X_tr, y_tr, X_va, y_va = X[perm[:1400]], y[perm[:1400]], X[perm[1400:]], y[perm[1400:]]


def train(lr_table: np.ndarray, opt: str = "adam", init_seeds=None, hidden: int = 64):
    """K copies of a 64-64-64-10 ReLU MLP trained side by side, model k with the schedule lr_table[k].
    Adam (PyTorch's defaults) or SGD with momentum 0.9, written out. Returns the training loss per
    step (K, steps) and the final validation loss (K,)."""
    K, steps = lr_table.shape
    seeds = np.zeros(K, int) if init_seeds is None else np.asarray(init_seeds)
    sizes = [64, hidden, hidden, 10]
    Ws = [torch.stack([torch.randn(i, o, generator=torch.Generator().manual_seed(int(s) * 10 + j))
                       for s in seeds]).mul_(math.sqrt(2 / i)).requires_grad_()
          for j, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    bs = [torch.zeros(K, 1, o, requires_grad=True) for o in sizes[1:]]
    params = Ws + bs
    m1, m2 = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    gen = torch.Generator().manual_seed(0)                              # the same batches for every k

    def forward(x):
        h = x.expand(K, -1, -1)
        for j, (w, b) in enumerate(zip(Ws, bs)):
            h = torch.baddbmm(b, h, w)
            h = torch.relu(h) if j < len(Ws) - 1 else h
        return h

    lrs, losses = torch.tensor(lr_table, dtype=torch.float32), np.zeros((K, steps))
    for t in range(steps):
        idx = torch.randint(0, len(X_tr), (64,), generator=gen)
        loss = F.cross_entropy(forward(X_tr[idx]).reshape(-1, 10), y_tr[idx].repeat(K),
                               reduction="none").view(K, -1).mean(dim=1)
        losses[:, t] = loss.detach().numpy()
        grads = torch.autograd.grad(loss.sum(), params)
        lr = lrs[:, t].view(K, 1, 1)
        with torch.no_grad():
            for p, g, a, b in zip(params, grads, m1, m2):
                g = torch.nan_to_num(g)
                if opt == "adam":
                    a.mul_(0.9).add_(0.1 * g)
                    b.mul_(0.999).add_(0.001 * g * g)
                    p.sub_(lr * (a / (1 - 0.9 ** (t + 1))) / ((b / (1 - 0.999 ** (t + 1))).sqrt() + 1e-8))
                else:
                    a.mul_(0.9).add_(g)
                    p.sub_(lr * a)
    with torch.no_grad():
        val = F.cross_entropy(forward(X_va).reshape(-1, 10), y_va.repeat(K), reduction="none")
    return losses, torch.nan_to_num(val.view(K, -1).mean(dim=1), nan=99.0).numpy()
# --8<-- [end:model]


# --8<-- [start:range-test]
def range_test(opt: str, low: float = 1e-5, high: float = 10.0, steps: int = 200):
    """Raise the rate exponentially from `low` to `high`, one mini-batch per rate; smooth the loss;
    stop once it is 4x its minimum. The knee is the rate at the smoothed minimum."""
    rates = low * (high / low) ** (np.arange(steps) / (steps - 1))
    raw, _ = train(rates[None, :], opt)
    smooth = np.zeros(steps)
    avg = 0.0
    for t, loss in enumerate(np.nan_to_num(raw[0], nan=1e9)):
        avg = 0.9 * avg + 0.1 * loss
        smooth[t] = avg / (1 - 0.9 ** (t + 1))                           # bias-corrected EMA
    stop = next((t for t in range(steps) if smooth[t] > 4 * smooth[: t + 1].min()), steps)
    return rates[:stop], smooth[:stop], rates[int(np.argmin(smooth[:stop]))]


STEPS, WARM = 300, 15
sweeps = {"adam": 10 ** np.arange(-4.0, -0.4, 0.5), "sgd": 10 ** np.arange(-3.0, 0.6, 0.5)}
results = {}
for name, peaks in sweeps.items():
    rates, smooth, knee = range_test(name)
    table = np.stack([warmup_cosine(np.arange(STEPS), p, STEPS, WARM) for p in peaks])
    _, val = train(table, name)                                          # the real answer: a full sweep
    results[name] = dict(rates=rates, smooth=smooth, knee=knee, peaks=peaks, val=val,
                         best=peaks[np.argmin(val)])
adam, sgd = results["adam"], results["sgd"]
claim("0.031", adam["knee"]), claim("0.010", adam["best"])         # Adam: the knee, the best peak
claim("0.102", sgd["knee"]), claim("0.032", sgd["best"])             # SGD with momentum
claim("about 3", adam["knee"] / adam["best"], tol=0.5), claim("about 3", sgd["knee"] / sgd["best"], tol=0.5)
claim("3.16", 10**0.5)                                                # the sweep's step: its resolution
claim("34.5%", 0.5 * (1 + math.cos(0.6 * math.pi)))                 # a cosine stopped at 60% of its T
claim("0.075", adam["val"].min()), claim("0.075", sgd["val"].min())
val_at = {name: dict(zip(np.round(np.log10(r["peaks"]), 1), r["val"])) for name, r in results.items()}
claim("0.081–0.087", val_at["adam"][-2.5]), claim("0.081–0.087", val_at["adam"][-1.5])   # 3x either side: flat
claim("0.13–0.21", val_at["adam"][-1.0])                              # 10x the best peak
claim("0.6–1.5", val_at["sgd"][-0.5])                                 # SGD at 10x its best peak
for r in (adam, sgd):
    assert r["knee"] / 5 <= r["best"] <= r["knee"]                      # best peak: knee/5 ... knee
    assert (r["val"][r["peaks"] > 10 * r["knee"]] > 10 * r["val"].min()).all()   # far past: fails
# --8<-- [end:range-test]


# --8<-- [start:adam-first-steps]
# Adam's step per coordinate, in units of the learning rate, over training at a constant 1e-3.
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
adam_opt = torch.optim.Adam(net.parameters(), lr=1e-3)
gen = torch.Generator().manual_seed(0)
step_rms = []
for t in range(300):
    idx = torch.randint(0, len(X_tr), (64,), generator=gen)
    adam_opt.zero_grad()
    F.cross_entropy(net(X_tr[idx]), y_tr[idx]).backward()
    if t == 0:
        zero_share = torch.cat([p.grad.flatten() for p in net.parameters()]).eq(0).double().mean().item()
    before = torch.cat([p.detach().flatten() for p in net.parameters()])
    adam_opt.step()
    after = torch.cat([p.detach().flatten() for p in net.parameters()])
    step_rms.append(((after - before).pow(2).mean().sqrt() / 1e-3).item())
step_rms = np.array(step_rms)
# Step 1: m/sqrt(v) = g/|g| = +-1 on every coordinate with a non-zero gradient, whatever its scale.
claim("0.96", step_rms[0])
claim("7.4%", zero_share)                                      # the rest (dead units) do not move
assert abs(step_rms[0] - math.sqrt(1 - zero_share)) < 1e-4
claim("0.63", step_rms[9])
claim("0.28", step_rms[99])                                    # by step 100 the noise has averaged out
claim("0.20", step_rms[299])
claim("3.4", step_rms[0] / step_rms[99])                       # first step vs step 100, at the same rate

# What that does at a peak rate 10x the best (0.1): no warm-up vs 60 warm-up steps, 3 inits each.
peak, seeds = 0.1, [0, 0, 1, 1, 2, 2]
table = np.stack([warmup_cosine(np.arange(STEPS), peak, STEPS, w) for w in (1, 60) * 3])
losses, val = train(table, "adam", init_seeds=seeds)
spike_cold, spike_warm = losses[0::2, :60].max(axis=1), losses[1::2, :60].max(axis=1)
claim("11–23", spike_cold.min()), claim("11–23", spike_cold.max())     # loss spikes without warm-up
claim("at most 3.5", spike_warm.max())                                 # barely above the init loss with it
claim("2.8", losses[:, 0].mean(), tol=0.1)                          # the loss at init
assert spike_cold.min() > 3 * spike_warm.max()
claim("0.3–1.1", val[0::2].min()), claim("0.3–1.1", val[0::2].max())
claim("0.13–0.38", val[1::2].min()), claim("0.13–0.38", val[1::2].max())
assert val[1::2].max() < val[0::2].min()                               # every warmed-up run ends better
# --8<-- [end:adam-first-steps]

print(f"range test: Adam knee {adam['knee']:.4f}, best peak {adam['best']:.4f}; "
      f"SGD knee {sgd['knee']:.4f}, best peak {sgd['best']:.4f}")
print("Adam sweep", dict(zip(np.round(adam["peaks"], 5), np.round(adam["val"], 3))))
print("SGD sweep", dict(zip(np.round(sgd["peaks"], 5), np.round(sgd["val"], 3))))
print(f"Adam step RMS / lr: {step_rms[[0, 9, 99, 299]].round(3)}; spikes cold {spike_cold.round(1)}, "
      f"warm {spike_warm.round(2)}; val cold {val[0::2].round(3)}, warm {val[1::2].round(3)}")

fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
fig.subplots_adjust(wspace=0.3)
t = np.arange(1000)
step = np.where(t < 300, 1.0, np.where(t < 600, 0.1, np.where(t < 800, 0.01, 0.001)))
ax1.plot(t, warmup_cosine(t, 1.0, 1000, 50), label="warm-up + cosine")
ax1.plot(t, np.minimum((t + 1) / 50, 1.0) * step, label="warm-up + step (x0.1)")
ax1.plot(t, np.minimum((t + 1) / 50, np.clip((1000 - t) / 950, 0, 1)), label="warm-up + linear to 0")
ax1.plot(t, np.minimum((t + 1) / 50, np.where(t < 800, 1.0, 1 - (t - 800) / 200)), label="warm-up, stable, decay")
ax1.set(xlabel="step", ylabel="learning rate / peak", title="Schedules")
ax1.legend(fontsize=7)
for r, c, name in [(adam, "tab:blue", "Adam"), (sgd, "tab:orange", "SGD + momentum")]:
    ax2.plot(r["rates"], r["smooth"], c=c, label=f"{name}: knee {r['knee']:.3f}")
    ax2.axvline(r["knee"], c=c, ls=":", lw=1)
    ax2.plot(r["peaks"], np.minimum(r["val"], 3), "o--", c=c, ms=4, lw=0.8,
             label=f"{name}: sweep, best peak {r['best']:.3f}")
ax2.set(xscale="log", xlabel="learning rate", ylabel="loss (clipped at 3)", ylim=(0, 3.05),
        title="Range test (lines) vs sweep (dots)")
ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
for k in range(3):
    ax3.plot(losses[2 * k, :100], c="tab:red", lw=0.9, label="no warm-up" if k == 0 else None)
    ax3.plot(losses[2 * k + 1, :100], c="tab:green", lw=0.9, label="60-step warm-up" if k == 0 else None)
ax3.set(yscale="log", xlabel="step", ylabel="training loss", title="Adam at peak 0.1, 3 inits")
ax3.legend(fontsize=8)
save(fig, "deep-learning", "learning-rate-schedules", exact=False)
