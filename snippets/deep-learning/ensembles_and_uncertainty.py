"""Deep ensembles and MC dropout on scikit-learn's digits: five nets against one (error, NLL,
calibration), temperature scaling, and uncertainty that rises on shifted (noisy) inputs."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

digits = load_digits()
X = torch.tensor(digits.data / 16, dtype=torch.float32)
y = torch.tensor(digits.target)
rest, test = train_test_split(np.arange(len(X)), test_size=0.4, random_state=0, stratify=digits.target)
train, val = train_test_split(rest, train_size=500, random_state=0, stratify=digits.target[rest])
Xte, yte = X[test], y[test]

# --8<-- [start:ensemble]
def make_net(seed: int, p_drop: float = 0.0) -> nn.Sequential:
    torch.manual_seed(seed)                                    # members differ only by init ...
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(p_drop),
                         nn.Linear(256, 256), nn.ReLU(), nn.Dropout(p_drop), nn.Linear(256, 10))


def fit(net: nn.Module, seed: int, steps: int = 200) -> nn.Module:
    order = torch.Generator().manual_seed(seed)                # ... and by the order of the batches
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, foreach=True)
    idx = torch.tensor(train)
    net.train()
    for _ in range(steps):
        b = idx[torch.randint(0, len(idx), (128,), generator=order)]
        opt.zero_grad()
        nn.functional.cross_entropy(net(X[b]), y[b]).backward()
        opt.step()
    return net.eval()


def nll(p: torch.Tensor, target: torch.Tensor) -> float:
    return nn.functional.nll_loss(p.clamp_min(1e-12).log(), target).item()


def ece(p: torch.Tensor, target: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error: |accuracy - confidence| per confidence bin, weighted by bin size."""
    conf, pred = p.max(1)
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.float().mean().item() * abs((pred[m] == target[m]).float().mean().item() - conf[m].mean().item())
    return total


def scores(p: torch.Tensor, target: torch.Tensor = yte) -> dict[str, float]:
    return {"error": (p.argmax(1) != target).float().mean().item(), "NLL": nll(p, target), "ECE": ece(p, target)}


members = [fit(make_net(seed), seed) for seed in range(5)]


@torch.no_grad()
def member_probs(x: torch.Tensor) -> torch.Tensor:            # (members, N, classes)
    return torch.stack([m(x).softmax(1) for m in members])


P = member_probs(Xte)
single = [scores(p) for p in P]
ensemble = scores(P.mean(0))                                   # average the probabilities, not the logits
for metric in ("error", "NLL", "ECE"):
    assert ensemble[metric] < min(s[metric] for s in single), metric   # better than every member
mean_single = {k: np.mean([s[k] for s in single]) for k in ensemble}
claim("719", len(test))
claim("3.6%", mean_single["error"])
claim("3.2%", ensemble["error"])
claim("0.161", mean_single["NLL"])
claim("0.149", ensemble["NLL"])
claim("2.2%", mean_single["ECE"])
claim("1.6%", ensemble["ECE"])
# --8<-- [end:ensemble]
print("members", [{k: round(v, 4) for k, v in s.items()} for s in single])
print("ensemble", {k: round(v, 4) for k, v in ensemble.items()},
      "mean member", {k: round(v, 4) for k, v in mean_single.items()})

# --8<-- [start:temperature]
# Temperature scaling (Guo et al., 2017): one scalar T on the logits, fitted on the validation set.
m0 = members[0]
with torch.no_grad():
    val_logits, test_logits = m0(X[val]), m0(Xte)
log_t = torch.zeros(1, requires_grad=True)
opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)


def closure():
    opt.zero_grad()
    loss = nn.functional.cross_entropy(val_logits / log_t.exp(), y[val])
    loss.backward()
    return loss


opt.step(closure)
T = log_t.exp().item()
scaled = scores((test_logits / T).softmax(1))
assert T > 1                                                   # the net was overconfident
assert scaled["error"] == single[0]["error"]                   # T never changes the argmax
assert scaled["NLL"] < single[0]["NLL"] and scaled["ECE"] < single[0]["ECE"]
claim("1.6", T)
claim("0.133", scaled["NLL"])
claim("1.6%", scaled["ECE"])
claim("0.151", single[0]["NLL"])
claim("2.2%", single[0]["ECE"])                                # member 0 before scaling (2.24%)
# --8<-- [end:temperature]
print(f"temperature {T:.3f}: member 0 {single[0]} -> {scaled}")

# --8<-- [start:uncertainty]
mc_net = fit(make_net(10, p_drop=0.3), seed=10)


