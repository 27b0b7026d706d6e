"""Grad-CAM on a small CNN trained to find a planted pattern: its peak lands on the pattern, it equals CAM
for a GAP + linear head, and it passes the weight-randomisation sanity check that guided backprop fails."""
from __future__ import annotations

import copy

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
rng = np.random.default_rng(0)

# --8<-- [start:data]
S = 24                                                   # image side
PLUS = np.zeros((5, 5), np.float32)
PLUS[2, :] = PLUS[:, 2] = 1.0                            # the planted pattern: a 5x5 plus
RING = np.ones((5, 5), np.float32)
RING[1:4, 1:4] = 0.0                                     # the distractor: a 5x5 square outline


def make_images(n: int, rng) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Noise and 0-2 rings in every image; a plus in the positives. Returns images, labels, plus corners."""
    x = rng.normal(0, 0.2, (n, 1, S, S)).astype(np.float32)
    y = rng.integers(0, 2, n)
    corners = np.full((n, 2), -1)
    for i in range(n):
        k = rng.integers(0, 3) + y[i]                    # the ring count carries no information
        while True:                                      # shapes never overlap
            rc = rng.integers(0, S - 5, (k, 2))
            if all(np.abs(rc[a] - rc[b]).max() > 6 for a in range(k) for b in range(a)):
                break
        for j, (r, c) in enumerate(rc):
            x[i, 0, r:r + 5, c:c + 5] += PLUS if (y[i] and j == 0) else RING
        if y[i]:
            corners[i] = rc[0]
    return torch.from_numpy(x), torch.from_numpy(y), corners
# --8<-- [end:data]


# --8<-- [start:model]
class SmallCNN(nn.Module):
    """Three 3x3 convs and one pooling, then global average pooling and one logit: the CAM layout."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())  # Grad-CAM reads this layer: 16 x 12 x 12
        self.head = nn.Linear(16, 1)                     # the logit of "a plus is present"

    def forward(self, x, keep: list | None = None):
        a = self.features(x)
        if keep is not None:                             # hand the last feature map to Grad-CAM
            a.retain_grad()
            keep.append(a)
        return self.head(a.mean(dim=(2, 3)))[:, 0]


x_train, y_train, _ = make_images(3000, rng)
x_test, y_test, corners_test = make_images(300, rng)
model = SmallCNN()
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for step in range(250):
    idx = torch.randint(0, len(x_train), (32,))
    loss = F.binary_cross_entropy_with_logits(model(x_train[idx]), y_train[idx].float())
    opt.zero_grad()
    loss.backward()
    opt.step()
model.eval()
with torch.no_grad():
    accuracy = ((model(x_test) > 0).long() == y_test).float().mean().item()
claim("98–100%", accuracy)
# --8<-- [end:model]


