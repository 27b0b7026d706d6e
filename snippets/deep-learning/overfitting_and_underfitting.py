"""Under- and overfitting: one-hidden-layer tanh MLPs of growing width fitted to 16 noisy samples of a sine."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from _figures import save

from vault.claims import claim

rng = np.random.default_rng(0)

# --8<-- [start:data]
NOISE_STD = 0.25                                 # irreducible error: no model can beat MSE 0.0625
N_TRAIN = 16


def target(x: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * x)


x_train = rng.uniform(0, 1, N_TRAIN)
y_train = target(x_train) + rng.normal(0, NOISE_STD, N_TRAIN)
x_val = rng.uniform(0, 1, 500)
y_val = target(x_val) + rng.normal(0, NOISE_STD, 500)
# --8<-- [end:data]


# --8<-- [start:model]
def predict(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """f(x) = sum_j c_j tanh(a_j x + b_j) + d, with theta = [a, b, c, d]; w hidden units, 3w + 1 weights."""
    w = (len(theta) - 1) // 3
    a, b, c, d = theta[:w], theta[w:2 * w], theta[2 * w:3 * w], theta[-1]
    return np.tanh(np.outer(x, a) + b) @ c + d


def jacobian(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d f(x_i) / d theta_k, shape (N, 3w + 1): backprop written out for one hidden layer."""
    w = (len(theta) - 1) // 3
    a, b, c = theta[:w], theta[w:2 * w], theta[2 * w:3 * w]
    h = np.tanh(np.outer(x, a) + b)
    dz = (1 - h**2) * c                          # through the output weight and tanh'
    return np.concatenate([dz * x[:, None], dz, h, np.ones((len(x), 1))], axis=1)


def init(width: int, rng) -> np.ndarray:
    a = rng.normal(0, 5, width)
    b = -a * rng.uniform(0, 1, width)            # each unit bends somewhere inside [0, 1]
    c = rng.normal(0, 1, width) / np.sqrt(width)
    return np.concatenate([a, b, c, [0.0]])


def mse(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((predict(theta, x) - y) ** 2))
# --8<-- [end:model]


# --8<-- [start:fit]
def fit_to_convergence(theta: np.ndarray, iters: int = 200) -> np.ndarray:
    """Levenberg-Marquardt on the training MSE: a damped Gauss-Newton method.

    Second order, so every width reaches a minimum in a couple of hundred steps; what differs
    between widths is then capacity, not how long we happened to train.
    """
    lam, loss = 1e-2, mse(theta, x_train, y_train)
    for _ in range(iters):
        J = jacobian(theta, x_train)
        r = predict(theta, x_train) - y_train
        if J.shape[1] > len(r):                  # more weights than points: solve the small system
            step = J.T @ np.linalg.solve(J @ J.T + lam * np.eye(len(r)), r)
        else:
            step = np.linalg.solve(J.T @ J + lam * np.eye(J.shape[1]), J.T @ r)
        new_loss = mse(theta - step, x_train, y_train)
        if new_loss < loss:
            theta, loss, lam = theta - step, new_loss, max(lam / 3, 1e-9)
        else:
            lam *= 4
    return theta


WIDTHS = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 256]    # 4 to 769 weights, for 16 training points
RESTARTS = 5
train_err = np.zeros((len(WIDTHS), RESTARTS))
val_err = np.zeros((len(WIDTHS), RESTARTS))
fits = {}
for i, width in enumerate(WIDTHS):
    for r in range(RESTARTS):
        theta = fit_to_convergence(init(width, rng))
        train_err[i, r] = mse(theta, x_train, y_train)
        val_err[i, r] = mse(theta, x_val, y_val)
        fits.setdefault(width, theta)
train_med, val_med = np.median(train_err, axis=1), np.median(val_err, axis=1)
# --8<-- [end:fit]

