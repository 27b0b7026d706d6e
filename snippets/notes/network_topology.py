"""Ordering inside a block: what batch norm before and after ReLU feeds the next layer, why a bias
before batch norm is wasted, folding batch norm into a conv, and dropout before batch norm."""
from __future__ import annotations

import math

import torch
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:active]
x = torch.relu(torch.randn(64, 32, 16, 16))            # a block input: the previous ReLU's output
conv = nn.Conv2d(32, 32, 3, padding=1, bias=False)
bn = nn.BatchNorm2d(32)                                # training mode, gamma = 1, beta = 0

conv_bn_relu = torch.relu(bn(conv(x)))                 # Ioffe & Szegedy, ResNet, torchvision
conv_relu_bn = bn(torch.relu(conv(x)))                 # BN after the activation

# BN before ReLU: the next conv sees a rectified normal, max(0, z): half the units exactly 0,
# mean 1/sqrt(2 pi), std sqrt(1/2 - 1/(2 pi)). (Not the half-normal |z|: mean 0.80, std 0.60.)
active = (conv_bn_relu > 0).float().mean().item()
rectified_mean, rectified_std = 1 / math.sqrt(2 * math.pi), math.sqrt(0.5 - 1 / (2 * math.pi))
assert abs(active - 0.5) < 0.01
assert abs(conv_bn_relu.mean().item() - rectified_mean) < 0.01
assert abs(conv_bn_relu.std().item() - rectified_std) < 0.01
claim("0.40", conv_bn_relu.mean().item()), claim("0.58", conv_bn_relu.std().item())   # measured
# BN after ReLU: the next conv sees zero-mean, unit-variance inputs, but no exact zeros.
assert abs(conv_relu_bn.mean().item()) < 1e-4 and abs(conv_relu_bn.std().item() - 1) < 0.01

# Before the ReLU, BN's shift and scale set the ReLU threshold per channel: a unit fires when
# x_hat > -beta / gamma, so the fraction of active units becomes Phi(beta / gamma).
with torch.no_grad():
    bn.bias.fill_(-1.0)
active = (torch.relu(bn(conv(x))) > 0).float().mean().item()
assert abs(active - 0.5 * math.erfc(1 / math.sqrt(2))) < 0.01             # Phi(-1) = 0.159
claim("15.8%", active)                                                    # measured
# --8<-- [end:active]


# --8<-- [start:bias]
# A conv bias in front of batch norm: the mean subtraction removes it, in value and in gradient.
# (float64, so that rounding noise does not hide an exact zero)
conv_b = nn.Conv2d(32, 16, 3, padding=1, bias=True).double()
conv_nb = nn.Conv2d(32, 16, 3, padding=1, bias=False).double()
conv_nb.weight.data.copy_(conv_b.weight.data)
bn_a, bn_b = nn.BatchNorm2d(16).double(), nn.BatchNorm2d(16).double()
out_b, out_nb = bn_a(conv_b(x.double())), bn_b(conv_nb(x.double()))
assert torch.allclose(out_b, out_nb, atol=1e-10)
(out_b * torch.randn_like(out_b)).sum().backward()
assert conv_b.bias.grad.abs().max() < 1e-9 * conv_b.weight.grad.abs().max()   # exactly 0 in theory
# --8<-- [end:bias]


# --8<-- [start:fold]
def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv -> BN (eval) as one conv: W' = W * g / s, b' = (b - mu) * g / s + beta per channel."""
    s = torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, bias=True)
    b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    fused.weight.data = conv.weight.data * (bn.weight / s).detach()[:, None, None, None]
    fused.bias.data = ((b - bn.running_mean) * bn.weight / s + bn.bias).detach()
    return fused


conv = nn.Conv2d(32, 32, 3, padding=1, bias=False)
bn = nn.BatchNorm2d(32)
with torch.no_grad():                                   # give BN non-trivial statistics and affine
    for _ in range(20):
        bn(conv(x * 2 + 0.5))
    bn.weight.uniform_(0.5, 1.5)
    bn.bias.uniform_(-0.5, 0.5)
bn.eval()
with torch.no_grad():
    fused = fold_bn_into_conv(conv, bn)
    assert (fused(x) - bn(conv(x))).abs().max() < 1e-4          # conv-BN: folds exactly

    # BN after the ReLU is an affine map on the *next* conv's input. It folds into that conv
    # only where the next conv does not read zero padding: the padding is added after BN.
    nxt = nn.Conv2d(32, 16, 3, padding=1)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    folded_next = nn.Conv2d(32, 16, 3, padding=1)
    folded_next.weight.data = nxt.weight * scale[None, :, None, None]
    folded_next.bias.data = nxt.bias + (nxt.weight * shift[None, :, None, None]).sum((1, 2, 3))
    h = torch.relu(conv(x))
    diff = (folded_next(h) - nxt(bn(h))).abs()
    claim("below $10^{-5}$", diff[..., 1:-1, 1:-1].max())          # interior: exact, to rounding
    claim("0.85", diff[..., 0, :].max())                          # border rows: wrong

# Max-pooling commutes with an eval-mode BN only where gamma > 0 (a negative scale turns the
# max into a min), so "BN before or after the pool" is a free choice only then.
with torch.no_grad():
    pool = nn.MaxPool2d(2)
    assert torch.allclose(pool(bn(h)), bn(pool(h)), atol=1e-6)    # every gamma is in [0.5, 1.5]
    bn.weight[0] = -1.0
    assert not torch.allclose(pool(bn(h)), bn(pool(h)), atol=1e-3)
# --8<-- [end:fold]


# --8<-- [start:dropout]
# Dropout before batch norm: BN learns the variance of dropped-out activations in training,
# then sees undropped ones at test time (Li et al., 2019, "variance shift").
feats = torch.randn(256, 64)                           # zero-mean, unit-variance features
drop, bn1d = nn.Dropout(p=0.5), nn.BatchNorm1d(64, momentum=None)   # cumulative running average
for _ in range(50):
    bn1d(drop(torch.randn(256, 64)))
drop.eval(); bn1d.eval()
test_std = bn1d(drop(feats)).std().item()
assert abs(bn1d.running_var.mean().item() - 2.0) < 0.1        # Var = 1 / (1 - p) in training
claim("1.99", bn1d.running_var.mean())
assert abs(test_std - math.sqrt(0.5)) < 0.05                   # outputs shrink to sqrt(1 - p)
claim("0.70", test_std)

# With a mean mu (post-ReLU features, say), the training variance is sigma^2/(1-p) + mu^2 p/(1-p):
# for mu = sigma = 1 and p = 0.5, 3 instead of 2.
bn_mu = nn.BatchNorm1d(64, momentum=None)
for _ in range(50):
    bn_mu(nn.Dropout(p=0.5)(torch.randn(256, 64) + 1.0))
claim("3.0", bn_mu.running_var.mean())

# The same dropout after batch norm leaves BN's statistics alone.
bn_first = nn.BatchNorm1d(64, momentum=None)
for _ in range(50):
    drop.train()(bn_first(torch.randn(256, 64)))
bn_first.eval()
assert abs(bn_first(feats).std().item() - 1.0) < 0.05
# --8<-- [end:dropout]

print(f"conv-BN-ReLU: mean {conv_bn_relu.mean():.3f}, std {conv_bn_relu.std():.3f}; "
      f"active with beta=-1: {active:.3f}")
print(f"fold: max interior error {diff[..., 1:-1, 1:-1].max():.2e}, border {diff[..., 0, :].max():.3f}")
print(f"dropout before BN: running var {bn1d.running_var.mean():.2f}, test std {test_std:.3f}")
