"""Max, average, global and strided-conv downsampling: outputs, gradients, and how much a 1-pixel shift moves them."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save
from skimage import data

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)

# --8<-- [start:basics]
x = torch.tensor([[1., 3., 2., 0.],
                  [5., 4., 1., 1.],
                  [0., 2., 9., 6.],
                  [1., 1., 3., 8.]])[None, None]          # N=1, C=1, 4x4

assert F.max_pool2d(x, 2).flatten().tolist() == [5., 2., 2., 9.]
assert F.avg_pool2d(x, 2).flatten().tolist() == [3.25, 1., 1., 6.5]
assert F.adaptive_avg_pool2d(x, 1).item() == x.mean().item() == 47 / 16   # global average pooling
assert F.adaptive_max_pool2d(x, 1).item() == 9.                           # global max pooling

# Average pooling is a fixed strided convolution; a strided conv is the learnable generalisation.
conv = nn.Conv2d(1, 1, 2, stride=2, bias=False)
conv.weight.data.fill_(0.25)
assert torch.equal(conv(x), F.avg_pool2d(x, 2))

# Max pooling is not linear, so no convolution reproduces it.
y = torch.randn(1, 1, 4, 4)
assert not torch.allclose(F.max_pool2d(x + y, 2), F.max_pool2d(x, 2) + F.max_pool2d(y, 2))

# Pooling has no parameters; a 3x3 stride-2 conv at 256 channels has 589,824.
assert sum(p.numel() for p in nn.MaxPool2d(2).parameters()) == 0
claim("589,824", sum(p.numel() for p in nn.Conv2d(256, 256, 3, stride=2, bias=False).parameters()))
# --8<-- [end:basics]

# --8<-- [start:gradients]
# Backward pass: max pooling routes each window's gradient to its arg-max only,
# average pooling spreads it evenly.
xg = x.clone().requires_grad_(True)
F.max_pool2d(xg, 2).sum().backward()
assert xg.grad[0, 0].tolist() == [[0, 0, 1, 0],
                                  [1, 0, 0, 0],
                                  [0, 1, 1, 0],
                                  [0, 0, 0, 0]]
xg.grad = None
F.avg_pool2d(xg, 2).sum().backward()
assert torch.all(xg.grad == 0.25)
# --8<-- [end:gradients]

# --8<-- [start:gem]
def gem(x: torch.Tensor, p: float, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling: p = 1 is average pooling, p -> infinity approaches max pooling."""
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


f = torch.rand(2, 16, 7, 7)
assert torch.allclose(gem(f, 1.0), f.mean(dim=(-2, -1)), atol=1e-6)
assert (gem(f, 3.0) > f.mean(dim=(-2, -1))).all() and (gem(f, 3.0) < f.amax(dim=(-2, -1))).all()
assert torch.allclose(gem(f, 200.0), f.amax(dim=(-2, -1)), rtol=0.03)
# --8<-- [end:gem]

# --8<-- [start:spp]
def spatial_pyramid_pool(x: torch.Tensor, levels=(1, 2, 4)) -> torch.Tensor:
    """Max-pool into 1x1, 2x2 and 4x4 grids and concatenate: a fixed length for any input size."""
    return torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in levels], dim=1)


for h, w in [(13, 13), (20, 31), (7, 50)]:
    n_out = spatial_pyramid_pool(torch.randn(1, 256, h, w)).shape[1]
    claim("$21C$", n_out / 256)                         # 1 + 4 + 16 cells per channel
# --8<-- [end:spp]


# --8<-- [start:shift]
# A realistic feature map: ReLU of edge filters (Sobel x/y, Laplacian, both signs) on the camera image.
img = torch.tensor(data.camera()[::2, ::2] / 255.0, dtype=torch.float32)[None, None]   # 256x256
sobel = torch.tensor([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
lap = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]])
bank = torch.stack([sobel, sobel.T, lap])
w = torch.cat([bank, -bank])[:, None]                                                   # 6 filters
feat = F.relu(F.conv2d(F.pad(img, (1, 1, 1, 1), mode="circular"), w))                  # 6x256x256


def blur_pool(x: torch.Tensor) -> torch.Tensor:
    """Anti-aliased max pooling (Zhang, 2019): dense max, low-pass [1 2 1] filter, then subsample."""
    x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="circular"), 2, stride=1)
    k = torch.tensor([1., 2., 1.])
    k = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), k, groups=x.shape[1])[..., ::2, ::2]


def strided_conv(weight: torch.Tensor):
    """A 3x3 stride-2 conv with given weights: a filter, then subsampling."""
    return lambda t: F.conv2d(F.pad(t, (1, 1, 1, 1), mode="circular"), weight, stride=2)


