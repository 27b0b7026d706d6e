"""Swin against ViT in numbers: global against windowed attention cost on a 56 x 56 map (Swin's formulas,
checked against the matrix products actually run), window attention equal to masked global attention,
the cyclic-shift mask equal to the true shifted partition, shifted windows connecting neighbouring
windows where fixed windows never do; and ConvNeXt and Swin block parameter counts."""
from __future__ import annotations

import torch
import torch.nn as nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)

# --8<-- [start:cost]
H = W = 56            # Swin-T stage 1: a 224 px image in 4 x 4 patches
C, M = 96, 7          # channels, window side
hw = H * W


def msa_macs(hw: int, C: int) -> int:            # Swin, eq. (1): global multi-head self-attention
    return 4 * hw * C**2 + 2 * hw**2 * C


def wmsa_macs(hw: int, C: int, M: int) -> int:   # Swin, eq. (2): attention inside M x M windows
    return 4 * hw * C**2 + 2 * M**2 * hw * C


claim("115.6M", 4 * hw * C**2)                   # Q, K, V and output projections, the same in both
claim("1.89G", 2 * hw**2 * C)                    # QK^T and AV over all 3,136 tokens
claim("29.5M", 2 * M**2 * hw * C)                # QK^T and AV inside the 64 windows
claim("2.00G", msa_macs(hw, C))
claim("145.1M", wmsa_macs(hw, C, M))
claim("13.8×", msa_macs(hw, C) / wmsa_macs(hw, C, M))
claim("9,834,496", hw**2)                        # attention entries per head, global
claim("153,664", (hw // M**2) * M**4)            # 64 windows of 49 x 49
assert hw**2 // ((hw // M**2) * M**4) == hw // M**2 == 64   # the attention part shrinks by hw / M^2
# Double the side: global attention grows 16x, windowed 4x (linear in the area).
assert msa_macs(4 * hw, C) - 4 * 4 * hw * C**2 == 16 * 2 * hw**2 * C
assert wmsa_macs(4 * hw, C, M) == 4 * wmsa_macs(hw, C, M)
# --8<-- [end:cost]


# --8<-- [start:attend]
def windows(x: torch.Tensor, M: int) -> torch.Tensor:
    """(H, W, C) -> (number of windows, M*M, C), windows in row-major order."""
    h, w, c = x.shape
    return x.reshape(h // M, M, w // M, M, c).permute(0, 2, 1, 3, 4).reshape(-1, M * M, c)


def window_index(h: int, w: int, M: int, shift: int = 0) -> torch.Tensor:
    """The window each token falls in when the windows start at rows and columns shift, shift + M, ...
    (plus the cut-off ones before): with a shift there are h/M + 1 windows per side."""
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    o = (M - shift) % M
    return (((i + o) // M) * (w // M + 1) + (j + o) // M).flatten()


macs = 0


def attention(q, k, v, mask=None):
    global macs
    macs += q.shape[-2] * k.shape[-2] * q.shape[-1] * 2 * q.shape[:-2].numel()   # QK^T and AV
    a = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        a = a.masked_fill(~mask, float("-inf"))
    return a.softmax(-1) @ v


d = 16                                           # one head of width d (the formulas have d = C)
q, k, v = torch.randn(3, hw, d)
macs = 0
local = attention(*(windows(t.reshape(H, W, d), M) for t in (q, k, v)))
assert macs == 2 * M**2 * hw * d                 # the count in eq. (2), from the products actually run
macs = 0
idx = window_index(H, W, M)
same_window = idx[:, None] == idx[None, :]
masked_global = attention(q, k, v, same_window)
assert macs == 2 * hw**2 * d                     # eq. (1): the dense product, even where masked
# Window attention is global attention with everything outside the window masked out.
back = local.reshape(H // M, W // M, M, M, d).permute(0, 2, 1, 3, 4).reshape(hw, d)
torch.testing.assert_close(back, masked_global, atol=1e-5, rtol=1e-5)
# --8<-- [end:attend]


# --8<-- [start:shift]
s = M // 2                                        # Swin shifts by floor(M/2) = 3 tokens
claim("81 windows", int(window_index(H, W, M, s).unique().numel()))   # 9 x 9 if partitioned naively


def cyclic_shift_mask(h: int, w: int, M: int, s: int) -> torch.Tensor:
    """Swin's trick: roll the map by -s, keep the 64 regular windows, and mask pairs that came from
    different regions. Returns who may attend to whom, in the original token positions."""
    region = torch.zeros(h, w, dtype=torch.long)
    cuts = (slice(0, -M), slice(-M, -s), slice(-s, None))
    for a, rows in enumerate(cuts):
        for b, cols in enumerate(cuts):
            region[rows, cols] = 3 * a + b
    win = window_index(h, w, M).reshape(h, w)
    key = (win * 9 + region).flatten()            # same window of the rolled map and same region
    allowed_rolled = key[:, None] == key[None, :]
    pos = torch.arange(h * w).reshape(h, w).roll((-s, -s), (0, 1)).flatten()  # rolled slot -> token
    allowed = torch.zeros_like(allowed_rolled)
    allowed[pos[:, None], pos[None, :]] = allowed_rolled
    return allowed


shifted_idx = window_index(H, W, M, s)
shifted_window = shifted_idx[:, None] == shifted_idx[None, :]
assert torch.equal(cyclic_shift_mask(H, W, M, s), shifted_window)   # the mask is the shifted partition


def reach(layers: list[torch.Tensor], token: int) -> int:
    """How many tokens can influence `token` through a stack of attention layers."""
    seen = torch.zeros(hw, dtype=torch.bool)
    seen[token] = True
    for allowed in reversed(layers):             # the last layer reads from tokens in its window...
        seen = allowed[seen].any(0)              # ...each of which read from its own window before
    return int(seen.sum())


centre = 10 * W + 10                               # the centre token of window (1, 1)
fixed = [same_window] * 4
alternating = [same_window, shifted_window] * 2
claim("49 tokens", reach(fixed, centre))           # fixed windows: 49 however deep
assert reach(fixed[:1], centre) == reach(fixed, centre) == 49
claim("196", reach(alternating[:2], centre))       # W-MSA then SW-MSA: four windows' worth
claim("784", reach(alternating, centre))           # four layers: 28 x 28, four windows a side
# Each interior shifted window overlaps four regular ones, 4 + 3 tokens per axis: not exactly even.
inner = shifted_idx.reshape(H, W)[10, 10]          # the shifted window holding token (10, 10)
overlap = sorted(torch.bincount(idx[shifted_idx == inner]).tolist(), reverse=True)
assert [n for n in overlap if n] == [16, 12, 12, 9]
claim("and 9 tokens", min(n for n in overlap if n))
assert 224 // 32 == M                              # at 224 px, stage 4 is a single 7 x 7 window: global
# --8<-- [end:shift]


# --8<-- [start:blocks]
class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm over channels, 1x1 expand 4x, GELU, 1x1 project, layer scale."""

    def __init__(self, c: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.gamma = nn.Parameter(1e-6 * torch.ones(c))

    def forward(self, x):                          # (B, C, H, W)
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        return x + (self.gamma * self.mlp(y)).permute(0, 3, 1, 2)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


convnext = ConvNeXtBlock(C)
assert convnext(torch.randn(1, C, 14, 14)).shape == (1, C, 14, 14)
claim("79,296", n_params(convnext))
# A Swin block: LN, QKV, output projection, relative-position bias table, LN, MLP with ratio 4.
heads = 3                                          # Swin-T stage 1
swin_layers = [nn.LayerNorm(C), nn.Linear(C, 3 * C), nn.Linear(C, C), nn.LayerNorm(C),
               nn.Linear(C, 4 * C), nn.Linear(4 * C, C)]
swin = sum(n_params(m) for m in swin_layers) + (2 * M - 1) ** 2 * heads
claim("112,347", swin)
claim("507", (2 * M - 1) ** 2 * heads)             # 13 x 13 relative offsets per head
claim("169", (2 * M - 1) ** 2)
# Multiply-adds per token at 56 x 56: the spatial mixing is tiny next to the 1x1 / linear layers.
claim("4,704", 49 * C)                             # ConvNeXt: depthwise 7 x 7
claim("9,408", 2 * M**2 * C)                       # Swin: QK^T and AV in a 7 x 7 window
claim("73,728", 8 * C**2)                          # the MLP, in both blocks
# --8<-- [end:blocks]