@torch.no_grad()
def mc_dropout_probs(x: torch.Tensor, passes: int = 30) -> torch.Tensor:   # (passes, N, classes)
    mc_net.train()                                             # dropout stays on at test time
    torch.manual_seed(0)
    out = torch.stack([mc_net(x).softmax(1) for _ in range(passes)])
    mc_net.eval()
    return out


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def split_uncertainty(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Total predictive entropy = expected entropy (aleatoric) + mutual information (epistemic)."""
    total = entropy(samples.mean(0))
    aleatoric = entropy(samples).mean(0)
    return total, total - aleatoric


noise = torch.Generator().manual_seed(0)
SIGMAS = [0.0, 0.25, 0.5, 0.75, 1.0]
curves = {name: {"error": [], "entropy": [], "MI": []} for name in ("single net", "MC dropout", "ensemble")}
clean, auroc = {}, {}
for s in SIGMAS:
    xs = (Xte + s * torch.randn(Xte.shape, generator=noise)).clamp(0, 1)   # pixels stay in [0, 1]
    ens = member_probs(xs)
    samples = {"single net": ens[:1], "MC dropout": mc_dropout_probs(xs), "ensemble": ens}
    for name, smp in samples.items():
        total, mi = split_uncertainty(smp)
        curves[name]["error"].append((smp.mean(0).argmax(1) != yte).float().mean().item())
        curves[name]["entropy"].append(total.mean().item())
        curves[name]["MI"].append(mi.mean().item())
        if s == 0:
            clean[name] = (total, mi, smp.mean(0))
        if s == 0.5:                                           # can the uncertainty tell clean from shifted?
            labels = np.r_[np.zeros(len(xs)), np.ones(len(xs))]
            auroc[name] = roc_auc_score(labels, torch.cat([clean[name][0], total]).numpy())
            if name != "single net":
                auroc[name + " (MI)"] = roc_auc_score(labels, torch.cat([clean[name][1], mi]).numpy())
mc = scores(clean["MC dropout"][2])

for name in ("MC dropout", "ensemble"):
    ent, mi = curves[name]["entropy"], curves[name]["MI"]
    assert all(v > ent[0] for v in ent[1:]) and all(v > mi[0] for v in mi[1:]), name   # higher on every shifted set
    assert ent[-1] > curves["single net"]["entropy"][-1]       # more uncertain than one net when it should be
assert curves["single net"]["MI"] == [0.0] * len(SIGMAS)     # one deterministic net has no epistemic term
assert auroc["ensemble"] > auroc["single net"] and auroc["MC dropout"] > auroc["single net"]
assert auroc["ensemble (MI)"] > auroc["ensemble"]
i = SIGMAS.index(0.5)
claim("0.81", auroc["ensemble"])
claim("0.79", auroc["single net"])
claim("0.82", auroc["MC dropout"])
claim("0.83", auroc["MC dropout (MI)"])
claim("0.85", auroc["ensemble (MI)"])
claim("44%", curves["ensemble"]["error"][i])
claim("75%", curves["single net"]["error"][-1])
claim("0.33", curves["single net"]["entropy"][-1])
claim("0.44", curves["ensemble"]["entropy"][-1])
claim("0.58", curves["MC dropout"]["entropy"][-1])
claim("15×", curves["ensemble"]["MI"][i] / curves["ensemble"]["MI"][0])
claim("3.8%", mc["error"])
claim("0.5%", mc["ECE"])
assert mc["ECE"] < ensemble["ECE"] and mc["NLL"] < ensemble["NLL"]
claim("0.135", mc["NLL"], tol=0.001)
# --8<-- [end:uncertainty]
print("MC dropout", mc)
for name, c in curves.items():
    print(name, {k: [round(v, 3) for v in vals] for k, vals in c.items()})
print("AUROC clean vs sigma 0.5:", {k: round(v, 3) for k, v in auroc.items()})

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.6))
colors = {"single net": "tab:gray", "MC dropout": "tab:orange", "ensemble": "tab:blue"}
for name, c in curves.items():
    ax1.plot(SIGMAS, c["error"], "o-", c=colors[name], label=name)
    ax2.plot(SIGMAS, c["entropy"], "o-", c=colors[name], label=f"{name}: total entropy")
    if name != "single net":
        ax2.plot(SIGMAS, c["MI"], "s--", c=colors[name], ms=4, label=f"{name}: mutual information")
ax1.set(xlabel="Gaussian pixel noise σ (shift severity)", ylabel="test error", title="Error under shift")
ax2.set(xlabel="Gaussian pixel noise σ (shift severity)", ylabel="nats", title="Uncertainty under shift")
ax1.legend(fontsize=8)
ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
save(fig, "deep-learning", "ensembles-uncertainty")
