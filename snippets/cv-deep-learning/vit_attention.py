"""Attention in a vision transformer, written by hand: patch embedding, scaled dot-product attention and
multi-head self-attention checked against torch, the ViT-B/16 parameter count, and the cost in tokens."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save
from skimage import data

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:patches]
class PatchEmbed(nn.Module):
    """Cut the image into P x P patches and project each one to D numbers: a conv with stride = kernel = P."""

    def __init__(self, patch: int = 16, in_ch: int = 3, dim: int = 768):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, kernel_size=patch, stride=patch)

    def forward(self, x):                                   # (B, C, H, W) -> (B, N, D)
        return self.proj(x).flatten(2).transpose(1, 2)


embed = PatchEmbed(patch=16, dim=768)
img = torch.randn(2, 3, 224, 224)
tokens = embed(img)
assert tokens.shape == (2, 196, 768)                        # (224 / 16)^2 = 14 x 14 = 196 patches
claim("590,592 parameters", sum(p.numel() for p in embed.parameters()))   # 16 * 16 * 3 * 768 + 768

# The same thing as "flatten each patch, multiply by a matrix": the conv is only a fast way to write it.
patches = F.unfold(img, kernel_size=16, stride=16).transpose(1, 2)          # (2, 196, 768 = 3*16*16)
as_linear = patches @ embed.proj.weight.reshape(768, -1).T + embed.proj.bias
assert torch.allclose(as_linear, tokens, atol=1e-4)
# --8<-- [end:patches]


# --8<-- [start:sdpa]
def attention(q, k, v):
    """softmax(Q K^T / sqrt(d)) V over the last two dims; returns the output and the weights."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])       # (..., N, N): every pair of tokens
    weights = scores.softmax(dim=-1)                                # each row: a distribution over keys
    return weights @ v, weights


q, k, v = torch.randn(3, 2, 197, 64).unbind(0)
out, w = attention(q, k, v)
assert torch.allclose(w.sum(-1), torch.ones(2, 197), atol=1e-5)
assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5)
# --8<-- [end:sdpa]


# --8<-- [start:scale]
d = 64
qk = (torch.randn(20_000, d) * torch.randn(20_000, d)).sum(1)       # q.k for unit-variance entries
assert 0.9 * d < qk.var() < 1.1 * d                                 # variance grows with d ...
assert 0.9 < (qk / math.sqrt(d)).var() < 1.1                        # ... dividing by sqrt(d) resets it to 1
q, k = torch.randn(2, 1000, 197, d).unbind(0)
peak_raw = (q @ k.transpose(-2, -1)).softmax(-1).max(-1).values.mean()
peak_scaled = (q @ k.transpose(-2, -1) / math.sqrt(d)).softmax(-1).max(-1).values.mean()
claim("0.75 unscaled", peak_raw)                  # unscaled: near one-hot rows, vanishing softmax gradients
claim("0.05 scaled", peak_scaled)
# --8<-- [end:scale]


# --8<-- [start:mha]
class MultiHeadSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)              # W_Q, W_K, W_V stacked: (3D, D)
        self.proj = nn.Linear(dim, dim)                 # W_O: mixes the heads back together

    def forward(self, x):                               # (B, N, D)
        b, n, dim = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                         # each (B, heads, N, head_dim)
        out, weights = attention(q, k, v)               # every head attends on its own subspace
        return self.proj(out.transpose(1, 2).reshape(b, n, dim)), weights


dim, heads = 192, 3                                     # ViT-Tiny width
mine = MultiHeadSelfAttention(dim, heads)
ref = nn.MultiheadAttention(dim, heads, batch_first=True)
with torch.no_grad():
    ref.in_proj_weight.copy_(mine.qkv.weight)           # torch also stacks Q, K, V in this order
    ref.in_proj_bias.copy_(mine.qkv.bias)
    ref.out_proj.weight.copy_(mine.proj.weight)
    ref.out_proj.bias.copy_(mine.proj.bias)