# --8<-- [start:regimes]
noise_var = NOISE_STD**2
best = int(np.argmin(val_med))
small, large = 0, len(WIDTHS) - 1
wide = slice(WIDTHS.index(16), None)             # 49+ weights for 16 points
# Sweet spot: a network with a handful of units, validation error close to the noise floor.
assert WIDTHS[best] in (2, 3, 4) and val_med[best] < 1.3 * noise_var
# Underfitting: one unit cannot bend twice. It cannot even fit the training set down to the
# noise level, which every wider net does, and its validation error is just as bad.
assert train_med[small] > 1.5 * noise_var and np.all(train_med[1:] < 0.5 * noise_var)
assert val_med[small] > 2 * val_med[best] and val_med[small] < 2 * train_med[small]
# Overfitting: the wide nets fit the training set far below the noise level (they fit the noise) ...
assert np.all(train_med[wide] < 0.1 * noise_var)
# ... and their validation error is more than 10x the best: a huge generalisation gap.
assert np.all(val_med[wide] > 10 * val_med[best])
assert val_med[large] - train_med[large] > 20 * (val_med[best] - train_med[best])
# Overfitting starts before the weights outnumber the points: 3 and 4 units (10 and 13 weights).
i3, i4 = WIDTHS.index(3), WIDTHS.index(4)
assert 3 * 4 + 1 < N_TRAIN and train_med[i3] < noise_var and val_med[i3] > 1.4 * val_med[best]
# The table on the page, width by width: median train and validation MSE over the 5 restarts.
row = {w: (train_med[i], val_med[i]) for i, w in enumerate(WIDTHS)}
claim("0.110", row[1][0]); claim("0.158", row[1][1])
claim("0.022", row[2][0]); claim("0.067", row[2][1])
claim("0.011", row[3][0]); claim("0.104", row[3][1])
claim("0.006", row[4][0]); claim("0.178", row[4][1])
claim("0.006", row[6][0]); claim("1.14", row[6][1])
claim("0.004", row[16][0]); claim("1.20", row[16][1])
claim("0.004", row[256][0]); claim("2.21", row[256][1])
claim("1.5×", val_med[i3] / val_med[best]); claim("2.6×", val_med[i4] / val_med[best])
claim("7% of the noise variance", row[16][0] / noise_var)
claim("33×", row[256][1] / val_med[best])
# --8<-- [end:regimes]


# --8<-- [start:early-stopping]
def adam_curve(theta: np.ndarray, steps: int = 3000, lr: float = 0.005, every: int = 25):
    """Plain full-batch Adam on the same MSE; log train and validation error as training goes on."""
    m, v, log = np.zeros_like(theta), np.zeros_like(theta), []
    for t in range(1, steps + 1):
        r = predict(theta, x_train) - y_train
        g = 2 / len(r) * jacobian(theta, x_train).T @ r
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        theta = theta - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        if t % every == 0:
            log.append((t, mse(theta, x_train, y_train), mse(theta, x_val, y_val)))
    return np.array(log)


curve = adam_curve(init(256, rng))
steps, curve_train, curve_val = curve.T
stop = int(np.argmin(curve_val))
claim("75 Adam steps", steps[stop])
claim("0.062", curve_val[stop])                  # the best validation error, near the noise floor
claim("0.023", curve_train[stop])
# Training error keeps falling; validation error bottoms out and then climbs. The late phase depends
# on the floating-point kernels (the BLAS build), so the page gives it as bands.
claim("about 0.013", curve_train[-1], tol=0.001)
claim("0.11–0.14", curve_val[-1])
assert curve_val[-1] > 1.5 * curve_val[stop]
# --8<-- [end:early-stopping]


# --8<-- [start:weight-decay]
def fit_with_weight_decay(theta: np.ndarray, alpha: float, iters: int = 200) -> np.ndarray:
    """Levenberg-Marquardt on sum(r^2) + alpha * |theta|^2 (L2 on every weight).

    The damped Gauss-Newton system (J^T J + (alpha + lam) I) step = J^T r + alpha theta is solved in
    its small 16 x 16 form (Woodbury), since the net has far more weights than points.
    """
    def objective(th: np.ndarray) -> float:
        return float(np.sum((predict(th, x_train) - y_train) ** 2) + alpha * th @ th)

    lam, E = 1e-2, objective(theta)
    for _ in range(iters):
        J = jacobian(theta, x_train)
        g = J.T @ (predict(theta, x_train) - y_train) + alpha * theta
        s_ = alpha + lam
        step = (g - J.T @ np.linalg.solve(s_ * np.eye(N_TRAIN) + J @ J.T, J @ g)) / s_
        if (E_new := objective(theta - step)) < E:
            theta, E, lam = theta - step, E_new, max(lam / 3, 1e-9)
        else:
            lam *= 4
    return theta