# --8<-- [start:gradcam]
def grad_cam(net: SmallCNN, x: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k alpha_k A^k) with alpha_k the spatial mean of d(logit)/dA^k, upsampled to the input."""
    keep: list[torch.Tensor] = []
    net.zero_grad()
    net(x, keep).sum().backward()
    a = keep[0]
    alpha = a.grad.mean(dim=(2, 3), keepdim=True)        # (B, K, 1, 1): one weight per channel
    cam = F.relu((alpha * a).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def pointing_game(maps: torch.Tensor, corners: np.ndarray, margin: int = 1) -> float:
    """Share of maps whose maximum falls on the plus: its 5x5 box widened by `margin` pixels."""
    flat = maps.flatten(1).argmax(1).numpy()
    r, c = flat // S, flat % S
    r0, c0 = corners[:, 0] - margin, corners[:, 1] - margin
    return float(((r >= r0) & (r < r0 + 5 + 2 * margin) & (c >= c0) & (c < c0 + 5 + 2 * margin)).mean())


positive = (y_test == 1).numpy()
xp, cp = x_test[positive], corners_test[positive]
claim("139", len(xp))                                    # positive test images
cam = grad_cam(model, xp)
# A random peak lands in the widened 7x7 target this often (the box is clipped at the image border).
rows = np.minimum(cp[:, 0] + 6, S) - np.maximum(cp[:, 0] - 1, 0)
cols = np.minimum(cp[:, 1] + 6, S) - np.maximum(cp[:, 1] - 1, 0)
chance = float((rows * cols).mean() / S**2)
assert chance < 7 * 7 / S**2
claim("8.4%", chance)
claim("100%", pointing_game(cam, cp))                   # the peak is on the plus, never on a ring

# With conv -> global average pooling -> linear, d(logit)/dA^k_ij = w_k / Z at every position, so
# alpha_k = w_k / Z and Grad-CAM is CAM (Zhou et al., 2016) divided by the Z = 144 positions.
with torch.no_grad():
    a = model.features(xp)
    cam_low = F.relu(torch.einsum("k,bkij->bij", model.head.weight[0], a)) / a[0, 0].numel()
keep: list[torch.Tensor] = []
model.zero_grad()
model(xp, keep).sum().backward()
gc_low = F.relu((keep[0].grad.mean(dim=(2, 3), keepdim=True) * keep[0]).sum(1)).detach()
torch.testing.assert_close(gc_low, cam_low)
# --8<-- [end:gradcam]


# --8<-- [start:sanity]
class GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward passes only positive gradients through positive inputs (guided backprop)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * (x > 0)


class Guided(nn.Module):
    def forward(self, x):
        return GuidedReLU.apply(x)


def guided_backprop(net: SmallCNN, x: torch.Tensor) -> torch.Tensor:
    g = copy.deepcopy(net)
    g.features = nn.Sequential(*[Guided() if isinstance(m, nn.ReLU) else m for m in g.features])
    x = x.clone().requires_grad_()
    g(x).sum().backward()
    return x.grad[:, 0].abs()


def ranks(v: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank (as scipy.stats.rankdata, without importing scipy)."""
    order = np.argsort(v, kind="mergesort")
    new_value = np.r_[True, v[order][1:] != v[order][:-1]]
    group = np.cumsum(new_value)[np.argsort(order, kind="mergesort")]
    bounds = np.r_[np.nonzero(new_value)[0], len(v)]
    return 0.5 * (bounds[group] + bounds[group - 1] + 1)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean Spearman correlation between two sets of maps, image by image."""
    return float(np.mean([np.corrcoef(ranks(p.ravel()), ranks(q.ravel()))[0, 1]
                          for p, q in zip(a.numpy(), b.numpy())]))


# Cascading randomisation (Adebayo et al., 2018): re-initialise the layers from the top down and
# watch whether the explanation changes. An explanation of the model must change with the model.
methods = {"Grad-CAM": grad_cam, "guided backprop": guided_backprop}
trained = {name: f(model, xp) for name, f in methods.items()}
claim("100%", pointing_game(trained["guided backprop"], cp))    # on the trained net both look right
net = copy.deepcopy(model)
torch.manual_seed(1)
cascade = {}
for name, layers in [("head", [net.head]), ("conv3", [net.features[7]]),
                     ("conv2", [net.features[3], net.features[4]]), ("conv1", [net.features[0], net.features[1]])]:
    for layer in layers:
        layer.reset_parameters()                         # BatchNorm: weights and running statistics
    maps = {m: f(net, xp) for m, f in methods.items()}
    cascade[name] = {m: (pointing_game(maps[m], cp), rank_correlation(trained[m], maps[m])) for m in maps}

gc, gb = ({k: v[m] for k, v in cascade.items()} for m in methods)
claim("0.63–0.72", gc["head"][1]), claim("0.37–0.59", gb["head"][1])       # head re-initialised
assert gc["head"][0] == gb["head"][0] == 1.0                       # the features alone still find it
claim("73–83%", gc["conv3"][0]), claim("0.29–0.33", gc["conv3"][1])
claim("96–100%", gb["conv3"][0]), claim("0.32–0.46", gb["conv3"][1])
assert gb["conv3"][0] > 0.95 and gb["conv3"][0] > gc["conv3"][0]   # guided backprop barely notices
claim("63–74%", gc["conv2"][0]), claim("0.04–0.09", gc["conv2"][1])
claim("78–84%", gb["conv2"][0]), claim("0.18–0.29", gb["conv2"][1])
claim("5%", gc["conv1"][0]), claim("−0.02 to 0.01", gc["conv1"][1])        # fully random: chance, unrelated map
claim("63%", gb["conv1"][0]), claim("0.12–0.17", gb["conv1"][1])       # guided backprop still "finds" the plus
assert gc["conv1"][0] < chance < gb["conv1"][0]
for m in methods:                                                  # each step moves the map further
    steps = [cascade[name][m][1] for name in cascade]
    assert all(a > b for a, b in zip(steps, steps[1:])), (m, steps)
# --8<-- [end:sanity]


# --8<-- [start:perturb]
def occlusion(net: SmallCNN, x: torch.Tensor, size: int = 5, stride: int = 2) -> torch.Tensor:
    """Drop in the logit when a size x size patch is set to 0, the background mean; at patch centres."""
    base = net(x)
    drop = torch.zeros(len(x), S, S)
    with torch.no_grad():
        for r in range(0, S - size + 1, stride):
            for c in range(0, S - size + 1, stride):
                xo = x.clone()
                xo[:, :, r:r + size, c:c + size] = 0.0
                drop[:, r + size // 2, c + size // 2] = base - net(xo)
    return drop


def integrated_gradients(net: SmallCNN, x: torch.Tensor, steps: int = 32) -> torch.Tensor:
    """(x - x0) times the mean gradient on the straight path from the baseline x0 = 0 (midpoint rule)."""
    total = torch.zeros_like(x)
    for t in (torch.arange(steps) + 0.5) / steps:
        xt = (t * x).requires_grad_()
        (g,) = torch.autograd.grad(net(xt).sum(), xt)
        total += g
    return x * total / steps


claim("784", ((224 - 8) // 8 + 1) ** 2)                  # occlusion forward passes: a 224 px image, stride 8
few, few_corners = xp[:30], cp[:30]
with torch.no_grad():
    occ = occlusion(model, few)
claim("100% of the images", pointing_game(occ, few_corners))   # the causal check agrees with Grad-CAM
# Completeness: integrated-gradient attributions add up to f(x) - f(baseline).
ig = integrated_gradients(model, few)
with torch.no_grad():
    gap = model(few) - model(torch.zeros_like(few))
completeness_error = ((ig.sum(dim=(1, 2, 3)) - gap).abs() / gap.abs()).max().item()
claim("under 2%", completeness_error)
# --8<-- [end:perturb]

print(f"{len(xp)} positives; accuracy {accuracy:.3f}; chance of the pointing game {chance:.3f}; "
      f"IG completeness {completeness_error:.4f}")
for name, row in cascade.items():
    print(name, {m: tuple(round(v, 3) for v in vals) for m, vals in row.items()})

# The figure: one test image with a plus and two rings, and what each method shows.
n_rings = (x_test[positive] > 0.7).flatten(1).sum(1) - 9         # bright pixels beyond the plus's 9
i = int(torch.nonzero(n_rings >= 28)[0])                         # an image with two rings (16 pixels each)
panels = [("input: plus and two rings", xp[i, 0]),
          ("Grad-CAM, trained", cam[i]),
          ("occlusion, trained", occlusion(model, xp[i:i + 1], stride=1)[0]),
          ("guided backprop, trained", trained["guided backprop"][i]),
          ("Grad-CAM, randomised", grad_cam(net, xp[i:i + 1])[0]),
          ("guided backprop, randomised", guided_backprop(net, xp[i:i + 1])[0])]
fig, axes = plt.subplots(2, 3, figsize=(8, 5.6))
for ax, (title, img) in zip(axes.flat, panels):
    ax.imshow(img.detach().numpy(), cmap="gray" if title.startswith("input") else "inferno")
    r, c = cp[i]
    ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 5, 5, fill=False, ec="tab:cyan", lw=1.2))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
save(fig, "cv-deep-learning", "cnn-interpretation-sanity", exact=False)
