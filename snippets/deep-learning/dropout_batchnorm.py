"""Inverted dropout and batch normalization written by hand, checked against torch.nn."""
from __future__ import annotations

import torch
import torch.nn as nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:dropout]
def inverted_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each unit with probability p and scale the survivors by 1/(1-p) during training."""
    if not training or p == 0.0:
        return x                                   # inference: identity, no rescaling needed
    keep = (torch.rand_like(x) >= p).to(x.dtype)   # Bernoulli(1-p) mask, fresh for every call
    return x * keep / (1.0 - p)


p = 0.3
x = torch.randn(2000, 500, dtype=torch.float64)
y = inverted_dropout(x, p, training=True)

dropped = (y == 0).double().mean().item()
claim("29.98%", dropped)                                           # about 30% of units zeroed
survivors = y != 0
assert torch.allclose(y[survivors], x[survivors] / (1 - p))       # survivors scaled by 1/0.7
claim("less than 0.005", abs((y - x).mean().item()))               # E[y] = x: the mean is preserved
# Averaging many masks recovers x itself, unit by unit:
x0 = torch.randn(200, dtype=torch.float64)
avg = torch.stack([inverted_dropout(x0, p, True) for _ in range(20000)]).mean(0)
assert torch.allclose(avg, x0, atol=0.05)
# ...but the second moment grows by 1/(1-p): the "variance shift" between train and eval.
ratio = (y.pow(2).mean() / x.pow(2).mean()).item()
assert abs(ratio - 1 / (1 - p)) < 0.01
claim("1.43", ratio)
# The variance grows by more when the mean is not zero, as after a ReLU:
# Var(dropout(h)) / Var(h) = (E[h^2] / (1-p) - E[h]^2) / Var(h)   (Li et al., 2019).
h = x.clamp(min=0)
hd = inverted_dropout(h, p, training=True)
predicted = ((h.pow(2).mean() / (1 - p) - h.mean() ** 2) / h.var()).item()
assert abs((hd.var() / h.var()).item() - predicted) < 0.01         # measured = formula
claim("1.63", predicted)
assert torch.equal(inverted_dropout(x, p, training=False), x)      # eval mode: identity

# torch.nn.Dropout is the same inverted dropout.
drop = nn.Dropout(p)
yt = drop(x)
kept = yt != 0
assert torch.allclose(yt[kept], x[kept] / (1 - p))
assert abs((~kept).double().mean().item() - p) < 0.005
drop.eval()
assert torch.equal(drop(x), x)
# --8<-- [end:dropout]
print(f"dropout p={p}: zeroed {dropped:.4f}, mean shift {(y - x).mean().item():+.4f}, "
      f"second-moment ratio {ratio:.3f} (1/(1-p) = {1 / (1 - p):.3f})")


# --8<-- [start:batchnorm]
class MyBatchNorm(nn.Module):
    """Batch norm over every dim except the channel dim 1: works for (N, C) and (N, C, H, W)."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))    # gamma
        self.bias = nn.Parameter(torch.zeros(channels))     # beta
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [d for d in range(x.dim()) if d != 1]         # N for (N, C); N, H, W for images
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            mean = x.mean(dims)
            var = x.var(dims, unbiased=False)                # normalise with the biased variance
            n = x.numel() // x.shape[1]
            with torch.no_grad():                            # ...but track the unbiased one
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
        else:
            mean, var = self.running_mean, self.running_var  # eval: fixed statistics
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return self.weight.view(shape) * x_hat + self.bias.view(shape)
# --8<-- [end:batchnorm]


# --8<-- [start:batchnorm-check]
def compare(mine: nn.Module, ref: nn.Module, make_batch, steps: int = 5) -> None:
    with torch.no_grad():                                    # same non-trivial gamma and beta
        g, b = torch.rand_like(ref.weight) + 0.5, torch.randn_like(ref.bias)
        for bn in (mine, ref):
            bn.weight.copy_(g)
            bn.bias.copy_(b)
    for _ in range(steps):                                   # train mode: batch statistics
        x = make_batch().requires_grad_()
        out_m, out_r = mine(x), ref(x)
        assert torch.allclose(out_m, out_r, atol=1e-10)
        (gm,) = torch.autograd.grad((out_m * out_m.detach().sin()).sum(), x)
        (gr,) = torch.autograd.grad((out_r * out_r.detach().sin()).sum(), x)
        assert torch.allclose(gm, gr, atol=1e-10)            # backward through the batch stats too
    assert torch.allclose(mine.running_mean, ref.running_mean, atol=1e-12)
    assert torch.allclose(mine.running_var, ref.running_var, atol=1e-12)
    mine.eval(); ref.eval()                                  # eval mode: running statistics
    x = make_batch()
    assert torch.allclose(mine(x), ref(x), atol=1e-10)
    assert torch.allclose(mine(x[:1]), ref(x[:1]), atol=1e-10)   # a batch of one is fine in eval


def batch_2d() -> torch.Tensor:                              # (N, C): features with mean 3, std 2
    return 3 + 2 * torch.randn(16, 8, dtype=torch.float64)


def batch_4d() -> torch.Tensor:                              # (N, C, H, W): per-channel offsets
    return torch.randn(4, 6, 5, 5, dtype=torch.float64) + torch.arange(6.0).view(1, 6, 1, 1)


