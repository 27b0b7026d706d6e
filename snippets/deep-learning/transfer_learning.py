"""Pretrain on a large synthetic task, transfer to a small related one, compare with training from scratch."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)

# --8<-- [start:data]
# A synthetic "world": 6 factors z that matter, 24 nuisance factors u with 3x the spread,
# mixed into 48 observed features. Every task's label depends on z only, through its own V.
D_Z, D_U, D_X = 6, 24, 48
g = torch.Generator().manual_seed(0)
MIX = torch.linalg.qr(torch.randn(D_X, D_Z + D_U, generator=g))[0].T
V_SOURCE = torch.randn(D_Z, 8, generator=g)     # source task: 8 classes
V_TARGET = torch.randn(D_Z, 3, generator=g)     # target task: 3 different classes, same factors


def sample(V: torch.Tensor, n: int, seed: int, label_from: str = "z"):
    gen = torch.Generator().manual_seed(seed)
    z, u = torch.randn(n, D_Z, generator=gen), 3 * torch.randn(n, D_U, generator=gen)
    x = torch.cat([z, u], 1) @ MIX + 0.1 * torch.randn(n, D_X, generator=gen)
    factors = z if label_from == "z" else u[:, :D_Z]
    return x, (factors @ V).argmax(1)
# --8<-- [end:data]


# --8<-- [start:train]
def make_net(n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(D_X, 64), nn.ReLU(),      # body: the reusable features
                         nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, n_classes))            # head: task-specific


claim("7,491", sum(p.numel() for p in make_net(3).parameters()))    # the whole network
claim("195", sum(p.numel() for p in make_net(3)[4].parameters()))    # the head: 64 * 3 + 3


def train(net, X, y, param_groups, steps: int, seed: int, batch: int = 64) -> nn.Sequential:
    opt = torch.optim.Adam(param_groups)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(X), (min(batch, len(X)),), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(net(X[idx]), y[idx]).backward()
        opt.step()
    return net


def accuracy(net, X, y) -> float:
    with torch.no_grad():
        return (net(X).argmax(1) == y).float().mean().item()


def pretrain(label_from: str = "z") -> dict:
    torch.manual_seed(0)
    X, y = sample(V_SOURCE, 4000, seed=1, label_from=label_from)
    net = make_net(8)
    train(net, X, y, [{"params": net.parameters(), "lr": 3e-3}], steps=250, seed=0, batch=128)
    return {k: v for k, v in net.state_dict().items() if not k.startswith("4.")}   # drop the head


def adapt(method: str, body: dict, X, y, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = make_net(3)                                    # fresh 3-class head in every case
    head = list(net[4].parameters())
    body_params = [p for m in list(net)[:4] for p in m.parameters()]
    if method == "scratch":                              # random init, everything trains
        groups = [{"params": net.parameters(), "lr": 3e-3}]
    elif method == "linear probe":                       # pretrained body frozen, head trains
        net.load_state_dict(body, strict=False)
        for p in body_params:
            p.requires_grad_(False)
        groups = [{"params": head, "lr": 1e-2}]
    else:                                                # fine-tune: small lr for the body ...
        net.load_state_dict(body, strict=False)
        body_lr = 3e-3 if method == "fine-tune, scratch lr" else 3e-4   # ... or the scratch one
        groups = [{"params": body_params, "lr": body_lr}, {"params": head, "lr": 3e-3}]
    return train(net, X, y, groups, steps=120, seed=seed)
# --8<-- [end:train]


# --8<-- [start:experiment]
body = pretrain()
X_test, y_test = sample(V_TARGET, 3000, seed=2)
methods, sizes, seeds = ("scratch", "linear probe", "fine-tune"), (30, 100, 300, 1000), (0, 1)
acc = {m: [] for m in methods}
scratch_train_acc, ft_scratch_lr = [], []
for n in sizes:
    runs = {m: [] for m in methods}
    for s in seeds:
        X, y = sample(V_TARGET, n, seed=100 + s)          # the small labelled target set
        for m in methods:
            net = adapt(m, body, X, y, seed=s)
            runs[m].append(accuracy(net, X_test, y_test))
            if n == 30 and m == "scratch":
                scratch_train_acc.append(accuracy(net, X, y))
        if n == 30:                                       # fine-tuning at the from-scratch lr
            ft_scratch_lr.append(accuracy(adapt("fine-tune, scratch lr", body, X, y, seed=s), X_test, y_test))
    for m in methods:
        acc[m].append(float(np.mean(runs[m])))
acc = {m: np.array(v) for m, v in acc.items()}

# The table: mean test accuracy of 2 seeds for n = 30, 100, 300, 1000.
claim("0.37", acc["scratch"][0]); claim("0.51", acc["scratch"][1])
claim("0.70", acc["scratch"][2]); claim("0.80", acc["scratch"][3])
claim("0.70", acc["linear probe"][0]); claim("0.75", acc["linear probe"][1])
claim("0.80", acc["linear probe"][2]); claim("0.80", acc["linear probe"][3])
claim("0.62", acc["fine-tune"][0]); claim("0.72", acc["fine-tune"][1])
claim("0.78", acc["fine-tune"][2]); claim("0.80", acc["fine-tune"][3])
# 10 labels per class: a large gain, and freezing beats fine-tuning; scratch memorises its 30 examples.
claim("+0.32 for the probe", acc["linear probe"][0] - acc["scratch"][0])
claim("+0.25 for fine-tuning", acc["fine-tune"][0] - acc["scratch"][0])
claim("100% training accuracy", min(scratch_train_acc))
best_transfer = np.maximum(acc["linear probe"], acc["fine-tune"])
assert (best_transfer[:3] > acc["scratch"][:3] + 0.05).all()   # and still clearly at 100 and 300
final = [acc[m][-1] for m in methods]
claim("within 0.01 of each other", max(final) - min(final))  # at 1000 labels all three are level
# The from-scratch learning rate on the pretrained body throws much of the transfer away.
claim("0.49", np.mean(ft_scratch_lr))
# --8<-- [end:experiment]
print("target accuracy (mean of 2 seeds), n = " + ", ".join(map(str, sizes)))
for m in methods:
    print(f"  {m:13s}" + "  ".join(f"{a:.3f}" for a in acc[m]))


# --8<-- [start:unrelated]
# Pretrain on labels that depend on nuisance factors only: the body learns the wrong features.
wrong_body = pretrain(label_from="u")
X, y = sample(V_TARGET, 30, seed=100)
probe_wrong = accuracy(adapt("linear probe", wrong_body, X, y, seed=0), X_test, y_test)
probe_right = accuracy(adapt("linear probe", body, X, y, seed=0), X_test, y_test)
claim("0.34 (chance)", probe_wrong)                     # near chance (1/3) for the target task
claim("against 0.72", probe_right)
# --8<-- [end:unrelated]
print(f"linear probe, n=30: related source {probe_right:.3f}, unrelated source {probe_wrong:.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
for m, c in zip(methods, ["tab:red", "tab:blue", "tab:green"]):
    ax.plot(sizes, acc[m], "o-", c=c, label=m)
ax.axhline(1 / 3, c="0.6", ls=":", lw=1, label="chance")
ax.set(xscale="log", xlabel="labelled target examples", ylabel="target test accuracy",
       title="Transfer vs scratch on a small synthetic target task")
ax.set_xticks(sizes, [str(s) for s in sizes])
ax.legend(fontsize=8, loc="lower right")
save(fig, "deep-learning", "transfer-vs-scratch", exact=False)
