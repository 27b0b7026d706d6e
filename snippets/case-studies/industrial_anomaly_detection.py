"""Industrial anomaly detection, PatchCore-style: a memory bank of patch features from defect-free
images only, a greedy coreset to shrink it, nearest-neighbour distance as the anomaly score.
Synthetic woven textures with scratches, dents and worn spots; AUROC at image and pixel level."""
from __future__ import annotations

import math

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
S = 64                                            # image side, pixels


# --8<-- [start:data]
def texture(rng: np.random.Generator) -> np.ndarray:
    """A woven or knurled surface: two crossing gratings with a random phase, a slight random
    rotation, uneven lighting and sensor noise."""
    yy, xx = np.mgrid[0:S, 0:S].astype(float)
    a = np.deg2rad(rng.uniform(-3, 3))
    u, v = xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)
    phase_u, phase_v = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
    weave = np.sin(2 * np.pi * u / 6 + phase_u) * np.sin(2 * np.pi * v / 6 + phase_v)
    light = rng.uniform(-0.05, 0.05) * (xx / S - 0.5) + rng.uniform(-0.05, 0.05)
    return 0.5 + 0.2 * weave + light + rng.normal(0, 0.03, (S, S))


def add_defect(img: np.ndarray, kind: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Defect 0, 1 or 2; returns the image and its ground-truth mask."""
    yy, xx = np.mgrid[0:S, 0:S]
    cy, cx = rng.uniform(12, S - 12, 2)
    if kind == 0:                                   # scratch: a thin bright line at a random angle
        a, length = rng.uniform(0, np.pi), rng.uniform(12, 24)
        d_perp = np.abs((xx - cx) * np.sin(a) - (yy - cy) * np.cos(a))
        d_along = np.abs((xx - cx) * np.cos(a) + (yy - cy) * np.sin(a))
        mask = (d_perp < 1.0) & (d_along < length / 2)
        img = img + 0.2 * mask
    elif kind == 1:                                 # dent: a small dark blob
        r = rng.uniform(2.5, 4.0)
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        img = img - 0.2 * np.exp(-d2 / (2 * r**2))
        mask = d2 < (1.5 * r) ** 2
    else:                                           # worn spot: the pattern is rubbed shiny
        r = rng.uniform(3.5, 5)
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        soft = np.exp(-(d2 / (2 * r**2)) ** 2)        # flat top, soft edge
        img = (1 - soft) * img + soft * (img.mean() + 0.1)
        mask = soft > 0.5
    return img, mask


train = np.stack([texture(rng) for _ in range(40)])            # defect-free only
test_ok = [texture(rng) for _ in range(40)]
test_bad = [add_defect(texture(rng), i % 3, rng) for i in range(40)]
test = np.stack(test_ok + [img for img, _ in test_bad])
masks = np.stack([np.zeros((S, S), bool)] * 40 + [m for _, m in test_bad])
labels = np.r_[np.zeros(40), np.ones(40)]
val_ok = np.stack([texture(rng) for _ in range(40)])          # separate normals to set the threshold
# --8<-- [end:data]


# --8<-- [start:features]
class RandomFeatures(nn.Module):
    """A small CNN with random weights: PatchCore uses an ImageNet backbone, but the method only
    needs local descriptors that are the same for the same local appearance."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(64, 64, 3, stride=2, padding=1)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = F.relu(self.c1(x))
        h2 = F.relu(self.c2(h1))                              # stride 2
        h3 = F.relu(self.c3(h2))                              # stride 4
        # Two levels, pooled over a 3x3 neighbourhood (PatchCore's local aggregation), at stride 4.
        f2 = F.avg_pool2d(F.avg_pool2d(h2, 3, 1, 1), 2)
        f3 = F.avg_pool2d(h3, 3, 1, 1)
        return torch.cat([f2, f3], dim=1)                      # (N, 128, S/4, S/4)


def patches(model: nn.Module, imgs: np.ndarray) -> torch.Tensor:
    f = model(torch.from_numpy(imgs).float()[:, None])
    return f.permute(0, 2, 3, 1).reshape(len(imgs), -1, f.shape[1])   # (N, 256 patches, 128)


model = RandomFeatures().eval()
memory = patches(model, train).reshape(-1, 128)               # every patch of every good image
assert memory.shape == (40 * 16 * 16, 128)
# --8<-- [end:features]


# --8<-- [start:coreset]
def greedy_coreset(x: torch.Tensor, fraction: float, proj_dim: int = 32, seed: int = 0) -> torch.Tensor:
    """Greedy k-centre selection: repeatedly add the point farthest from the chosen set.
    Distances are computed after a random projection to proj_dim, as in PatchCore."""
    g = torch.Generator().manual_seed(seed)
    z = x @ torch.randn(x.shape[1], proj_dim, generator=g) / proj_dim**0.5
    n = int(len(x) * fraction)
    chosen = [int(torch.randint(len(x), (1,), generator=g))]
    dist = torch.cdist(z, z[chosen]).squeeze(1)
    for _ in range(n - 1):
        i = int(dist.argmax())
        chosen.append(i)
        dist = torch.minimum(dist, (z - z[i]).norm(dim=1))
    return x[chosen]


coreset = greedy_coreset(memory, fraction=0.1)
claim("1,024", len(coreset)), claim("10,240", len(memory))   # 10x less memory to store and search
# --8<-- [end:coreset]


# --8<-- [start:score]
def anomaly_maps(bank: torch.Tensor, imgs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Patch score = distance to the nearest memory patch; map upsampled and smoothed;
    image score = the largest patch score."""
    p = patches(model, imgs)
    d = torch.stack([torch.cdist(x, bank).min(dim=1).values for x in p])   # (N, 256)
    side = int(d.shape[1] ** 0.5)
    grid = d.reshape(-1, 1, side, side)
    maps = F.interpolate(grid, size=(S, S), mode="bilinear", align_corners=False)
    k = torch.exp(-torch.arange(-6, 7.0) ** 2 / (2 * 2.0**2))
    k = k / k.sum()
    maps = F.pad(maps, (6, 6, 6, 6), mode="replicate")               # no dark rim at the border
    maps = F.conv2d(F.conv2d(maps, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))   # Gaussian, sigma 2
    return d.max(dim=1).values.numpy(), maps[:, 0].numpy()


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (Mann-Whitney U)."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    pos = labels.astype(bool)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


img_full, _ = anomaly_maps(memory, test)
img_core, map_core = anomaly_maps(coreset, test)
tiny = greedy_coreset(memory, fraction=0.01)
assert len(tiny) == 102
random_tiny = memory[torch.randperm(len(memory), generator=torch.Generator().manual_seed(1))[:len(tiny)]]

image_auroc = {"full": auroc(img_full, labels), "coreset 10%": auroc(img_core, labels),
               "coreset 1%": auroc(anomaly_maps(tiny, test)[0], labels),
               "random 1%": auroc(anomaly_maps(random_tiny, test)[0], labels)}
pixel_auroc = auroc(map_core.ravel(), masks.ravel())
claim("1.00", image_auroc["full"]), claim("1.00", image_auroc["coreset 10%"])
claim("0.996", image_auroc["coreset 1%"])                       # even 1% of the memory works...
claim("0.53", image_auroc["random 1%"])                         # ...if chosen greedily, not at random
claim("0.997", pixel_auroc)                                     # and the map says where the defect is
# --8<-- [end:score]

# --8<-- [start:baseline]
# A global-feature baseline: one descriptor per image (average of all patches), nearest neighbour.
glob_train = patches(model, train).mean(1)
glob_test = patches(model, test).mean(1)
img_glob = torch.cdist(glob_test, glob_train).min(dim=1).values.numpy()
glob_auroc = auroc(img_glob, labels)
claim("0.63", glob_auroc)           # a small defect barely moves an image-level average
# --8<-- [end:baseline]

# --8<-- [start:threshold]
# The operating point, not AUROC, is what the plant feels. Budget: one false alarm per 8 h shift
# for a camera that takes an image every 10 s.
images_per_shift = 8 * 3600 // 10
fpr_budget = 1 / images_per_shift
claim("2,880", images_per_shift), claim("0.035%", fpr_budget)

# How many defect-free validation images prove that rate? With zero false alarms in n images,
# the 95% upper bound on the rate is about 3/n (the "rule of three").
n_needed = math.ceil(math.log(0.05) / math.log(1 - fpr_budget))
assert abs(n_needed - 3 / fpr_budget) < 20
claim("8,600", n_needed, tol=50), claim("8,627", n_needed)
# A conformal threshold (the k-th smallest of n calibration scores, k = ceil((n + 1)(1 - alpha)))
# guarantees FPR <= alpha on exchangeable normals, but only exists once n >= (1 - alpha) / alpha.
claim("2,879", math.ceil((1 - fpr_budget) / fpr_budget))

# Threshold just above every VALIDATION normal (not the test normals), then measured on test.
img_val, _ = anomaly_maps(coreset, val_ok)
thr = img_val.max() * 1.001
recall_at_thr = float((img_core[labels == 1] >= thr).mean())
test_fpr = float((img_core[labels == 0] >= thr).mean())
claim("100%", recall_at_thr), claim("0 false alarms", test_fpr * 40)   # on a different set of normals
fpr_upper_bound = 1 - 0.05 ** (1 / 40)
claim("7.2%", fpr_upper_bound)               # "no false alarm in 40" only proves FPR < 7.2%
# --8<-- [end:threshold]
print("image AUROC:", {k: round(v, 3) for k, v in image_auroc.items()}, f"global-descriptor kNN {glob_auroc:.3f}")
print(f"pixel AUROC (coreset): {pixel_auroc:.3f}; memory {len(memory)} -> {len(coreset)} patches; "
      f"recall at the validation threshold: {recall_at_thr:.1%} (test FPR {test_fpr:.1%}); "
      f"normals needed for a {fpr_budget:.3%} FPR: {n_needed}")

fig, axes = plt.subplots(3, 3, figsize=(5, 5.4))
for row, i in enumerate([40, 41, 42]):
    axes[row, 0].imshow(test[i], cmap="gray")
    axes[row, 1].imshow(masks[i], cmap="gray")
    axes[row, 2].imshow(map_core[i], cmap="inferno")
for ax, title in zip(axes[0], ["test image", "true defect", "anomaly map"]):
    ax.set_title(title, fontsize=9)
for ax in axes.ravel():
    ax.set_xticks([]); ax.set_yticks([])
for ax, name in zip(axes[:, 0], ["scratch", "dent", "worn spot"]):
    ax.set_ylabel(name, fontsize=9)
fig.suptitle(f"Patch nearest-neighbour scores (image AUROC {image_auroc['coreset 10%']:.2f})", fontsize=10)
save(fig, "case-studies", "anomaly-patchcore-maps")
