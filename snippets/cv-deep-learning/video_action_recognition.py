"""Video models in miniature: (2+1)-D against 3-D parameters, I3D inflation, and a small 3-D convolution
telling motion directions apart on synthetic clips where a frame-wise model provably cannot."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --8<-- [start:params]
def conv3d(c_in: int, c_out: int, t: int = 3, d: int = 3) -> nn.Module:
    return nn.Conv3d(c_in, c_out, (t, d, d), padding=(t // 2, d // 2, d // 2), bias=False)


def conv2plus1d(c_in: int, c_out: int, t: int = 3, d: int = 3, mid: int | None = None) -> nn.Module:
    """A spatial 1 x d x d conv to `mid` channels, a non-linearity, then a temporal t x 1 x 1 conv.
    By default `mid` matches the 3-D conv's parameter count (Tran et al., 2018)."""
    if mid is None:
        mid = (t * d * d * c_in * c_out) // (d * d * c_in + t * c_out)
    return nn.Sequential(
        nn.Conv3d(c_in, mid, (1, d, d), padding=(0, d // 2, d // 2), bias=False), nn.BatchNorm3d(mid), nn.ReLU(),
        nn.Conv3d(mid, c_out, (t, 1, 1), padding=(t // 2, 0, 0), bias=False))


full = conv3d(64, 64)
claim("110,592", n_params(full))                                   # 3 x 3 x 3 x 64 x 64
matched = conv2plus1d(64, 64)
assert matched[0].out_channels == 144                              # M = 27*64*64 / (9*64 + 3*64)
claim("110,592 weights", sum(m.weight.numel() for m in matched if isinstance(m, nn.Conv3d)))
lean = conv2plus1d(64, 64, mid=64)                                  # factorise without widening
claim("49,152", sum(m.weight.numel() for m in lean if isinstance(m, nn.Conv3d)))
claim("2.25×", n_params(full) / 49_152)
x = torch.randn(1, 64, 4, 8, 8)
assert full(x).shape == matched(x).shape == lean(x).shape == (1, 64, 4, 8, 8)
# Compute follows parameters: each weight is used once per output voxel of its layer.
macs_3d = n_params(full) * 8 * 56 * 56                              # 8 frames of 56 x 56
macs_2d = n_params(nn.Conv2d(64, 64, 3, bias=False)) * 8 * 56 * 56
claim("2.8 GMACs", macs_3d / 1e9)
claim("3×", macs_3d / macs_2d)
# --8<-- [end:params]


# --8<-- [start:inflate]
# I3D: inflate a 2-D kernel into 3-D by repeating it t times along time and dividing by t. On a
# "boring" video (one frame repeated) the inflated conv reproduces the 2-D conv frame by frame.
conv2d = nn.Conv2d(3, 16, 3, padding=1, bias=False)
inflated = nn.Conv3d(3, 16, (3, 3, 3), padding=(0, 1, 1), bias=False)
with torch.no_grad():
    inflated.weight.copy_(conv2d.weight.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3)
image = torch.randn(1, 3, 32, 32)
boring = image.unsqueeze(2).repeat(1, 1, 8, 1, 1)                   # (B, C, T, H, W): 8 identical frames
padded = torch.cat([boring[:, :, :1], boring, boring[:, :, -1:]], dim=2)   # replicate in time
torch.testing.assert_close(inflated(padded), conv2d(image).unsqueeze(2).repeat(1, 1, 8, 1, 1))
# --8<-- [end:inflate]


# --8<-- [start:data]
T, S, C = 6, 12, 4                                                  # frames, frame side, channels


def moving_squares(n_pairs: int, rng) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of clips: a 3x3 square moving right 1 px per frame (label 1) and the same clip played
    backwards, moving left (label 0). Each pair holds exactly the same frames, in opposite orders."""
    clips = rng.normal(0, 0.3, (n_pairs, 1, T, S, S)).astype(np.float32)
    for i in range(n_pairs):
        r, c = rng.integers(0, S - 2), rng.integers(0, S - 2 - (T - 1))
        for t in range(T):
            clips[i, 0, t, r:r + 3, c + t:c + t + 3] += 1.0
    right = torch.from_numpy(clips)
    x = torch.cat([right, right.flip(2)])                           # flip(2): reverse time
    y = torch.cat([torch.ones(n_pairs), torch.zeros(n_pairs)]).long()
    return x, y


x_train, y_train = moving_squares(400, rng)
x_test, y_test = moving_squares(200, rng)
# --8<-- [end:data]


# --8<-- [start:models]
class FrameWise(nn.Module):
    """A 2-D CNN on every frame, features averaged over time (late fusion, as in TSN)."""

    def __init__(self, shift: bool = False):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, C, 3, padding=1), nn.Conv2d(C, C, 3, padding=1), nn.Linear(C, 2)
        self.n1, self.n2 = nn.BatchNorm2d(C), nn.BatchNorm2d(C)
        self.shift = shift

    def forward(self, x):                                           # (B, 1, T, H, W)
        b = x.shape[0]
        f = F.relu(self.n1(self.c1(x.transpose(1, 2).reshape(b * T, 1, S, S)))).reshape(b, T, C, S, S)
        if self.shift:                                              # TSM: zero parameters, zero multiply-adds
            f = torch.cat([F.pad(f[:, :-1, :1], (0, 0, 0, 0, 0, 0, 1, 0)),   # channel 0 from the frame before
                           F.pad(f[:, 1:, 1:2], (0, 0, 0, 0, 0, 0, 0, 1)),   # channel 1 from the frame after
                           f[:, :, 2:]], dim=2)
        f = F.relu(self.n2(self.c2(f.reshape(b * T, C, S, S)))).mean(dim=(2, 3)).reshape(b, T, C)
        return self.fc(f.mean(dim=1))                               # average over time: order is lost


class Small3D(nn.Module):
    """Two 3x3x3 convolutions: each output sees 5 frames, enough to see which way the square moves."""

    def __init__(self, factorised: bool = False):
        super().__init__()
        block = (lambda i, o: conv2plus1d(i, o, mid=C)) if factorised else conv3d
        self.body = nn.Sequential(block(1, C), nn.BatchNorm3d(C), nn.ReLU(), block(C, C), nn.BatchNorm3d(C), nn.ReLU())
        self.fc = nn.Linear(C, 2)

    def forward(self, x):
        return self.fc(self.body(x).mean(dim=(2, 3, 4)))


def train(model: nn.Module, steps: int = 60) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(x_train), (16,))
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return (model(x_test).argmax(1) == y_test).float().mean().item()


makers = {"frame-wise 2-D": FrameWise, "2-D + temporal shift": lambda: FrameWise(shift=True),
          "3-D": Small3D, "(2+1)-D": lambda: Small3D(factorised=True)}
models, accuracy = {}, {}
for name, make in makers.items():
    torch.manual_seed(0)                                            # the same seed for every model
    models[name] = make()
    accuracy[name] = train(models[name])

# Why the frame-wise model is stuck: averaging over time ignores frame order, so a clip and its
# reversal get the same logits, for any weights; on the pairs, half the answers must be wrong.
frame_wise, shifted = models["frame-wise 2-D"], models["2-D + temporal shift"]
with torch.no_grad():
    torch.testing.assert_close(frame_wise(x_test), frame_wise(x_test.flip(2)))
    assert not torch.allclose(shifted(x_test), shifted(x_test.flip(2)))    # the shift sees order
claim("50%", accuracy["frame-wise 2-D"])
claim("100%", accuracy["3-D"])
claim("100% as well", accuracy["(2+1)-D"])
claim("also reaches 100%", accuracy["2-D + temporal shift"])
assert n_params(shifted) == n_params(frame_wise)                    # the shift is free
claim("214 parameters", n_params(frame_wise))
claim("566", n_params(models["3-D"])), claim("318", n_params(models["(2+1)-D"]))
# --8<-- [end:models]

print({k: round(v, 3) for k, v in accuracy.items()}, {k: n_params(m) for k, m in models.items()})

# The figure: one training pair, the same frames in opposite orders.
fig, axes = plt.subplots(2, T, figsize=(1.3 * T, 3.0))
for row, (clip, label) in enumerate([(x_train[0], "moving right"), (x_train[400], "moving left")]):
    assert torch.equal(x_train[400], x_train[0].flip(1))
    for t in range(T):
        ax = axes[row, t]
        ax.imshow(clip[0, t].numpy(), cmap="gray", vmin=-0.8, vmax=1.8)
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(f"frame {t}", fontsize=8)
    axes[row, 0].set_ylabel(label, fontsize=9)
save(fig, "cv-deep-learning", "video-moving-square")
