"""Identity Mappings in Deep Residual Networks, checked numerically: the "1 +" in the gradient of
a residual unit, the paper's gradient decomposition through a deep stack, and how the gradient
scale changes with depth for identity, scaled and missing shortcuts."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from _figures import save
from torch import nn
from torch.autograd.functional import jacobian

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
WIDTH, DEPTH, BATCH = 64, 100, 256


# --8<-- [start:units]
class Branch(nn.Module):
    """The residual function F: BN-ReLU-weight-BN-ReLU-weight (pre-activation), or
    weight-BN-ReLU-weight-BN (original). Linear layers stand in for convolutions."""

    def __init__(self, width: int, pre_activation: bool):
        super().__init__()
        self.pre = pre_activation
        self.w1, self.w2 = nn.Linear(width, width, bias=False), nn.Linear(width, width, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm1d(width), nn.BatchNorm1d(width)

    def forward(self, x):
        if self.pre:
            return self.w2(torch.relu(self.bn2(self.w1(torch.relu(self.bn1(x))))))
        return self.bn2(self.w2(torch.relu(self.bn1(self.w1(x)))))


UNITS = {  # x_{l+1} = f(h(x_l) + F(x_l)) for the variants the paper compares
    "pre-activation (identity h, identity f)": (True, lambda x, F: x + F(x)),
    "original (identity h, f = ReLU)": (False, lambda x, F: torch.relu(x + F(x))),
    "constant scaling (h = 0.5x)": (False, lambda x, F: torch.relu(0.5 * x + F(x))),
    "no shortcut (plain network)": (False, lambda x, F: torch.relu(F(x))),
}
# --8<-- [end:units]


# --8<-- [start:one-plus]
# One unit with identity h and f: dx_{l+1}/dx_l = I + dF/dx_l, exactly.
F = Branch(8, pre_activation=True).eval()
x0 = torch.randn(4, 8)
J_unit = jacobian(lambda x: x + F(x), x0)               # shape (4, 8, 4, 8)
J_branch = jacobian(F, x0)
identity = torch.eye(32).reshape(4, 8, 4, 8)
assert torch.allclose(J_unit - J_branch, identity, atol=1e-6)
# --8<-- [end:one-plus]


# --8<-- [start:decomposition]
# Through L pre-activation units: x_L = x_l + sum_i F(x_i), so
#   dE/dx_l = dE/dx_L + dE/dx_L * d(sum_i F)/dx_l         (the paper's Eq. 5)
# The first term reaches x_l untouched by any weight layer.
branches = [Branch(WIDTH, pre_activation=True) for _ in range(20)]
x_l = torch.randn(BATCH, WIDTH, requires_grad=True)
h = x_l
for F in branches:
    h = h + F(h)
x_L = h
E = (x_L * torch.randn_like(x_L)).sum()
dE_dxL, dE_dxl = torch.autograd.grad(E, [x_L, x_l], retain_graph=True)
(through_weights,) = torch.autograd.grad(x_L - x_l, x_l, grad_outputs=dE_dxL)   # the sum of F's part
assert torch.allclose(dE_dxl, dE_dxL + through_weights, atol=1e-4)
# --8<-- [end:decomposition]


# --8<-- [start:depth]
def gradient_profile(pre: bool, unit, depth: int = DEPTH) -> list[float]:
    """||dE/dx_l|| for every unit l of a freshly initialised stack (training-mode BN)."""
    torch.manual_seed(0)
    branches = [Branch(WIDTH, pre) for _ in range(depth)]
    xs = [torch.randn(BATCH, WIDTH, requires_grad=True)]
    for F in branches:
        xs.append(unit(xs[-1], F))
        xs[-1].retain_grad()
    (xs[-1] * torch.randn_like(xs[-1])).sum().div(BATCH).backward()
    return [x.grad.norm().item() for x in xs]


profiles = {name: gradient_profile(pre, unit) for name, (pre, unit) in UNITS.items()}
growth = {name: p[0] / p[-1] for name, p in profiles.items()}   # ||dE/dx_0|| / ||dE/dx_L||
# Identity path: the gradient grows slowly towards the input.
claim("15.6×", growth["pre-activation (identity h, identity f)"])
# A ReLU after the addition sits on the path too: more growth, far below the multiplicative cases.
claim("134×", growth["original (identity h, f = ReLU)"])
# Anything multiplicative on the path (a scale, or no shortcut at all): the gradient explodes, at
# a constant rate per unit (a straight line on a log plot: each half of the stack contributes alike).
for name in ["constant scaling (h = 0.5x)", "no shortcut (plain network)"]:
    p = torch.tensor(profiles[name]).log()
    claim("more than $10^{12}$", growth[name])
    assert 0.67 < (p[0] - p[DEPTH // 2]) / (p[DEPTH // 2] - p[-1]) < 1.5
# He et al.'s formula predicts something else for h = 0.5x: the direct shortcut term vanishes.
claim("$8 \\times 10^{-31}$", 0.5 ** DEPTH)
# --8<-- [end:depth]

for name, g in growth.items():
    print(f"{name:42s} ||dE/dx_0|| / ||dE/dx_{DEPTH}|| = {g:.3g}")

fig, ax = plt.subplots(figsize=(6, 3.6))
for (name, prof), style in zip(profiles.items(), ["-", "--", "-.", ":"]):
    ax.semilogy(range(DEPTH + 1), prof, style, lw=2, label=name)
ax.set(xlabel="residual unit l (input side on the left)", ylabel="||dE/dx_l||",
       title=f"Gradient norm through {DEPTH} units at initialisation")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
save(fig, "notes", "identity-mappings-gradients", exact=False)
