"""Four planted faults in a small digits classifier, each caught by the check that is meant to catch it."""
from __future__ import annotations

import math
import warnings

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

# --8<-- [start:setup]
digits = load_digits()                                   # 1,797 8x8 images, 10 classes
images = np.round(digits.images * 255 / 16).astype(np.uint8)   # as a JPEG loader returns them: 0-255
labels = torch.tensor(digits.target)
C = 10
split = np.random.default_rng(0).permutation(len(images))
train_idx, val_idx = split[:1400], split[1400:]
MEAN = images[train_idx].mean() / 255                   # statistics of the [0, 1] images
STD = images[train_idx].std() / 255


def preprocess(img: np.ndarray, divide_twice: bool = False) -> torch.Tensor:
    x = img.reshape(len(img), -1).astype(np.float32) / 255
    if divide_twice:                                    # the planted bug: a second "/ 255" downstream
        x = x / 255
    return torch.tensor((x - MEAN) / STD, dtype=torch.float32)


def make_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, C))


X_train, y_train = preprocess(images[train_idx]), labels[train_idx]
X_val, y_val = preprocess(images[val_idx]), labels[val_idx]
# --8<-- [end:setup]


# --8<-- [start:guard]
class Guard:
    """Stops on a non-finite loss or gradient; flags a gradient norm 10x above the running median."""

    def __init__(self, factor: float = 10.0):
        self.factor, self.norms, self.first_spike = factor, [], None

    def check(self, step: int, loss: torch.Tensor, net: nn.Module) -> None:
        norm = nn.utils.get_total_norm([p.grad for p in net.parameters()]).item()  # measures, no clipping
        if self.norms and norm > self.factor * float(np.median(self.norms)) and self.first_spike is None:
            self.first_spike = step
        self.norms.append(norm)
        if not (math.isfinite(loss.item()) and math.isfinite(norm)):
            raise FloatingPointError(f"step {step}: loss {loss.item()}, gradient norm {norm}")


def train(X, y, steps=300, opt="adam", lr=1e-3, batch=64, one_batch=False, seed=0, guarded=True):
    """Mini-batch training with the guard; returns the net, the loss per step, and the guard."""
    net, gen, guard, losses = make_net(seed), torch.Generator().manual_seed(seed), Guard(), []
    optim = (torch.optim.Adam(net.parameters(), lr) if opt == "adam"
             else torch.optim.SGD(net.parameters(), lr, momentum=0.9))
    for step in range(steps):
        idx = torch.arange(batch) if one_batch else torch.randint(0, len(X), (batch,), generator=gen)
        loss = F.cross_entropy(net(X[idx]), y[idx])
        optim.zero_grad()
        loss.backward()
        losses.append(loss.item())
        try:
            guard.check(step, loss, net)
        except FloatingPointError:
            if guarded:
                break
        optim.step()
    return net, np.array(losses), guard