x = torch.randn(4, 197, dim)
out, weights = mine(x)
ref_out, ref_weights = ref(x, x, x, need_weights=True, average_attn_weights=False)
assert out.shape == (4, 197, 192) and weights.shape == (4, 3, 197, 197)
assert torch.allclose(out, ref_out, atol=1e-5) and torch.allclose(weights, ref_weights, atol=1e-6)
assert sum(p.numel() for p in mine.parameters()) == 4 * dim * dim + 4 * dim   # 4D^2 + 4D, whatever the heads

# Without position embeddings attention cannot tell where a patch came from: shuffle the tokens
# and the outputs are shuffled the same way.
perm = torch.randperm(197)
assert torch.allclose(mine(x[:, perm])[0], out[:, perm], atol=1e-5)
pos = torch.randn(1, 197, dim)
assert not torch.allclose(mine(x[:, perm] + pos)[0], mine(x + pos)[0][:, perm], atol=1e-3)
# --8<-- [end:mha]


# --8<-- [start:vit]
class Block(nn.Module):
    """Pre-norm transformer encoder block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim, heads, mlp_dim):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), MultiHeadSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, img=224, patch=16, dim=768, depth=12, heads=12, mlp_dim=3072, classes=1000):
        super().__init__()
        self.embed = PatchEmbed(patch, 3, dim)
        n = (img // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))            # a learned "summary" token
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)   # learned 1-D position embeddings
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1) + self.pos
        return self.head(self.norm(self.blocks(t))[:, 0])          # classify from the CLS token


def vit_params(img, patch, dim, depth, mlp_dim, classes):
    n = (img // patch) ** 2
    per_block = (4 * dim * dim + 4 * dim) + (2 * dim * mlp_dim + mlp_dim + dim) + 2 * 2 * dim
    return (patch * patch * 3 * dim + dim) + dim + (n + 1) * dim + depth * per_block + 2 * dim + dim * classes + classes


small = ViT(img=32, patch=8, dim=64, depth=2, heads=4, mlp_dim=128, classes=10)
assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
assert sum(p.numel() for p in small.parameters()) == vit_params(32, 8, 64, 2, 128, 10)
vit_b = vit_params(224, 16, 768, 12, 3072, 1000)
vit_l = vit_params(224, 16, 1024, 24, 4096, 1000)
vit_h = vit_params(224, 14, 1280, 32, 5120, 1000)
claim("86.6M", vit_b), claim("304.3M", vit_l), claim("632.0M", vit_h)
# The ViT paper's Table 1 lists 86M, 307M and 632M.
# --8<-- [end:vit]


# --8<-- [start:cost]
def tokens(img: int, patch: int = 16) -> int:
    return (img // patch) ** 2


def layer_macs(n: int, dim: int = 768, mlp_ratio: int = 4) -> tuple[int, int]:
    """Multiply-adds of one encoder block: (projections + MLP, the two N x N attention products)."""
    dense = 4 * n * dim * dim + 2 * mlp_ratio * n * dim * dim     # QKV + output proj, MLP
    attn = 2 * n * n * dim                                         # Q K^T and weights @ V
    return dense, attn


claim("196", tokens(224)), claim("784", tokens(448)), claim("4,096", tokens(1024))
claim("38,809", (tokens(224) + 1) ** 2), claim("616,225", (tokens(448) + 1) ** 2)   # entries per head
claim("16.8M", (tokens(1024) + 1) ** 2)
claim("4×", tokens(448) / tokens(224))                             # 2x the side: 4x the tokens
claim("16×", tokens(448) ** 2 / tokens(224) ** 2)                  # ... and 16x the attention entries
claim("15.9×", (tokens(448) + 1) ** 2 / (tokens(224) + 1) ** 2)    # with the CLS token

total = 12 * sum(layer_macs(197)) + 196 * 768 * 768               # ViT-B/16 at 224: encoder + patch embed
claim("17.6 GMACs", total / 1e9)                                   # often quoted as "17.6 GFLOPs"
share = {img: layer_macs(tokens(img) + 1)[1] / sum(layer_macs(tokens(img) + 1)) for img in (224, 448, 1024)}
claim("4.1%", share[224]), claim("14.6%", share[448]), claim("47%", share[1024])
dense, attn = layer_macs(6 * 768)
assert dense == attn                                               # break-even at N = 6D ...
claim("about 1,086 px", 16 * math.sqrt(6 * 768))                   # ... an image side of 16 sqrt(6D)
attn_bytes_448 = 12 * (tokens(448) + 1) ** 2 * 4                  # one layer, one image, 12 heads, fp32
claim("28.2 MiB", attn_bytes_448 / 2**20)                          # of attention weights per layer

# Windowed attention (Swin): tokens attend only inside 7 x 7 windows.
n_tokens, window = 56 * 56, 7 * 7
claim("64×", n_tokens * n_tokens / (n_tokens * window))            # fewer attention entries
# --8<-- [end:cost]

# --8<-- [start:distance]
def patch_distances(grid: int = 14, patch: int = 16) -> torch.Tensor:
    """Pixel distance between the centres of every pair of patches on a grid x grid layout."""
    yx = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij"), -1)
    return torch.cdist(yx.reshape(-1, 2).float(), yx.reshape(-1, 2).float()) * patch


def mean_attention_distance(weights: torch.Tensor) -> float:
    """ViT paper, Fig. 7: the attention-weighted distance between query and key patches, in pixels."""
    return float((weights * patch_distances()).sum(-1).mean())


uniform = torch.full((196, 196), 1 / 196)                          # a perfectly global head
local = (patch_distances() <= 1.5 * 16).float()                    # a head that sees only its 3 x 3 neighbours
local = local / local.sum(1, keepdim=True)
claim("116 px", mean_attention_distance(uniform))
claim("17 px", mean_attention_distance(local))
assert mean_attention_distance(torch.eye(196)) == 0.0              # attending only to yourself
# --8<-- [end:distance]
print(f"ViT parameters: B/16 {vit_b / 1e6:.1f}M, L/16 {vit_l / 1e6:.1f}M, H/14 {vit_h / 1e6:.1f}M")
print(f"ViT-B/16 at 224: {total / 1e9:.2f} GMACs; attention share of block MACs: "
      + ", ".join(f"{k}px {v:.1%}" for k, v in share.items()))
print(f"softmax peak, unscaled vs scaled: {peak_raw:.3f} vs {peak_scaled:.3f}")

# Figure: the 14 x 14 patch grid on a 224 x 224 image, and how tokens and attention cost grow.
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
photo = data.astronaut()[::2, ::2][16:240, 16:240]            # 224 x 224 crop of a bundled image
axes[0].imshow(photo)
for t in range(0, 225, 16):
    axes[0].axhline(t - 0.5, color="white", lw=0.5)
    axes[0].axvline(t - 0.5, color="white", lw=0.5)
axes[0].set_title("224 x 224 image, 16 x 16 patches:\n196 tokens (+1 CLS)", fontsize=9)
axes[0].axis("off")
sizes = np.array([112, 224, 384, 448, 640, 896, 1024])
n = np.array([tokens(s) + 1 for s in sizes])
axes[1].loglog(sizes, n, "o-", label="tokens N")
axes[1].loglog(sizes, n.astype(float) ** 2, "s-", label="attention entries N²")
axes[1].set(xlabel="image side (px), patch 16", title="tokens grow as side², attention as side⁴")
axes[1].title.set_fontsize(9)
axes[1].set_xticks([112, 224, 448, 1024], labels=["112", "224", "448", "1024"])
axes[1].xaxis.set_minor_formatter(plt.NullFormatter())
axes[1].legend(fontsize=8)
axes[1].grid(True, which="major", lw=0.3)
save(fig, "cv-deep-learning", "vit-patches-cost")
