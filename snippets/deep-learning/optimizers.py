"""Gradient descent, SGD with momentum, RMSprop, Adam and AdamW by hand, matched to torch.optim."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)


# --8<-- [start:gd]
# Plain full-batch gradient descent on least squares, gradient written by hand.
X = rng.normal(size=(500, 5))
w_true = np.array([2.0, -1.0, 0.5, 0.0, 3.0])
y = X @ w_true + 0.1 * rng.normal(size=500)

w = np.zeros(5)
lr = 0.1
for step in range(200):
    residual = X @ w - y
    grad = 2 * X.T @ residual / len(y)       # d/dw of mean((Xw - y)^2)
    w -= lr * grad

w_closed = np.linalg.lstsq(X, y, rcond=None)[0]
assert np.allclose(w, w_closed, atol=1e-8)   # converges to the least-squares solution
assert np.abs(w - w_true).max() < 0.02
# --8<-- [end:gd]


# --8<-- [start:optimizers]
class SGDMomentum:
    """v <- beta*v + g ;  p <- p - lr*v   (torch's convention: no dampening, lr outside)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        self.params, self.lr, self.beta, self.wd = list(params), lr, momentum, weight_decay
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        for p, v in zip(self.params, self.v):
            g = p.grad + self.wd * p                 # L2 penalty folded into the gradient
            v.mul_(self.beta).add_(g)
            p.sub_(self.lr * v)


class RMSprop:
    """s <- a*s + (1-a)*g^2 ;  p <- p - lr * g / (sqrt(s) + eps)."""

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 1e-8):
        self.params, self.lr, self.alpha, self.eps = list(params), lr, alpha, eps
        self.s = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        for p, s in zip(self.params, self.s):
            s.mul_(self.alpha).add_((1 - self.alpha) * p.grad**2)
            p.sub_(self.lr * p.grad / (s.sqrt() + self.eps))


class Adam:
    """Momentum on g and RMSprop on g^2, both bias-corrected. decoupled=True gives AdamW."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False):
        self.params, self.lr, (self.b1, self.b2), self.eps = list(params), lr, betas, eps
        self.wd, self.decoupled, self.t = weight_decay, decoupled, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        self.t += 1
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            if self.decoupled:
                p.mul_(1 - self.lr * self.wd)        # AdamW: shrink the weights directly
            else:
                g = g + self.wd * p                  # Adam: L2 goes through the adaptive scaling
            m.mul_(self.b1).add_((1 - self.b1) * g)
            v.mul_(self.b2).add_((1 - self.b2) * g * g)
            m_hat = m / (1 - self.b1**self.t)        # undo the bias towards the zero init
            v_hat = v / (1 - self.b2**self.t)
            p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))
# --8<-- [end:optimizers]


# --8<-- [start:match]
def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).double()


def train(model: torch.nn.Module, opt, steps: int = 100) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):                               # a fresh minibatch every step: real SGD
        xb = torch.randn(16, 10, generator=g, dtype=torch.float64)
        yb = xb[:, :1].sin() + 0.1 * torch.randn(16, 1, generator=g, dtype=torch.float64)
        for p in model.parameters():
            p.grad = None
        torch.nn.functional.mse_loss(model(xb), yb).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


pairs = {
    "SGD+momentum": (lambda ps: SGDMomentum(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
                     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3)),
    "RMSprop": (lambda ps: RMSprop(ps, lr=1e-3),
                lambda ps: torch.optim.RMSprop(ps, lr=1e-3)),
    "Adam (L2)": (lambda ps: Adam(ps, lr=1e-2, weight_decay=1e-2),
                  lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2)),
    "AdamW": (lambda ps: Adam(ps, lr=1e-2, weight_decay=1e-2, decoupled=True),
              lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2)),
}
start = torch.cat([p.detach().flatten() for p in make_model().parameters()])
final = {}
for name, (mine, theirs) in pairs.items():
    m1, m2 = make_model(), make_model()
    p_mine = train(m1, mine(m1.parameters()))
    p_torch = train(m2, theirs(m2.parameters()))
    assert (p_mine - start).abs().max() > 1e-2              # the weights really moved...
    assert torch.allclose(p_mine, p_torch, rtol=0, atol=1e-12), name   # ...identically to torch
    final[name] = p_mine
# Adam with L2 and AdamW are different algorithms, not two spellings of one.
assert (final["Adam (L2)"] - final["AdamW"]).abs().max() > 1e-3
# --8<-- [end:match]
print("hand-written SGD+momentum, RMSprop, Adam, AdamW match torch.optim to 1e-12 after 100 steps")


# --8<-- [start:state]
# Optimiser memory: extra tensors kept per parameter tensor, each the parameter's size.
def state_floats(opt_cls, **kw) -> int:
    model = make_model()
    opt = opt_cls(model.parameters(), **kw)
    model(torch.randn(4, 10, dtype=torch.float64)).sum().backward()
    opt.step()
    return sum(t.numel() for st in opt.state.values() for t in st.values() if t.dim() > 0)


n_params = sum(p.numel() for p in make_model().parameters())
assert state_floats(torch.optim.SGD, lr=0.1) == 0                       # plain SGD: nothing
assert state_floats(torch.optim.SGD, lr=0.1, momentum=0.9) == n_params  # momentum buffer
assert state_floats(torch.optim.RMSprop, lr=0.1) == n_params            # running g^2
assert state_floats(torch.optim.Adam, lr=0.1) == 2 * n_params           # m and v
# --8<-- [end:state]


# --8<-- [start:first-step]
# Adam's first step is lr * g / (|g| + eps): about lr * sign(g), whatever the gradient's scale.
for scale in (1e-3, 1.0, 1e3):
    p = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    p.grad = torch.tensor([scale, 0.01 * scale], dtype=torch.float64)
    Adam([p], lr=0.1).step()
    assert torch.allclose(1.0 - p.detach(), torch.tensor([0.1, 0.1], dtype=torch.float64), atol=1e-4)
# eps only matters where sqrt(v) is near it. A coordinate whose gradient is a steady 1e-6 still
# moves by almost the full lr with eps = 1e-8 (noise that small gets amplified the same way) ...
def first_step(g: float, eps: float, lr: float = 0.1) -> float:
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    p.grad = torch.tensor([g], dtype=torch.float64)
    Adam([p], lr=lr, eps=eps).step()
    return (1.0 - p.item()) / lr                             # the step, in units of lr


claim("0.99η", first_step(1e-6, eps=1e-8))
claim("0.50η", first_step(1e-6, eps=1e-6))                  # a larger eps damps it
# ... and in float16 the default eps is not there at all: 1e-8 rounds to 0.
assert torch.tensor(1e-8, dtype=torch.float16).item() == 0.0
# --8<-- [end:first-step]


# --8<-- [start:quadratic]
# f(p) = p^T A p / 2 with curvatures 1 and 50 (condition number kappa = 50).
def quadratic(angle: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The Hessian A, and the start point (-4, 1) expressed in A's own (possibly rotated) axes."""
    c, s = np.cos(angle), np.sin(angle)
    R = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    A = R @ torch.diag(torch.tensor([1.0, 50.0], dtype=torch.float64)) @ R.T
    return A, R @ torch.tensor([-4.0, 1.0], dtype=torch.float64)


