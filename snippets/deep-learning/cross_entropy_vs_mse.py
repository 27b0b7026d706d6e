"""Softmax + cross-entropy has gradient p - y (checked against autograd); sigmoid + MSE loses its
gradient on confident mistakes; a naive softmax overflows where log-sum-exp does not."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)

# --8<-- [start:gradient]
N, C = 8, 5
z = torch.randn(N, C, dtype=torch.float64, requires_grad=True)          # logits
labels = torch.randint(0, C, (N,))
Y = F.one_hot(labels, C).double()

loss = F.cross_entropy(z, labels)                                     # mean over the batch
(g_autograd,) = torch.autograd.grad(loss, z)
P = torch.softmax(z, dim=1).detach()
assert torch.allclose(g_autograd, (P - Y) / N, atol=1e-15, rtol=0)   # dL/dz = (p - y) / N

# The same through the chain rule: softmax Jacobian diag(p) - p p^T, times dL/dp = -y/p.
p0 = P[0]
J = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, dim=0), z[0].detach())
assert torch.allclose(J, torch.diag(p0) - torch.outer(p0, p0), atol=1e-15)
assert torch.allclose(J.T @ (-Y[0] / p0), p0 - Y[0], atol=1e-14)

# Binary: sigmoid + binary cross-entropy has the same form, sigma(z) - y.
zb = torch.randn(N, dtype=torch.float64, requires_grad=True)
yb = torch.randint(0, 2, (N,)).double()
(gb,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(zb, yb, reduction="sum"), zb)
assert torch.allclose(gb, torch.sigmoid(zb).detach() - yb, atol=1e-15)
# --8<-- [end:gradient]


# --8<-- [start:saturation]
def grad_wrt_logit(loss_name: str, logit: float, target: float = 1.0) -> float:
    t = torch.tensor(logit, dtype=torch.float64, requires_grad=True)
    p = torch.sigmoid(t)
    if loss_name == "mse":
        value = (p - target) ** 2
    else:
        value = F.binary_cross_entropy_with_logits(t, torch.tensor(target, dtype=torch.float64))
    (g,) = torch.autograd.grad(value, t)
    return g.item()


# A confident mistake: the logit is -10 (p = 4.5e-5), the label is 1.
claim("4.5e-5", torch.sigmoid(torch.tensor(-10.0, dtype=torch.float64)).item())
g_ce, g_mse = grad_wrt_logit("ce", -10.0), grad_wrt_logit("mse", -10.0)
claim("−0.99995", g_ce, tol=5e-6)                  # cross-entropy: almost the largest possible push
claim("−9.1e-5", g_mse)                            # MSE: 2 (p - 1) p (1 - p), nearly nothing
claim("11,000", g_ce / g_mse, tol=100)             # times weaker
# MSE through a sigmoid is not convex in the logit: it curves downwards on the wrong side.
zs = torch.linspace(-8, 8, 1601, dtype=torch.float64)
mse_curve = (torch.sigmoid(zs) - 1) ** 2
second = mse_curve[2:] - 2 * mse_curve[1:-1] + mse_curve[:-2]
# f'' = -2 sigma (1 - sigma)^2 (1 - 3 sigma): concave exactly where sigma < 1/3, i.e. z < -ln 2.
inner = zs[1:-1]
assert (second[inner < -math.log(2) - 0.01] < 0).all()                        # a plateau, not a bowl
assert (second[(inner > -math.log(2) + 0.01) & (inner < 4)] > 0).all()        # convex beyond it
claim("−0.69", -math.log(2))


# Consequence: logistic regression started confidently wrong, full-batch gradient descent.
rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(-1, 1, 200), rng.normal(1, 1, 200)])
y = np.r_[np.zeros(200), np.ones(200)]


def steps_to_80_percent(loss_name: str, w0: float, lr: float = 0.5) -> int:
    w, b = w0, 0.0
    for t in range(20_000):
        p = 1 / (1 + np.exp(-(w * x + b)))
        if ((p > 0.5) == y).mean() >= 0.8:
            return t
        g = p - y if loss_name == "ce" else 2 * (p - y) * p * (1 - p)   # dL/dz per example
        w, b = w - lr * np.mean(g * x), b - lr * np.mean(g)
    return 20_000


steps = {(name, w0): steps_to_80_percent(name, w0) for name in ("ce", "mse") for w0 in (-3.0, -5.0, -8.0)}
claim("8", steps[("ce", -3.0)]), claim("12", steps[("ce", -5.0)]), claim("18", steps[("ce", -8.0)])
claim("60", steps[("mse", -3.0)]), claim("243", steps[("mse", -5.0)]), claim("1,254", steps[("mse", -8.0)])
# --8<-- [end:saturation]


# --8<-- [start:overflow]
def softmax_naive(v: torch.Tensor) -> torch.Tensor:
    e = torch.exp(v)
    return e / e.sum(dim=-1, keepdim=True)


def log_softmax_stable(v: torch.Tensor) -> torch.Tensor:
    """log-sum-exp with the max taken out: log sum exp(v) = m + log sum exp(v - m)."""
    m = v.max(dim=-1, keepdim=True).values
    return v - m - torch.log(torch.exp(v - m).sum(dim=-1, keepdim=True))


claim("88.7", math.log(torch.finfo(torch.float32).max))   # exp overflows float32 above this
claim("11.1", math.log(torch.finfo(torch.float16).max))   # ... and float16 above this
logits = torch.tensor([[90.0, 80.0, 0.0]])                 # float32, large but ordinary logits
assert torch.isnan(softmax_naive(logits)).any()            # inf / inf = NaN
stable = log_softmax_stable(logits)
assert torch.isfinite(stable).all() and torch.allclose(stable, F.log_softmax(logits, dim=-1))
assert torch.allclose(stable.exp(), torch.softmax(logits, dim=-1))
# Even without overflow, log(softmax) underflows for a large gap; log_softmax does not.
gap = torch.tensor([[0.0, 120.0]])
assert torch.isinf(torch.log(torch.softmax(gap, dim=-1))).any()
claim("−120", F.log_softmax(gap, dim=-1)[0, 0].item())    # the exact log-probability
# The binary version: sigmoid then BCELoss, against BCEWithLogitsLoss, at a logit of -200 (label 1).
zl = torch.tensor([-200.0], requires_grad=True)
t1 = torch.tensor([1.0])
bce_probs = F.binary_cross_entropy(torch.sigmoid(zl), t1)  # sigmoid(-200) underflows to exactly 0
(g_probs,) = torch.autograd.grad(bce_probs, zl)
bce_logits = F.binary_cross_entropy_with_logits(zl, t1)
(g_logits,) = torch.autograd.grad(bce_logits, zl)
claim("100", bce_probs.item()), claim("200", bce_logits.item())   # BCELoss clamps log(0) at -100 ...
assert g_probs.item() == 0.0 and g_logits.item() == -1.0           # ... and its gradient is gone
# --8<-- [end:overflow]

print(f"dL/dz at z=-10: CE {g_ce:.6f}, MSE {g_mse:.3e}, ratio {g_ce / g_mse:.0f}; steps to 80%: {steps}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
fig.subplots_adjust(wspace=0.3)
zz = np.linspace(-10, 10, 801)
p = 1 / (1 + np.exp(-zz))
ax1.plot(zz, -np.log(p), label="cross-entropy: $-\\log \\sigma(z)$")
ax1.plot(zz, (p - 1) ** 2, label="MSE: $(\\sigma(z) - 1)^2$")
ax1.set(xlabel="logit z (the label is 1)", ylabel="loss", ylim=(0, 4), title="Loss for a positive example")
ax1.legend(fontsize=8)
ax2.semilogy(zz, np.abs(p - 1), label="cross-entropy: $|\\sigma(z) - 1|$")
ax2.semilogy(zz, np.abs(2 * (p - 1) * p * (1 - p)), label="MSE: $|2(\\sigma - 1)\\sigma(1 - \\sigma)|$")
ax2.axvline(-10, c="0.6", lw=0.6, ls=":")
ax2.set(xlabel="logit z (the label is 1)", ylabel="|dL/dz|", ylim=(1e-6, 2),
        title=f"Gradient: {round(g_ce / g_mse, -3):,.0f}x apart at z = -10")
ax2.legend(fontsize=8, loc="lower left")
save(fig, "deep-learning", "cross-entropy-vs-mse")