wd_rng = np.random.default_rng(1)                # fresh restarts of the 256-unit network
ALPHAS = [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
wd_train, wd_val = [], []
for alpha in ALPHAS:
    thetas = [fit_with_weight_decay(init(256, wd_rng), alpha) for _ in range(RESTARTS)]
    wd_train.append(np.median([mse(t, x_train, y_train) for t in thetas]))
    wd_val.append(np.median([mse(t, x_val, y_val) for t in thetas]))
# One knob spans both regimes: none overfits, a little recovers the noise floor, a lot underfits.
claim("1.98", wd_val[0]); claim("0.21", wd_val[1]); claim("0.068", wd_val[2])
claim("0.058", wd_val[3]); claim("0.31", wd_val[4]); claim("0.395", wd_val[5])
claim("0.0037", wd_train[0]); claim("0.0093", wd_train[1]); claim("0.020", wd_train[2])
claim("0.026", wd_train[3]); claim("0.20", wd_train[4]); claim("0.30", wd_train[5])
assert min(wd_val) < 1.1 * noise_var and wd_val[0] > 20 * min(wd_val)
# --8<-- [end:weight-decay]

for i, w in enumerate(WIDTHS):
    print(f"width {w:3d}: median train MSE {train_med[i]:.4f}  median val MSE {val_med[i]:8.4f}")
print(f"noise variance {noise_var:.4f}; Adam on 256 units: best val {curve_val[stop]:.4f} (train "
      f"{curve_train[stop]:.4f}) at step {int(steps[stop])}, final train {curve_train[-1]:.4f} "
      f"val {curve_val[-1]:.4f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
fig.subplots_adjust(wspace=0.35)
ax1.plot(WIDTHS, train_med, "o-", label="train")
ax1.plot(WIDTHS, val_med, "s-", label="validation")
ax1.axhline(noise_var, color="0.5", ls="--", lw=1, label="noise variance")
ax1.axvline(N_TRAIN / 3, color="0.7", ls=":", lw=1)
ax1.text(N_TRAIN / 3 * 1.1, 0.03, "weights = points\n(interpolation)", fontsize=7, color="0.4")
ax1.set(xscale="log", yscale="log", xlabel="hidden units (capacity)",
        ylabel="MSE (median of 5 restarts)", title="Trained to convergence")
ax1.annotate("underfit", (WIDTHS[small], val_med[small]), textcoords="offset points",
             xytext=(4, 8), fontsize=8)
ax1.annotate("overfit", (WIDTHS[large], val_med[large]), textcoords="offset points",
             xytext=(-34, -14), fontsize=8)
ax1.legend(fontsize=7, loc="center right", framealpha=1)
ax2.plot(steps, curve_train, label="train")
ax2.plot(steps, curve_val, label="validation")
ax2.axvline(steps[stop], color="tab:green", ls=":", lw=1.2, label="early stop")
ax2.axhline(noise_var, color="0.5", ls="--", lw=1)
ax2.set(yscale="log", xlabel="Adam step", ylabel="MSE", title="256 units, over training time")
ax2.legend(fontsize=7)
save(fig, "deep-learning", "overfitting-capacity")

xs = np.linspace(0, 1, 400)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(xs, target(xs), c="0.4", lw=1, ls=":", label="true function")
ax.scatter(x_train, y_train, c="k", s=14, zorder=3, label="16 training points")
for w, c in [(WIDTHS[small], "tab:blue"), (WIDTHS[best], "tab:green"), (WIDTHS[large], "tab:red")]:
    ax.plot(xs, predict(fits[w], xs), c=c, lw=1.5, label=f"{w} hidden units")
ax.set(xlabel="x", ylabel="y", ylim=(-2.2, 2.2), title="Underfit, good fit, overfit")
ax.legend(fontsize=7, loc="lower left")
save(fig, "deep-learning", "overfitting-fits")
