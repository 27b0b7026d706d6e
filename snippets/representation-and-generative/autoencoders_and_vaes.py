"""Autoencoders and VAEs: the Gaussian KL in closed form against Monte Carlo, reparameterisation against
score-function gradients, and a small AE and VAE on scikit-learn's digits (against PCA, and sampled from the prior)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from sklearn.datasets import load_digits
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)

X_np = load_digits().data / 16.0                      # 1,797 digits, 8x8 pixels in [0, 1]
X = torch.tensor(X_np, dtype=torch.float32)
perm = torch.randperm(len(X))
X_train, X_test = X[perm[:1500]], X[perm[1500:]]


# --8<-- [start:kl]
def kl_closed_form(mu: np.ndarray, log_var: np.ndarray) -> float:
    """KL( N(mu, diag(exp(log_var))) || N(0, I) ), summed over dimensions."""
    return float(0.5 * np.sum(mu**2 + np.exp(log_var) - 1.0 - log_var))


def log_normal(z: np.ndarray, mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mu) ** 2 / np.exp(log_var), axis=-1)


mu, log_var = rng.normal(0, 1, 8), rng.normal(-1, 0.5, 8)       # one encoder output, 8 latent dims
z = mu + np.exp(0.5 * log_var) * rng.standard_normal((100_000, 8))
log_ratio = log_normal(z, mu, log_var) - log_normal(z, np.zeros(8), np.zeros(8))
kl_mc, kl_se = log_ratio.mean(), log_ratio.std() / np.sqrt(len(z))
kl_exact = kl_closed_form(mu, log_var)
assert abs(kl_mc - kl_exact) < 4 * kl_se                         # Monte Carlo agrees within its noise ...
claim("4.50", kl_exact)
claim("within 0.3%", abs(kl_mc - kl_exact) / kl_exact)
# ... but one sample per data point, as a VAE would draw, is far noisier than the exact term:
claim("1.75", log_ratio.std(), tol=0.02)
# --8<-- [end:kl]

# --8<-- [start:gradients]
# d/dmu E_{z ~ N(mu, s^2)}[(z - c)^2] = 2 (mu - c). Two unbiased single-sample estimators:
m, s, c, n = 0.5, 1.0, 2.0, 100_000
eps = rng.standard_normal(n)
z = m + s * eps
g_reparam = 2 * (z - c)                          # differentiate through z = mu + s * eps
g_score = (z - c) ** 2 * (z - m) / s**2          # f(z) * d log q(z) / d mu (REINFORCE)
truth = 2 * (m - c)
for g in (g_reparam, g_score):
    assert abs(g.mean() - truth) < 4 * g.std() / np.sqrt(n)     # both unbiased
ratio = g_score.var() / g_reparam.var()
# Exactly: Var[score] = E[(eps + a)^4 eps^2] - (2a)^2 = 15 + 14 a^2 + a^4 with a = m - c, against Var[reparam] = 4.
a = m - c
assert abs(ratio - (15 + 14 * a**2 + a**4) / 4) < 0.05 * ratio
claim("12.9", ratio, tol=0.5)
# A baseline b = E[f] (a control variate) helps the score function, but here it stays the noisier one:
g_score_b = ((z - c) ** 2 - ((m - c) ** 2 + s**2)) * (z - m) / s**2
assert g_reparam.var() < g_score_b.var() < g_score.var()
# In d dimensions, f = sum_i (z_i - c)^2 and the gradient for mu_1: the score function multiplies the whole sum
# by eps_1, so it carries the noise of all d terms. Exactly, with mean e_r and variance var_r of the other d - 1:
d = 64
zd = m + s * rng.standard_normal((20_000, d))
f = ((zd - c) ** 2).sum(axis=1)
ratio_64 = ((f * (zd[:, 0] - m) / s**2).var()) / (2 * (zd[:, 0] - c)).var()
e_r, var_r = (d - 1) * (1 + a**2), (d - 1) * (2 + 4 * a**2)
exact_64 = ((15 + 18 * a**2 + a**4) + 2 * (3 + a**2) * e_r + var_r + e_r**2 - 4 * a**2) / 4
claim("11,204", exact_64)
claim("within 5%", abs(ratio_64 - exact_64) / exact_64)      # the Monte Carlo ratio agrees
# Not a law, though: for a rapidly varying f the pathwise gradient f'(z) is the noisy one. f(z) = sin(3z):
g_reparam_sin, g_score_sin = 3 * np.cos(3 * z), np.sin(3 * z) * (z - m) / s**2
claim("4.5", g_reparam_sin.var(), tol=0.1)      # about k^2 / 2 for sin(kz)
claim("0.50", g_score_sin.var(), tol=0.02)      # about 1/2
# --8<-- [end:gradients]


# --8<-- [start:model]
class AutoEncoder(nn.Module):
    def __init__(self, latent: int, variational: bool):
        super().__init__()
        self.variational = variational
        self.enc = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 2 * latent if variational else latent))
        self.dec = nn.Sequential(nn.Linear(latent, 128), nn.ReLU(), nn.Linear(128, 64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        if not self.variational:
            return torch.sigmoid(self.dec(h)), torch.zeros(())
        mu, log_var = h.chunk(2, dim=1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)       # the reparameterisation trick
        kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(dim=1).mean()
        return torch.sigmoid(self.dec(z)), kl

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        return h.chunk(2, dim=1)[0] if self.variational else h


def train(model: AutoEncoder, steps: int = 400, beta: float = 1.0) -> AutoEncoder:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)      # one kernel per step: faster on CPU
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps, pct_start=0.1)
    for _ in range(steps):
        x = X_train[torch.randint(0, len(X_train), (128,))]
        x_hat, kl = model(x)
        # Bernoulli likelihood on pixel intensities: the reconstruction term of the ELBO, in nats.
        rec = nn.functional.binary_cross_entropy(x_hat, x, reduction="sum") / len(x)
        loss = rec + beta * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()
# --8<-- [end:model]


# --8<-- [start:train]
latent = 8
torch.manual_seed(0)
ae = train(AutoEncoder(latent, variational=False))
torch.manual_seed(0)
vae = train(AutoEncoder(latent, variational=True))

with torch.no_grad():
    mse_ae = ((ae.dec(ae.encode_mean(X_test)).sigmoid() - X_test) ** 2).mean().item()
    mse_vae = ((vae.dec(vae.encode_mean(X_test)).sigmoid() - X_test) ** 2).mean().item()
    # PCA with the same 8 dimensions, fitted on the training set: the linear baseline.
    mean = X_train.mean(0)
    _, _, Vt = torch.linalg.svd(X_train - mean, full_matrices=False)
    P = Vt[:latent]
    mse_pca = ((((X_test - mean) @ P.T) @ P + mean - X_test) ** 2).mean().item()
assert mse_ae < mse_pca < mse_vae     # the AE beats linear PCA; the KL term costs the VAE reconstruction
claim("0.013–0.016", mse_ae)
claim("0.028–0.032", mse_vae)
claim("0.025", mse_pca)
claim("1.9–2.3 times", mse_vae / mse_ae)

# Sampling: decode z ~ N(0, I), and score a sample by the distance to its nearest real digit (in pixel RMS).
# The AE's decoder is not what fails: decode a Gaussian fitted to its codes instead, and it generates too.
with torch.no_grad():
    z_prior = torch.randn(500, latent)
    codes_ae = ae.encode_mean(X_train)
    fitted = torch.distributions.MultivariateNormal(codes_ae.mean(0), torch.cov(codes_ae.T)).sample((500,))
    samples = {"AE": ae.dec(z_prior).sigmoid(), "AE, fitted Gaussian": ae.dec(fitted).sigmoid(),
               "VAE": vae.dec(z_prior).sigmoid()}
    nn_rms = {name: (torch.cdist(s, X_train).min(dim=1).values / 8).median().item() for name, s in samples.items()}
    test_nn = (torch.cdist(X_test, X_train).min(dim=1).values / 8).median().item()
    mean_digit_nn = (torch.cdist(mean[None], X_train).min() / 8).item()     # one blurry average digit
    h = vae.enc(X_train)
    var_mu, mean_var = h[:, :latent].var(0), h[:, latent:].exp().mean(0)
# Per dimension, Var[mu] + E[sigma^2] is the variance of the aggregate posterior: about 1, as the prior.
claim("0.9–1.1", (var_mu + mean_var).mean())
active = int((var_mu > 0.01).sum())             # an active unit: its mean moves with the input
claim("only 6", active)                          # the others are collapsed: q(z|x) = prior for every x
kl_unit = (0.5 * (h[:, :latent] ** 2 + h[:, latent:].exp() - 1 - h[:, latent:])).mean(0)
claim("under 0.01 nats", kl_unit[var_mu <= 0.01].max())     # what the switched-off units carry about x
claim("1.0–1.4", codes_ae.mean(0).abs().mean())  # nothing ties the AE's codes to N(0, I): off-centre ...
claim("1.5–1.9", codes_ae.std(0).mean())         # ... and wider
assert nn_rms["VAE"] < nn_rms["AE, fitted Gaussian"] < mean_digit_nn < nn_rms["AE"]
claim("0.14–0.16", nn_rms["VAE"])
claim("0.15–0.18", nn_rms["AE, fitted Gaussian"])
claim("0.20–0.23", nn_rms["AE"])
claim("0.190", mean_digit_nn)
claim("0.128", test_nn)
# --8<-- [end:train]

print(f"KL exact {kl_exact:.4f}, MC {kl_mc:.4f} +- {kl_se:.4f} (rel {abs(kl_mc - kl_exact) / kl_exact:.2%}), "
      f"per-sample std {log_ratio.std():.2f}")
print(f"grad variance ratio score/reparam: 1-D {ratio:.2f}, 64-D {ratio_64:.0f} (exact {exact_64:.0f}); "
      f"sin(3z): reparam {g_reparam_sin.var():.3f}, score {g_score_sin.var():.3f}")
print(f"test MSE: AE {mse_ae:.4f}, VAE {mse_vae:.4f}, PCA {mse_pca:.4f}")
print(f"AE codes: |mean| {codes_ae.mean(0).abs().mean():.2f}, std {codes_ae.std(0).mean():.2f}; VAE active {active}, "
      f"var_mu {var_mu.numpy().round(2)}, mean_var {mean_var.numpy().round(2)}; ratio {mse_vae / mse_ae:.2f}")
print("sample NN RMS:", {k: round(v, 3) for k, v in nn_rms.items()},
      f"mean digit {mean_digit_nn:.3f}, test {test_nn:.3f}")

with torch.no_grad():
    rows = [("test digit", X_test[:10]), ("AE", ae.dec(ae.encode_mean(X_test[:10])).sigmoid()),
            ("VAE", vae.dec(vae.encode_mean(X_test[:10])).sigmoid()), ("AE, N(0, I)", samples["AE"][:10]),
            ("AE, fitted", samples["AE, fitted Gaussian"][:10]), ("VAE, N(0, I)", samples["VAE"][:10])]
# One image: a 6 x 10 mosaic of 8x8 digits with a 1-pixel gap (one imshow is far cheaper than 60 axes).
mosaic = np.ones((9 * len(rows) - 1, 9 * 10 - 1))
for r, (_, imgs) in enumerate(rows):
    for i in range(10):
        mosaic[9 * r:9 * r + 8, 9 * i:9 * i + 8] = 1 - imgs[i].reshape(8, 8).numpy()
fig, ax = plt.subplots(figsize=(7, 4.4))
ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
ax.set_xticks([])
ax.set_yticks([9 * r + 3.5 for r in range(len(rows))], [label for label, _ in rows], fontsize=8)
ax.set_title("Held-out digits, their reconstructions (8-D latent), and samples", fontsize=9)
save(fig, "representation-and-generative", "vae-digits")
