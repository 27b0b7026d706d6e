"""Self-supervised learning on digits: InfoNCE = cross-entropy, a linear probe, and collapse without negatives."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)


# --8<-- [start:infonce]
def info_nce_written_out(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """-1/N sum_i log( exp(s_ii/tau) / sum_j exp(s_ij/tau) ), s = cosine similarity, one loop per anchor."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    terms = []
    for i in range(len(z1)):
        s = z2 @ z1[i] / tau                       # anchor i against every view in the batch
        terms.append(-(s[i] - torch.log(torch.exp(s).sum())))
    return torch.stack(terms).mean()


def info_nce(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """The same loss as N-way classification: the logits are the similarity matrix, the label is the diagonal."""
    logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / tau
    return F.cross_entropy(logits, torch.arange(len(z1)))


z1, z2 = torch.randn(64, 32, dtype=torch.float64), torch.randn(64, 32, dtype=torch.float64)
assert torch.allclose(info_nce_written_out(z1, z2, 0.1), info_nce(z1, z2, 0.1), atol=1e-12)
# Positives identical to their anchors and negatives random: the loss drops far below log N.
assert info_nce(z1, z1, 0.1) < 0.01 * info_nce(z1, z2, 0.1)
claim("4.85", math.log(128))                      # log N for a batch of 128: the InfoNCE bound's ceiling
# --8<-- [end:infonce]

# --8<-- [start:data]
X, y = load_digits(return_X_y=True)                # 1,797 8x8 digits; labels only for the probe
X = torch.tensor(X / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
perm = torch.randperm(len(X), generator=gen)
train, test = perm[:1200], perm[1200:]


def augment(x: torch.Tensor, drop: float = 0.25, noise: float = 0.1) -> torch.Tensor:
    """A random view: shift by up to 1 px, drop 25% of the pixels, rescale contrast, add noise."""
    n = len(x)
    padded = F.pad(x, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (n,), generator=gen), torch.randint(0, 3, (n,), generator=gen)
    r = torch.arange(8)
    rows = (dy[:, None] + r)[:, :, None].expand(n, 8, 8)
    cols = (dx[:, None] + r)[:, None, :].expand(n, 8, 8)
    out = padded[torch.arange(n)[:, None, None], 0, rows, cols]
    out = out * (torch.rand(out.shape, generator=gen) > drop) * (0.6 + 0.8 * torch.rand(n, 1, 1, generator=gen))
    return (out + noise * torch.randn(out.shape, generator=gen)).flatten(1)


def encoder() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))


def batch(size: int = 128) -> torch.Tensor:
    return X[train][torch.randint(0, len(train), (size,), generator=gen)]
# --8<-- [end:data]


# --8<-- [start:probe]
x_train, x_test = X[train].flatten(1), X[test].flatten(1)
x_test_shifted = augment(X[test], drop=0.0, noise=0.0)   # the same test digits, moved by up to 1 px
y_train, y_test = y[train.numpy()], y[test.numpy()]
few = np.concatenate([np.flatnonzero(y_train == c)[:10] for c in range(10)])   # 10 labels per class


def linear_probe(features) -> tuple[float, float]:
    """Logistic regression on frozen features: accuracy on clean and on shifted test digits."""
    with torch.no_grad():
        a, b, c = (features(v).numpy() for v in (x_train, x_test, x_test_shifted))
    clf = LogisticRegression(max_iter=1000).fit(a[few], y_train[few])
    return clf.score(b, y_test), clf.score(c, y_test)


f = encoder()
raw_clean, raw_shift = linear_probe(lambda v: v)
rand_clean, rand_shift = linear_probe(f)            # the same network, untrained
opt = torch.optim.Adam(f.parameters(), lr=3e-3)
for step in range(400):                            # SimCLR-style: two views of each image, InfoNCE
    b = batch()
    loss = info_nce(f(augment(b)), f(augment(b)), tau=0.2)
    opt.zero_grad()
    loss.backward()
    opt.step()
ssl_clean, ssl_shift = linear_probe(f)

assert ssl_clean > rand_clean + 0.10 and ssl_shift > max(rand_shift, raw_shift) + 0.4
claim("66%", rand_clean, tol=0.01), claim("83–86%", ssl_clean), claim("89%", raw_clean, tol=0.01)
claim("28%", raw_shift, tol=0.01), claim("22%", rand_shift, tol=0.01), claim("80–84%", ssl_shift)
claim("about 1.6 nats", math.log(128) - loss.item(), tol=0.1)   # InfoNCE's lower bound on I(view1; view2)
# --8<-- [end:probe]
print(f"probe clean/shifted: raw {raw_clean:.3f}/{raw_shift:.3f}, random {rand_clean:.3f}/{rand_shift:.3f}, "
      f"SSL {ssl_clean:.3f}/{ssl_shift:.3f}; final InfoNCE {loss.item():.3f}")


# --8<-- [start:collapse]
def spread(z: torch.Tensor) -> float:
    """Std over the batch of the L2-normalised embedding, averaged over dimensions: 1/sqrt(d) if spread, 0 if
    collapsed.
    """
    return F.normalize(z, dim=1).std(dim=0).mean().item()


def train_siamese(kind: str, steps: int = 200) -> list[float]:
    torch.manual_seed(1)
    f = encoder()
    opt = torch.optim.Adam(f.parameters(), lr=3e-3)
    history = []
    for step in range(steps):
        b = batch()
        z1, z2 = f(augment(b)), f(augment(b))
        if kind == "positives only":           # pull the two views together, nothing pushes apart
            loss = -F.cosine_similarity(z1, z2).mean()
        else:                                  # InfoNCE: the other images in the batch are negatives
            loss = info_nce(z1, z2, tau=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(spread(z1.detach()))
    return history


runs = {kind: train_siamese(kind) for kind in ("positives only", "InfoNCE")}
ideal = 1 / math.sqrt(32)
claim("0.177", ideal)
claim("below 0.01", runs["positives only"][-1])            # collapsed: every image maps to one point
claim("above 0.15", runs["InfoNCE"][-1])                   # negatives keep it spread
# --8<-- [end:collapse]
print({k: round(v[-1], 4) for k, v in runs.items()})

fig, ax = plt.subplots(figsize=(6, 3.4))
for kind, h in runs.items():
    ax.plot(h, label=kind)
ax.axhline(ideal, color="0.5", ls="--", lw=1, label="1/√d (fully spread)")
ax.set(xlabel="training step", ylabel="std of normalised embedding", ylim=(0, 0.2),
       title="Positives only: the embedding collapses to a point")
ax.legend(fontsize=8)
save(fig, "representation-and-generative", "ssl-collapse")
