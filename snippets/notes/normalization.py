"""Batch, layer, instance and group norm by hand, checked against torch.nn; train and eval
behaviour of batch norm; and what goes wrong with small batches."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from _figures import save
from matplotlib.patches import Rectangle
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
close = lambda a, b: torch.allclose(a, b, atol=1e-4)


# --8<-- [start:axes]
def normalize(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-5) -> torch.Tensor:
    """Subtract the mean and divide by the (biased) std, both taken over `dims`."""
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


def batch_norm(x):                      # one (mean, var) per channel, over N, H, W
    return normalize(x, (0, 2, 3))


def layer_norm(x):                      # one per sample, over C, H, W
    return normalize(x, (1, 2, 3))


def instance_norm(x):                   # one per sample and channel, over H, W
    return normalize(x, (2, 3))


def group_norm(x, groups: int):         # one per sample and group of C/G channels
    n, c, h, w = x.shape
    return normalize(x.view(n, groups, c // groups, h, w), (2, 3, 4)).view(n, c, h, w)


x = torch.randn(8, 32, 16, 16) * 3 + 1                 # N, C, H, W
assert close(nn.BatchNorm2d(32).train()(x), batch_norm(x))
assert close(nn.LayerNorm([32, 16, 16])(x), layer_norm(x))
assert close(nn.InstanceNorm2d(32)(x), instance_norm(x))
assert close(nn.GroupNorm(8, 32)(x), group_norm(x, 8))
# Group norm spans the two per-sample extremes: G = 1 is layer norm, G = C is instance norm.
assert close(group_norm(x, 1), layer_norm(x)) and close(group_norm(x, 32), instance_norm(x))

# In a transformer, LayerNorm normalises each token over its D features, nothing else.
tokens = torch.randn(4, 10, 64)                        # batch, tokens, features
assert close(nn.LayerNorm(64)(tokens), normalize(tokens, (-1,)))
# ConvNeXt-style "LayerNorm" on images is per pixel over channels: not GroupNorm(1, C).
per_pixel = nn.LayerNorm(32)(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
assert close(per_pixel, normalize(x, (1,))) and not close(per_pixel, layer_norm(x))

# The learned scale gamma: per channel for BN and GN, per normalised element for LayerNorm,
# absent by default for InstanceNorm.
assert nn.BatchNorm2d(32).weight.shape == nn.GroupNorm(8, 32).weight.shape == (32,)
assert nn.LayerNorm([32, 16, 16]).weight.shape == (32, 16, 16)
assert nn.InstanceNorm2d(32).weight is None and nn.InstanceNorm2d(32, affine=True).weight.shape == (32,)
# --8<-- [end:axes]


# --8<-- [start:gamma-beta]
# Why gamma and beta: with gamma = the batch std and beta = the batch mean, BN is the identity,
# so normalising never costs the layer any function it could compute before.
bn_id = nn.BatchNorm2d(32).train()
with torch.no_grad():
    bn_id.weight.copy_(torch.sqrt(x.var((0, 2, 3), unbiased=False) + bn_id.eps))
    bn_id.bias.copy_(x.mean((0, 2, 3)))
assert close(bn_id(x), x)

# Scale invariance: BN after a conv ignores the scale of the conv's weights, and the gradient
# with respect to those weights shrinks as 1/alpha. Weight decay, which shrinks the weights,
# therefore acts as a rising effective learning rate.
conv, target = nn.Conv2d(32, 16, 3, bias=False), torch.randn(8, 16, 14, 14)
grads = {}
for alpha in (1.0, 2.0):
    w = (alpha * conv.weight.detach()).requires_grad_()
    out = batch_norm(nn.functional.conv2d(x, w))
    if alpha == 1.0:
        out_1 = out.detach()
    assert close(out, out_1)                              # same output at any weight scale
    ((out - target) ** 2).mean().backward()
    grads[alpha] = w.grad.norm().item()
claim("2×", grads[1.0] / grads[2.0], tol=1e-3)           # exactly: doubling the weights halves it

# BN's backward pass: per channel, the gradient to its input has zero mean and no component
# along x_hat. BN projects out the two directions its own normalisation would undo.
xg = x.clone().requires_grad_()
x_hat = batch_norm(xg)
(x_hat * torch.randn_like(x_hat)).sum().backward()
assert xg.grad.sum((0, 2, 3)).abs().max() < 1e-3
assert (xg.grad * x_hat.detach()).sum((0, 2, 3)).abs().max() < 1e-3
# --8<-- [end:gamma-beta]


# --8<-- [start:train-eval]
bn = nn.BatchNorm2d(32, momentum=0.1)                  # training mode by default
mu, var = torch.zeros(32), torch.ones(32)              # running statistics start here
for step in range(5):
    xb = torch.randn(8, 32, 16, 16) * 3 + 1
    out = bn(xb)
    assert close(out, batch_norm(xb))                  # training: normalise with the batch's own stats
    mu = 0.9 * mu + 0.1 * xb.mean((0, 2, 3))
    var = 0.9 * var + 0.1 * xb.var((0, 2, 3), unbiased=True)   # the running var is the unbiased one
    assert close(bn.running_mean, mu) and close(bn.running_var, var)

bn.eval()                                              # inference: a fixed per-channel affine map
x_test = torch.randn(4, 32, 16, 16) * 3 + 1
scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
expected = (x_test - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None]
assert close(bn(x_test), expected)
# In eval mode a sample's output does not depend on its batch mates; in training mode it does.
assert close(bn(x_test[:1]), bn(x_test)[:1])
bn.train()
assert not close(bn(x_test[:1]), bn(x_test)[:1])
# --8<-- [end:train-eval]


# --8<-- [start:small-batch]
# Feature maps whose channel means differ from image to image, as real features do.
def features(n: int, g: torch.Generator) -> torch.Tensor:
    per_image = torch.randn(n, 16, 1, 1, generator=g)  # image-level shift of each channel
    return per_image + 0.5 * torch.randn(n, 16, 8, 8, generator=g)


g = torch.Generator().manual_seed(0)
population = features(4096, g)
pop_mean, pop_var = population.mean((0, 2, 3)), population.var((0, 2, 3))


def train_test_gap(batch: int, trials: int = 200) -> float:
    """Mean |BN with batch stats - BN with population stats|: what changes between train and test."""
    gaps = []
    for _ in range(trials):
        xb = features(batch, g)
        with_pop = (xb - pop_mean[:, None, None]) / torch.sqrt(pop_var[:, None, None] + 1e-5)
        gaps.append((batch_norm(xb) - with_pop).abs().mean())
    return torch.stack(gaps).mean().item()


gap = {b: train_test_gap(b) for b in (2, 4, 8, 32)}
claim("0.60", gap[2]), claim("0.43", gap[4]), claim("0.29", gap[8]), claim("0.15", gap[32])
assert gap[2] > gap[4] > gap[8] > gap[32]
claim("4.0×", gap[2] / gap[32])            # a 16x larger batch: 1/sqrt(B) predicts exactly 4x

# Batch of 2, one value per channel (after global pooling): every output is exactly -1 or +1.
pooled = torch.randn(2, 16) * 5
bn1d = nn.BatchNorm1d(16)
assert torch.allclose(bn1d(pooled).abs(), torch.ones(2, 16), atol=1e-3)
# Batch of 1, one value per channel: training-mode batch norm refuses to run.
try:
    bn1d(pooled[:1])
    raise AssertionError("expected a ValueError")
except ValueError:
    pass

# Group norm never looks across the batch: a sample's output is the same in any batch.
gn = nn.GroupNorm(4, 16)
xb = features(8, g)
assert close(gn(xb[:1]), gn(xb)[:1])
# --8<-- [end:small-batch]

print("train/test gap of batch-stat BN by batch size: "
      + ", ".join(f"B={b}: {v:.3f}" for b, v in gap.items()))

# Figure: which elements share one mean and variance, for each normalisation.
fig, axes = plt.subplots(1, 4, figsize=(9, 2.6))
N, C = 6, 8
sets = {"Batch norm\n(per channel)": lambda n, c: c == 2,
        "Layer norm\n(per sample)": lambda n, c: n == 2,
        "Instance norm\n(per sample, channel)": lambda n, c: n == 2 and c == 2,
        "Group norm, G = 4\n(per sample, group)": lambda n, c: n == 2 and c // 2 == 1}
for ax, (title, member) in zip(axes, sets.items()):
    for n in range(N):
        for c in range(C):
            colour = "tab:blue" if member(n, c) else "0.9"
            ax.add_patch(Rectangle((c, N - 1 - n), 1, 1, facecolor=colour, edgecolor="white", lw=1.5))
    ax.set(xlim=(0, C), ylim=(0, N), xticks=[], yticks=[], aspect="equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("channels C", fontsize=8)
axes[0].set_ylabel("samples N", fontsize=8)
fig.suptitle("Each cell is one H×W feature map; blue cells share one mean and variance", fontsize=9)
save(fig, "notes", "normalization-axes")