def run(make_opt, problem, steps: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Optimise from the start point; return the path and the loss curve."""
    A, start = problem
    p = torch.nn.Parameter(start.clone())
    opt, path = make_opt([p]), [p.detach().clone()]
    for _ in range(steps):
        p.grad = A @ p.detach()                           # exact gradient of p^T A p / 2
        opt.step()
        path.append(p.detach().clone())
    path = torch.stack(path)
    return path.numpy(), (0.5 * ((path @ A) * path).sum(1)).numpy()


def steps_to(curve: np.ndarray, tol: float = 1e-6) -> int:
    """The step after which f stays below tol for good."""
    above = np.flatnonzero(curve >= tol)
    return int(above[-1]) + 1 if len(above) else 0


Q, L, mu = quadratic(), 50.0, 1.0                         # largest and smallest curvature
optimisers = {
    "GD, lr=1.8/L": lambda ps: SGDMomentum(ps, lr=1.8 / L, momentum=0.0),
    "momentum 0.9, lr=0.3/L": lambda ps: SGDMomentum(ps, lr=0.3 / L, momentum=0.9),
    "RMSprop, lr=0.05": lambda ps: RMSprop(ps, lr=0.05),
    "Adam, lr=0.1": lambda ps: Adam(ps, lr=0.1),
}
runs = {name: run(make, Q) for name, make in optimisers.items()}
steps = {name: steps_to(curve) for name, (_, curve) in runs.items()}
claim("217", steps["GD, lr=1.8/L"])                       # the table, first row
claim("162", steps["momentum 0.9, lr=0.3/L"])
claim("118", steps["RMSprop, lr=0.05"])
claim("161", steps["Adam, lr=0.1"])

# With the best constant settings: GD ~ kappa steps per decade, heavy ball ~ sqrt(kappa).
_, gd_best = run(lambda ps: SGDMomentum(ps, lr=2 / (L + mu), momentum=0.0), Q)
_, hb_best = run(lambda ps: SGDMomentum(ps, lr=4 / (L**0.5 + mu**0.5) ** 2,
                                        momentum=((L**0.5 - mu**0.5) / (L**0.5 + mu**0.5)) ** 2), Q)
claim("46 steps", steps_to(hb_best))
claim("against 217", steps_to(gd_best))
claim("0.96", (L / mu - 1) / (L / mu + 1))                 # GD's best rate per step, kappa = 50
path, _ = run(lambda ps: SGDMomentum(ps, lr=2.2 / L, momentum=0.0), Q, steps=100)
claim("beyond $10^3$", np.abs(path[-1]).max())              # lr > 2/L: the steep direction blows up

# Adam's first step moves both coordinates by lr, ignoring the 50x difference in curvature.
adam_path = runs["Adam, lr=0.1"][0]
assert np.allclose(np.abs(adam_path[1] - adam_path[0]), 0.1, atol=1e-6)
# Rotate the same valley by 45 degrees: GD does not care, the per-coordinate methods do.
Q_rot = quadratic(np.pi / 4)
rot = {name: steps_to(run(optimisers[name], Q_rot)[1]) for name in ("GD, lr=1.8/L", "RMSprop, lr=0.05", "Adam, lr=0.1")}
assert rot["GD, lr=1.8/L"] == steps["GD, lr=1.8/L"]
claim("469", rot["RMSprop, lr=0.05"])
claim("340", rot["Adam, lr=0.1"])
claim("4×", rot["RMSprop, lr=0.05"] / steps["RMSprop, lr=0.05"])
claim("2×", rot["Adam, lr=0.1"] / steps["Adam, lr=0.1"])
# --8<-- [end:quadratic]


# --8<-- [start:schedule]
# Learning-rate schedules on the same valley with noisy gradients (g = A p + noise): 200 runs at
# once (one column each), SGD + momentum 0.9, 300 steps from the same peak lr.
def constant(t: int, T: int) -> float:
    return 1.0


def step_decay(t: int, T: int) -> float:                  # x0.1 at 50% and at 75% of training
    return 1.0 if t < T // 2 else 0.1 if t < 3 * T // 4 else 0.01


def cosine(t: int, T: int, warmup: int = 0) -> float:
    if t < warmup:
        return (t + 1) / warmup                            # linear warmup
    return 0.5 * (1 + math.cos(math.pi * (t - warmup) / (T - warmup)))


def final_loss(schedule, T: int = 300, peak: float = 0.3 / L, runs: int = 200) -> float:
    g = torch.Generator().manual_seed(0)
    A = quadratic()[0]
    p = torch.nn.Parameter(torch.tensor([[-4.0], [1.0]], dtype=torch.float64).repeat(1, runs))
    opt = SGDMomentum([p], lr=peak, momentum=0.9)
    for t in range(T):
        opt.lr = peak * schedule(t, T)
        p.grad = A @ p.detach() + torch.randn(p.shape, generator=g, dtype=torch.float64)
        opt.step()
    return (0.5 * (p.detach() * (A @ p.detach())).sum(0)).mean().item()   # mean over the runs


losses = {name: final_loss(s) for name, s in [("constant", constant), ("step", step_decay), ("cosine", cosine),
                                               ("warmup+cosine", lambda t, T: cosine(t, T, warmup=20))]}
claim("0.028", losses["constant"])                         # the noise floor of a constant lr
claim("0.0061", losses["step"])
claim("0.0040", losses["cosine"])
claim("0.0043", losses["warmup+cosine"])
claim("7×", losses["constant"] / losses["cosine"])
# --8<-- [end:schedule]
print("steps to f < 1e-6 on kappa=50: " + ", ".join(f"{k} {v}" for k, v in steps.items()))
print(f"best constant settings: GD {steps_to(gd_best)}, heavy ball {steps_to(hb_best)}; "
      "rotated 45 deg: " + ", ".join(f"{k} {v}" for k, v in rot.items()))
print("final loss with noisy gradients: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))

fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1.3, 1]},
                             layout="constrained")
xs, ys = np.meshgrid(np.linspace(-4.5, 1.0, 200), np.linspace(-1.4, 1.4, 200))
ax.contour(xs, ys, 0.5 * (xs**2 + 50 * ys**2), levels=np.geomspace(0.01, 60, 12), colors="0.8", linewidths=0.7)
colors = dict(zip(runs, ["tab:red", "tab:blue", "tab:orange", "tab:green"]))
for name, (path, curve) in runs.items():
    ax.plot(path[:80, 0], path[:80, 1], ".-", ms=2.5, lw=0.9, c=colors[name], label=name)
    bx.semilogy(curve + 1e-300, c=colors[name], label=name)
ax.plot(0, 0, "k*", ms=8)
ax.set(xlabel="x (curvature 1)", ylabel="y (curvature 50)", title="First 80 steps")
ax.legend(fontsize=7, loc="lower right")
bx.axhline(1e-6, c="0.6", ls=":", lw=0.8)
bx.set(xlabel="step", ylabel="f(p)", title="Loss (dotted: 1e-6)", ylim=(1e-12, 1e2), xlim=(0, 400))
save(fig, "deep-learning", "optimizers-quadratic")