def accuracy(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (net(X).argmax(1) == y).float().mean().item()
# --8<-- [end:guard]


# --8<-- [start:healthy]
# Check 2: the loss at initialisation. A classifier that knows nothing predicts ~uniform: ln C.
net, healthy, guard = train(X_train, y_train)
claim("2.303", math.log(C))
assert abs(healthy[0] - math.log(C)) < 0.05                    # step 0 is at ln 10
claim("under 0.1", healthy[-20:].mean())                        # and it learns
claim("over 95%", accuracy(net, X_val, y_val))
assert guard.first_spike is None                                # a healthy run never trips the guard
# A softmax applied before cross_entropy squeezes the logits into [0, 1]: even a perfect, confident
# prediction (probability 1 on the true class) then scores ln(e + C - 1) - 1, never near 0.
perfect = torch.softmax(torch.tensor([[50.0] + [-50.0] * (C - 1)]), dim=1)   # "logits" in [0, 1]
floor = F.cross_entropy(perfect, torch.tensor([0])).item()
claim("1.46", floor)
assert abs(floor - (math.log(math.e + C - 1) - 1)) < 1e-6
# --8<-- [end:healthy]


# --8<-- [start:fault-lr]
# Fault 1: SGD at lr 30 instead of 0.1, three seeds. Unguarded, the loss explodes past 1e20; two
# runs end in NaN, the third stays finite but is garbage. Guarded, every run stops at the explosion,
# when the gradient norm overflows float32; and the norm check has flagged every run since step 1.
nan_at, stops, peak_loss, garbage, jumps = [], [], [], [], []
for seed in (0, 1, 2):
    _, unguarded, _ = train(X_train, y_train, steps=100, opt="sgd", lr=30.0, guarded=False, seed=seed)
    nans = np.flatnonzero(np.isnan(unguarded))
    nan_at.append(int(nans[0]) if len(nans) else None)
    if len(nans):
        assert np.isnan(unguarded[nans[0]:]).all()                  # NaN never recovers
    else:
        garbage.append(unguarded[-20:].mean())                      # finite, and useless
    _, diverged_s, guard_s = train(X_train, y_train, opt="sgd", lr=30.0, seed=seed)
    stops.append(len(diverged_s) - 1)
    assert not math.isfinite(guard_s.norms[-1]) and np.isfinite(diverged_s).all()
    peak_loss.append(diverged_s[-1])
    assert guard_s.first_spike == 1
    jumps.append(guard_s.norms[1] / guard_s.norms[0])
    if seed == 0:
        diverged, guard = diverged_s, guard_s
claim("step 81", nan_at[0]), claim("step 19", nan_at[2])
assert nan_at[1] is None                                            # no NaN at all for seed 1 ...
claim("over 15 times", garbage[0] / math.log(C))                    # ... but a loss 15x ln C
claim("steps 6–42", min(stops)), claim("steps 6–42", max(stops)), claim("step 42", stops[0])
assert all(n is None or n > s for n, s in zip(nan_at, stops))       # the guard stops first
claim("over $10^{20}$", min(peak_loss))                             # the loss at the stop, still finite
claim("over 100", min(jumps))                                       # the norm at step 1 vs at init
# Ten times lower, lr 3 stays finite: the loss bounces, then goes flat near ln C, because the
# spikes have killed every ReLU unit and only the output bias still learns.
net_osc, oscillating, guard_osc = train(X_train, y_train, steps=150, opt="sgd", lr=3.0)
assert np.isfinite(oscillating).all() and oscillating.max() > 50 * math.log(C)
assert guard_osc.first_spike is not None and abs(oscillating[-20:].mean() - math.log(C)) < 0.15
with torch.no_grad():
    hidden = net_osc[1](net_osc[0](X_train))
    dead = [(h.max(dim=0).values <= 0).float().mean().item() for h in (hidden, net_osc[3](net_osc[2](hidden)))]
claim("100%", min(dead))                                      # of both hidden layers' units
# lr 0.1 trains and never trips the norm check.
_, sane, guard_sane = train(X_train, y_train, steps=150, opt="sgd", lr=0.1)
assert guard_sane.first_spike is None and sane[-20:].mean() < 0.1
# --8<-- [end:fault-lr]


# --8<-- [start:fault-labels]
# Fault 2: labels shuffled against the images (a misaligned join, a sorted file list).
shuffled = y_train[torch.randperm(len(y_train), generator=torch.Generator().manual_seed(1))]
net_shuf, flat_labels, _ = train(X_train, shuffled)
prior = torch.bincount(y_train, minlength=C).float() / len(y_train)
label_entropy = -(prior * prior.log()).sum().item()            # what "predict the class frequencies" scores
claim("2.30", label_entropy)
claim("2.0–2.3", flat_labels[-20:].mean())                     # barely below ln C after 300 steps
claim("5–15%", accuracy(net_shuf, X_val, y_val))              # chance (10%) on held-out data
# --8<-- [end:fault-labels]


# --8<-- [start:fault-preprocessing]
# Fault 3: the image is divided by 255 twice. Look at the batch the model actually receives:
X_bug = preprocess(images[train_idx], divide_twice=True)
claim("1.00", X_train.std())                                   # what the model should see
claim("0.0039", X_bug.std())                                   # 1/255 of it: the input is almost constant
_, flat_bug, _ = train(X_bug, y_train)
assert abs(flat_bug[-20:].mean() - math.log(C)) < 0.05        # flat at ln C, like shuffled labels
# --8<-- [end:fault-preprocessing]


# --8<-- [start:overfit-one-batch]
# Check 3: overfit one batch of 32. It tells the two flat curves apart.
_, one_bug, _ = train(X_bug, y_train, steps=150, batch=32, one_batch=True)
_, one_fixed, _ = train(X_train, y_train, steps=150, batch=32, one_batch=True)
_, one_shuf, _ = train(X_train, shuffled, steps=150, batch=32, one_batch=True)
batch_prior = torch.bincount(y_train[:32], minlength=C).float() / 32
batch_entropy = -(batch_prior[batch_prior > 0] * batch_prior[batch_prior > 0].log()).sum().item()
claim("2.08", one_bug[-1])                       # stuck: the model cannot tell the 32 inputs apart ...
assert abs(one_bug[-1] - batch_entropy) < 5e-4     # ... so it learns only the batch's label frequencies
claim("under 0.01", one_fixed[-1])               # fixed: near-zero loss, the pipeline can learn
claim("under 0.01", one_shuf[-1])                # shuffled labels pass this test: it cannot catch them
# --8<-- [end:overfit-one-batch]

# --8<-- [start:nan-hunt]
# Where a NaN comes from when the learning rate is fine: an op whose derivative is infinite.
v = torch.zeros(3, requires_grad=True)              # e.g. a distance between two identical points
(v * v).sum().sqrt().backward()
assert torch.isnan(v.grad).all()                     # d sqrt(s)/ds = inf at s = 0, times 2v = 0: NaN
v.grad = None
with warnings.catch_warnings():
    warnings.simplefilter("ignore")                  # anomaly mode warns that it is slow
    try:
        with torch.autograd.detect_anomaly():        # debugging only: it slows every op down
            (v * v).sum().sqrt().backward()
        raise AssertionError("anomaly mode did not fire")
    except RuntimeError as err:                      # it names the first backward op that returned
        assert "MulBackward0" in str(err)            # NaN: the multiply, one op after the real culprit
v.grad = None
(v * v + 1e-12).sum().sqrt().backward()              # the fix: keep sqrt away from 0
assert torch.isfinite(v.grad).all()
# log(softmax(z)) underflows to -inf; log_softmax (what cross_entropy uses) stays finite.
z = torch.tensor([[0.0, 120.0]])
assert torch.isinf(torch.softmax(z, dim=1).log()).any() and torch.isfinite(F.log_softmax(z, dim=1)).all()
# --8<-- [end:nan-hunt]

print(f"healthy: loss {healthy[0]:.3f} -> {healthy[-20:].mean():.3f}; lr 30: NaN at steps {nan_at}, "
      f"guard stops at {stops}, first norm spike at step {guard.first_spike}; "
      f"shuffled: {flat_labels[-20:].mean():.3f}, "
      f"val acc {accuracy(net_shuf, X_val, y_val):.3f}; /255 twice: std {X_bug.std():.4f}, "
      f"loss {flat_bug[-20:].mean():.3f}; one batch: bug {one_bug[-1]:.3f}, fixed {one_fixed[-1]:.4f}, "
      f"shuffled {one_shuf[-1]:.4f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
steps = np.arange(300)
ax1.plot(steps, healthy, c="tab:green", lw=1, label="healthy (Adam 1e-3)")
ax1.plot(steps[:len(oscillating)], oscillating, c="tab:orange", lw=0.8, label="SGD lr 3: bounces, then all ReLUs dead")
ax1.plot(steps[:len(diverged)], diverged, c="tab:red", lw=1, label=f"SGD lr 30: guard stops it at step {stops[0]}")
ax1.plot(steps, flat_labels, c="tab:purple", lw=1, label="shuffled labels")
ax1.plot(steps, flat_bug, c="tab:blue", lw=1, ls="--", label="input divided by 255 twice")
ax1.axhline(math.log(C), c="0.5", lw=0.8, ls=":")
ax1.text(305, math.log(C), "ln 10", va="center", fontsize=8, color="0.4")
ax1.set(yscale="log", xlabel="step", ylabel="training loss (batch of 64)", title="Full training set",
        ylim=(1e-2, 1e8))
ax1.legend(fontsize=7, loc="upper right")
s1 = np.arange(150)
ax2.plot(s1, one_fixed, c="tab:green", lw=1.2, label="correct preprocessing")
ax2.plot(s1, one_bug, c="tab:blue", lw=1.2, ls="--", label="divided by 255 twice")
ax2.plot(s1, one_shuf, c="tab:purple", lw=1.2, label="shuffled labels (memorised)")
ax2.axhline(math.log(C), c="0.5", lw=0.8, ls=":")
ax2.set(yscale="log", xlabel="step", ylabel="loss on the batch", title="Overfit one batch of 32")
ax2.legend(fontsize=7, loc="lower left")
save(fig, "deep-learning", "debugging-training", exact=False)