compare(MyBatchNorm(8).double(), nn.BatchNorm1d(8).double(), batch_2d)
compare(MyBatchNorm(6).double(), nn.BatchNorm2d(6).double(), batch_4d)

# The running variance is the *unbiased* one: with the biased variance it would not match.
bn = nn.BatchNorm1d(8).double()
x = batch_2d()
bn(x)
n = x.shape[0]
biased_update = 0.9 * 1 + 0.1 * x.var(0, unbiased=False)
unbiased_update = 0.9 * 1 + 0.1 * x.var(0, unbiased=True)
assert torch.allclose(bn.running_var, unbiased_update) and not torch.allclose(bn.running_var, biased_update)
# --8<-- [end:batchnorm-check]


# --8<-- [start:running-stats]
# The running averages forget with a window of about 1/momentum = 10 batches: after the input
# distribution moves (mean 0 -> 5), 10 batches cover 1 - 0.9**10 of the move.
bn = nn.BatchNorm1d(3)
for _ in range(10):
    b = torch.randn(64, 3)
    bn(b - b.mean(0) + 5.0)                                  # batches whose mean is exactly 5
claim("65%", bn.running_mean.mean().item() / 5.0)
# momentum=None keeps the cumulative average instead: the mean of all batch means so far.
bn, means = nn.BatchNorm1d(3, momentum=None), []
for k in range(10):
    b = (k + 1) * torch.randn(64, 3)
    means.append(b.mean(0))
    bn(b)
assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-6)
# --8<-- [end:running-stats]


# --8<-- [start:small-batch]
# Train mode with a batch of 2: every feature normalises to exactly -1 and +1, whatever the input.
bn = nn.BatchNorm1d(4).double()
out = bn(torch.tensor([[1.0, 5.0, -3.0, 100.0], [2.0, 9.0, 7.0, 100.5]], dtype=torch.float64))
assert torch.allclose(out.abs(), torch.ones_like(out), atol=1e-3)   # up to eps
# A batch of one has no variance to estimate: torch refuses it in train mode.
try:
    nn.BatchNorm1d(4)(torch.randn(1, 4))
    raise AssertionError("expected an error")
except ValueError:
    pass
# --8<-- [end:small-batch]


# --8<-- [start:depth]
def activation_std(depth: int, use_bn: bool) -> list[float]:
    """Std of the activations after each Linear(+BN)+ReLU layer, torch's default init, no biases."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(256, 256, bias=False)] + ([nn.BatchNorm1d(256)] if use_bn else []) + [nn.ReLU()]
    h, stds = torch.randn(512, 256), []
    with torch.no_grad():
        for layer in layers:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                stds.append(h.std().item())
    return stds


plain, normed = activation_std(20, False), activation_std(20, True)
claim("0.34", plain[0])                          # default init shrinks the signal layer after layer
claim(r"8\times10^{-9}", plain[-1])
per_layer = (plain[-1] / plain[0]) ** (1 / 19)
claim("0.40", per_layer)                         # ~sqrt(1/6) = 0.41: Var(w) = 1/(3 fan_in), ReLU halves
for std in normed:
    claim("0.58–0.59", std)                      # with BN the scale stays put at every depth
# --8<-- [end:depth]
print(f"activation std after layer 1 / 20: plain {plain[0]:.3g} / {plain[-1]:.3g}, "
      f"with BN {normed[0]:.3g} / {normed[-1]:.3g}")


# --8<-- [start:scale]
# In train mode BN makes the layer before it scale-invariant: BN(a W x) = BN(W x) for any a > 0,
# and the gradient with respect to W shrinks as 1/a. Weight decay on W therefore acts mainly on
# the effective learning rate, not on the function.
torch.manual_seed(0)
x, W = torch.randn(32, 20, dtype=torch.float64), torch.randn(10, 20, dtype=torch.float64)
target = torch.randn(32, 10, dtype=torch.float64)
bn = nn.BatchNorm1d(10, affine=False).double()
grads = []
for a in (1.0, 4.0):
    Wa = (a * W).requires_grad_()
    out = bn(x @ Wa.T)
    (out - target).pow(2).sum().backward()
    grads.append((out.detach(), Wa.grad))
assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)          # same output (up to eps)
assert torch.allclose(grads[0][1], 4.0 * grads[1][1], rtol=1e-4, atol=1e-4)   # gradient 4x smaller
assert grads[0][1].abs().max() > 1.0                                   # (and not trivially zero)
# --8<-- [end:scale]


# --8<-- [start:fold]
# At inference BN is an affine map per channel, so it folds into the conv before it.
conv, bn = nn.Conv2d(3, 8, 3, padding=1).double(), nn.BatchNorm2d(8).double()
with torch.no_grad():
    bn.running_mean.uniform_(-1, 1); bn.running_var.uniform_(0.5, 2)
    bn.weight.uniform_(0.5, 1.5); bn.bias.uniform_(-1, 1)
bn.eval()
scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
fused = nn.Conv2d(3, 8, 3, padding=1).double()
with torch.no_grad():
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    fused.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
assert torch.allclose(fused(x), bn(conv(x)), atol=1e-10)
# --8<-- [end:fold]
print("hand-written BatchNorm matches BatchNorm1d/2d (outputs, grads, running stats); BN folds into conv")