ops = {
    "no pooling": lambda t: t,
    "1x1/2 conv (subsample)": lambda t: t[..., ::2, ::2],  # what a 1x1 stride-2 conv reads
    "avg 2x2/2": lambda t: F.avg_pool2d(t, 2),
    "max 2x2/2": lambda t: F.max_pool2d(t, 2),
    "max 3x3/2": lambda t: F.max_pool2d(F.pad(t, (1, 1, 1, 1), mode="circular"), 3, stride=2),
    "blur pool": blur_pool,
    "global avg": lambda t: t.mean(dim=(2, 3)),
}


def change_after_shift(op, t: torch.Tensor, dx: int = 1) -> float:
    """Relative change of the output when the input moves dx pixels to the right."""
    a, b = op(t), op(torch.roll(t, dx, dims=3))
    return float((b - a).norm() / a.norm())


change = {name: change_after_shift(op, feat) for name, op in ops.items()}
claim("89.5%", change["no pooling"])                   # edges are thin: a 1-px shift moves them off
claim("86%", change["1x1/2 conv (subsample)"])         # subsampling alone buys no invariance
claim("64%", change["avg 2x2/2"])                      # pooling absorbs part of it
claim("60%", change["max 2x2/2"])
claim("47%", change["max 3x3/2"])                      # overlapping windows: more
claim("40%", change["blur pool"])                      # low-pass before subsampling: most
claim("below $10^{-6}$", change["global avg"])         # exactly invariant to circular shifts

# A 3x3 stride-2 conv is a filter followed by subsampling: its robustness depends on the filter.
# Random zero-mean weights (as at initialisation) pass edges and alias; positive (smoothing) ones
# low-pass like a blur. Six random draws of each, 6 -> 6 channels.
conv_change = {"3x3/2 conv, zero-mean": [], "3x3/2 conv, smoothing": []}
for seed in range(6):
    g = torch.Generator().manual_seed(seed)
    zero_mean, positive = torch.randn(6, 6, 3, 3, generator=g), torch.rand(6, 6, 3, 3, generator=g)
    conv_change["3x3/2 conv, zero-mean"].append(change_after_shift(strided_conv(zero_mean), feat))
    conv_change["3x3/2 conv, smoothing"].append(change_after_shift(strided_conv(positive), feat))
for v in conv_change["3x3/2 conv, zero-mean"]:
    claim("85–105%", v)                                # no robustness at all
for v in conv_change["3x3/2 conv, smoothing"]:
    claim("30–40%", v)                                 # as robust as blur pooling

# Stride 2 is equivariant only to even shifts: a 2-pixel input shift is a 1-pixel output shift...
mp = ops["max 2x2/2"]
assert torch.equal(mp(torch.roll(feat, 2, dims=3)), torch.roll(mp(feat), 1, dims=3))
# ...while a 1-pixel shift matches no shift of the output at all (aliasing).
best = min(float((mp(torch.roll(feat, 1, dims=3)) - torch.roll(mp(feat), s, dims=3)).norm()
                 / mp(feat).norm()) for s in (-1, 0, 1))
claim("60%", best)                                  # the best is no shift: the max-pool change itself
# --8<-- [end:shift]

print("relative change of the output for a 1-pixel shift:")
for name, v in change.items():
    print(f"  {name:24s} {v:.4f}")
for name, v in conv_change.items():
    print(f"  {name:24s} {min(v):.3f} to {max(v):.3f}")
print(f"max 2x2/2, best output alignment after a 1-px shift still differs by {best:.2f}")

shown = dict(list(change.items())[:2])
shown.update({k: sum(v) / len(v) for k, v in conv_change.items()})
shown.update(list(change.items())[2:])
colors = {"no pooling": "tab:green", "1x1/2 conv (subsample)": "tab:green", "blur pool": "tab:red",
          "global avg": "tab:gray", "3x3/2 conv, zero-mean": "tab:olive", "3x3/2 conv, smoothing": "tab:olive"}
fig, ax = plt.subplots(figsize=(6, 3.6))
names = list(shown)[::-1]
ax.barh(names, [shown[n] for n in names], color=[colors.get(n, "tab:blue") for n in names])
for i, n in enumerate(names):
    label = f"{min(conv_change[n]):.2f} to {max(conv_change[n]):.2f}" if n in conv_change else f"{shown[n]:.3f}"
    ax.text(shown[n] + 0.01, i, label, va="center", fontsize=8)
ax.set_xlim(0, 1.2)
ax.set_xlabel("relative change of the output, ||f(shift x) - f(x)|| / ||f(x)||")
ax.set_title("1-pixel shift of a ReLU edge-feature map (camera image)\n"
             "3x3/2 convs: mean and range over 6 random weight draws", fontsize=10)
save(fig, "cv-deep-learning", "pooling-shift")
