"""Three ways to compute a convolution, each equal to F.conv2d: im2col + GEMM, FFT, Winograd F(2x2, 3x3);
im2col's memory factor, Winograd's 4 multiplications against 6, and the accuracy cost of larger tiles."""
from __future__ import annotations

import math
from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:im2col]
def im2col(x: torch.Tensor, k: int, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*k*k, H'*W'): one column per output pixel, the C*k*k inputs under the kernel."""
    xp = F.pad(x, (padding,) * 4)
    b, c, h, w = xp.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    rows = [xp[:, :, u:u + stride * (ho - 1) + 1:stride, v:v + stride * (wo - 1) + 1:stride]
            for u in range(k) for v in range(k)]                 # k*k shifted views, each (B, C, H', W')
    return torch.stack(rows, dim=2).reshape(b, c * k * k, ho * wo)


def conv_im2col(x, weight, stride=1, padding=0):
    """The convolution as one matrix product: (C_out, C_in*k*k) @ (C_in*k*k, H'*W')."""
    o, c, k, _ = weight.shape
    cols = im2col(x, k, stride, padding)
    ho = (x.shape[2] + 2 * padding - k) // stride + 1
    return (weight.reshape(o, c * k * k) @ cols).reshape(x.shape[0], o, ho, -1)


def conv_shift_gemm(x, weight, padding=0):
    """The same sum as k*k smaller GEMMs on shifted views, with no k*k-times buffer (stride 1)."""
    o, c, k, _ = weight.shape
    xp = F.pad(x, (padding,) * 4)
    ho, wo = xp.shape[2] - k + 1, xp.shape[3] - k + 1
    out = torch.zeros(x.shape[0], o, ho, wo, dtype=x.dtype)
    for u in range(k):
        for v in range(k):
            out += torch.einsum("oc,bchw->bohw", weight[:, :, u, v], xp[:, :, u:u + ho, v:v + wo])
    return out


x = torch.randn(2, 8, 20, 20, dtype=torch.float64)
w3 = torch.randn(16, 8, 3, 3, dtype=torch.float64)
for stride, padding in [(1, 1), (2, 1), (1, 0)]:
    torch.testing.assert_close(conv_im2col(x, w3, stride, padding), F.conv2d(x, w3, stride=stride, padding=padding))
torch.testing.assert_close(conv_shift_gemm(x, w3, padding=1), F.conv2d(x, w3, padding=1))
# A 1x1 convolution needs no im2col at all: the columns are the input itself.
assert torch.equal(im2col(x, 1), x.reshape(2, 8, -1))


def im2col_factor(h: int, k: int, stride: int, padding: int) -> float:
    """Size of the unfolded matrix over the size of the input (per channel; channels cancel)."""
    ho = (h + 2 * padding - k) // stride + 1
    return k * k * ho * ho / (h * h)


assert im2col(x, 3, 1, 1).numel() == 9 * x.numel()
claim("9×", im2col_factor(56, 3, 1, 1))                  # 3x3, stride 1, same padding
claim("2.25×", im2col_factor(56, 3, 2, 1))               # 3x3, stride 2
claim("12.25×", im2col_factor(224, 7, 2, 3))             # ResNet's 7x7 / 2 stem on a 224 px image
cols_bytes = 64 * 9 * 56 * 56 * 4                        # ResNet-50 stage 1: 64 channels, 56 x 56, fp32
claim("6.9 MiB", cols_bytes / 2**20)
claim("441 MiB", 64 * cols_bytes / 2**20)                # ... for a batch of 64
# Arithmetic intensity at 56 x 56 and 64 channels, fp32, counting each tensor read or written once.
act_bytes = 64 * 56 * 56 * 4                             # one input or output map
dense_macs, dw_macs = 64 * 64 * 9 * 56 * 56, 64 * 9 * 56 * 56
claim("66 multiply-adds per byte", dense_macs / (2 * act_bytes + 64 * 64 * 9 * 4))   # 3x3, 64 -> 64
claim("1.1", dw_macs / (2 * act_bytes + 64 * 9 * 4))                                  # 3x3 depthwise
# --8<-- [end:im2col]


# --8<-- [start:fft]
def conv_fft(x, weight, padding=0):
    """Cross-correlation via the convolution theorem: zero-pad so the circular product has no wrap-around."""
    o, c, k, _ = weight.shape
    xp = F.pad(x, (padding,) * 4)
    h, w = xp.shape[-2:]
    size = (h, w)                        # the valid outputs never wrap around, so no extra padding is needed
    X = torch.fft.rfft2(xp, s=size)                          # (B, C, P, P//2+1), complex
    W = torch.fft.rfft2(weight.flip(-2, -1), s=size)        # flip: correlation = convolution with flipped kernel
    Y = torch.einsum("bcij,ocij->boij", X, W)                # per frequency: a (C_out x C_in) matrix product
    full = torch.fft.irfft2(Y, s=size)
    return full[..., k - 1:h, k - 1:w]                       # the "valid" part


for k in (3, 7):
    wk = torch.randn(16, 8, k, k, dtype=torch.float64)
    torch.testing.assert_close(conv_fft(x, wk, padding=k // 2), F.conv2d(x, wk, padding=k // 2))
# --8<-- [end:fft]


# --8<-- [start:winograd]
# Lavin and Gray's F(2, 3): two outputs of a 3-tap filter from interpolation points 0, 1, -1 and infinity.
BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)


class Counted:
    """A number that counts the multiplications and additions done with it."""
    muls = adds = 0

    def __init__(self, v):
        self.v = v

    def __mul__(self, other):
        Counted.muls += 1
        return Counted(self.v * (other.v if isinstance(other, Counted) else other))

    def __add__(self, other):
        Counted.adds += 1
        return Counted(self.v + other.v)

    def __sub__(self, other):
        Counted.adds += 1
        return Counted(self.v - other.v)

    __rmul__ = __mul__


def f23_direct(d, g):
    return [d[0] * g[0] + d[1] * g[1] + d[2] * g[2], d[1] * g[0] + d[2] * g[1] + d[3] * g[2]]


def f23_winograd(d, u):
    """u = G g, computed once per filter and reused for every tile and every image."""
    v = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]    # B^T d: additions only
    m = [u[i] * v[i] for i in range(4)]                          # the only multiplications
    return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]              # A^T m: additions only


d, g = [1.5, -2.0, 0.25, 3.0], [0.5, -1.0, 2.0]
u = (G @ torch.tensor(g, dtype=torch.float64)).tolist()
counts = {}
for name, f, args in [("direct", f23_direct, g), ("winograd", f23_winograd, u)]:
    Counted.muls = Counted.adds = 0
    y = f([Counted(v) for v in d], args)
    counts[name] = (Counted.muls, Counted.adds)
    assert np.allclose([t.v for t in y], np.correlate(d, g, mode="valid"))
assert counts["direct"] == (6, 4) and counts["winograd"] == (4, 8)     # 4 multiplications instead of 6


def conv_winograd(x, weight, padding, bt, g_, at):
    """2-D F(m x m, r x r) over tiles: Y = A^T [(G g G^T) * (B^T d B)] A, summed over input channels."""
    n, r, m = bt.shape[0], g_.shape[1], at.shape[0]
    xp = F.pad(x, (padding,) * 4)
    ho, wo = xp.shape[2] - r + 1, xp.shape[3] - r + 1
    th, tw = math.ceil(ho / m), math.ceil(wo / m)
    xp = F.pad(xp, (0, tw * m + r - 1 - xp.shape[3], 0, th * m + r - 1 - xp.shape[2]))
    tiles = xp.unfold(2, n, m).unfold(3, n, m)                  # (B, C, th, tw, n, n), overlapping by r-1
    V = bt @ tiles @ bt.T                                        # data transform
    U = g_ @ weight @ g_.T                                       # filter transform: (C_out, C_in, n, n)
    M = torch.einsum("ocij,bcxyij->boxyij", U, V)                # n*n independent (C_out x C_in) GEMMs
    Y = at @ M @ at.T                                            # (B, C_out, th, tw, m, m)
    return Y.permute(0, 1, 2, 4, 3, 5).reshape(x.shape[0], -1, th * m, tw * m)[..., :ho, :wo]


torch.testing.assert_close(conv_winograd(x, w3, 1, BT, G, AT), F.conv2d(x, w3, padding=1))
torch.testing.assert_close(conv_winograd(x[..., :19, :17], w3, 1, BT, G, AT),   # odd sizes: partial tiles
                           F.conv2d(x[..., :19, :17], w3, padding=1))
# Per 2x2 output tile and channel pair: 16 products instead of 2*2*9 = 36.
claim("2.25×", 36 / G.shape[0] ** 2)
# --8<-- [end:winograd]


# --8<-- [start:toom-cook]
def winograd_matrices(m: int, r: int, points: list[Fraction]):
    """B^T, G, A^T of F(m, r) from n - 1 = m + r - 2 finite points plus infinity (Toom-Cook, transposed)."""
    n = m + r - 1

    def vandermonde(cols):                                       # evaluate a polynomial at each point;
        rows = [[p**j for j in range(cols)] for p in points]     # the infinity row takes the top coefficient
        return rows + [[Fraction(0)] * (cols - 1) + [Fraction(1)]]

    full = torch.tensor([[float(v) for v in row] for row in vandermonde(n)], dtype=torch.float64)
    interp = torch.linalg.inv(full)                              # values -> coefficients
    as_t = lambda rows: torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)
    return interp.T, as_t(vandermonde(r)), as_t(vandermonde(m)).T


P = [Fraction(v) for v in (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))]
TILES = {2: winograd_matrices(2, 3, P[:3]), 4: winograd_matrices(4, 3, P[:5]), 6: winograd_matrices(6, 3, P[:7])}
for m_, mats in TILES.items():
    torch.testing.assert_close(conv_winograd(x, w3, 1, *mats), F.conv2d(x, w3, padding=1))

# Multiplications per output pixel and channel pair, the transforms being shared across channels.
mults = {"direct": 9} | {f"F({m_}x{m_},3x3)": (m_ + 2) ** 2 / m_**2 for m_ in TILES}
claim("4", mults["F(2x2,3x3)"]), claim("2.25", mults["F(4x4,3x3)"]), claim("1.78", mults["F(6x6,3x3)"])
claim("4×", 9 / mults["F(4x4,3x3)"]), claim("5.06×", 9 / mults["F(6x6,3x3)"])

# The price: the transforms' growing constants amplify rounding. fp32 error against an fp64 reference.
xr, wr = torch.randn(4, 64, 32, 32, dtype=torch.float64), torch.randn(64, 64, 3, 3, dtype=torch.float64) / 24
ref = F.conv2d(xr, wr, padding=1)


def rel_error(out):
    return ((out.double() - ref).pow(2).mean() / ref.pow(2).mean()).sqrt().item()


err = {"direct": rel_error(F.conv2d(xr.float(), wr.float(), padding=1)),
       "FFT": rel_error(conv_fft(xr.float(), wr.float(), padding=1))}
for m_, mats in TILES.items():
    err[f"F({m_}x{m_},3x3)"] = rel_error(conv_winograd(xr.float(), wr.float(), 1, *(t.float() for t in mats)))

claim("3–5×", err["F(4x4,3x3)"] / err["direct"])
claim("6–10×", err["F(6x6,3x3)"] / err["direct"])
assert err["FFT"] < err["direct"] and err["F(2x2,3x3)"] < 2 * err["direct"]


def fft_mults(n_out: int, k: int) -> float:
    """Real multiplications per output pixel and channel pair of the spectral products (4 per complex product)."""
    p = n_out + k - 1                                            # the padded input, also the FFT size
    return 4 * p * (p // 2 + 1) / n_out**2


claim("2.22", fft_mults(56, 3)), claim("2.53", fft_mults(56, 7)), claim("2.86", fft_mults(56, 11))
assert fft_mults(56, 3) < 9 and fft_mults(56, 11) < 121 / 40          # flat in k, while direct grows as k^2
# ... but the operands grow: each 3x3 kernel becomes a full-size complex spectrum (complex64: 8 bytes).
spectra_bytes = 64 * 64 * 58 * (58 // 2 + 1) * 8               # 64 -> 64 channels, 56 x 56 output
weights_bytes = 64 * 64 * 9 * 4
claim("54 MiB", spectra_bytes / 2**20), claim("144 KiB", weights_bytes / 2**10)
claim("387×", spectra_bytes / weights_bytes)
# --8<-- [end:toom-cook]

print({k: f"{v:.2e}" for k, v in err.items()})
print(mults, [round(fft_mults(56, k), 3) for k in (3, 7, 11)])

ks = np.arange(1, 14)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
ax1.semilogy(ks, ks**2, "o-", label="direct / im2col: $k^2$")
ax1.semilogy(ks, [fft_mults(56, k) for k in ks], "s-", label="FFT, 56×56 output")
for m_, style in [(2, "^-"), (4, "v-")]:
    ax1.semilogy(ks[1:], (m_ + ks[1:] - 1) ** 2 / m_**2, style, label=f"Winograd F({m_}×{m_}, k×k)")
ax1.set(xlabel="kernel size k", ylabel="multiplications per output and channel pair",
        title="Inner-loop multiplications (transforms excluded)")
fig.subplots_adjust(wspace=0.35)
ax1.legend(fontsize=8)
names = list(err)
ax2.bar(range(len(names)), [err[n] for n in names], color=["0.5", "tab:orange", "tab:green", "tab:olive", "tab:red"])
ax2.set_yscale("log")
ax2.set_xticks(range(len(names)), [n.replace(",3x3", "") for n in names], rotation=30, fontsize=8)
ax2.set(ylabel="relative RMS error, fp32", title="Accuracy in fp32, against fp64")
save(fig, "cv-deep-learning", "convolution-algorithms", exact=False)
