"""U-Net with and without its skip connections on thin structures: boundary IoU shows what the skips carry."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save
from scipy import ndimage
from skimage.draw import disk, line

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)


# --8<-- [start:unet]
def block(c_in: int, c_out: int, pad: int, norm: bool) -> nn.Sequential:
    """Two 3x3 convolutions, as in every U-Net level."""
    layers = []
    for i, o in [(c_in, c_out), (c_out, c_out)]:
        layers += [nn.Conv2d(i, o, 3, padding=pad, bias=not norm)]
        layers += [nn.BatchNorm2d(o)] if norm else []
        layers += [nn.ReLU()]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Encoder halves the size and doubles the channels `depth` times; the decoder mirrors it.
    skips=False zeroes the skip tensors: the same layers and weights count, no high-resolution path."""

    def __init__(self, c_in=1, n_out=1, c=8, depth=2, skips=True, pad=1, norm=True):
        super().__init__()
        self.skips = skips
        chans = [c * 2**i for i in range(depth + 1)]               # 8, 16, 32
        self.down = nn.ModuleList([block(c_in, chans[0], pad, norm)]
                                  + [block(chans[i], chans[i + 1], pad, norm) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                 for i in reversed(range(depth))])
        self.dec = nn.ModuleList([block(2 * chans[i], chans[i], pad, norm) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], n_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for i, level in enumerate(self.down):
            x = level(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(feats[:-1])):
            x = up(x)
            dy, dx = (skip.shape[2] - x.shape[2]) // 2, (skip.shape[3] - x.shape[3]) // 2
            skip = skip[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]   # the original's crop (valid convs)
            x = dec(torch.cat([x, skip if self.skips else torch.zeros_like(skip)], dim=1))
        return self.head(x)
# --8<-- [end:unet]


# --8<-- [start:original]
# The 2015 U-Net: 4 poolings, 64..1024 channels, unpadded convolutions, 2 output classes.
with torch.device("meta"):                                       # shapes only: counted, never initialised
    original = UNet(c_in=1, n_out=2, c=64, depth=4, pad=0, norm=False)
claim("31.0M", sum(p.numel() for p in original.parameters()))
# Its 572x572 input tile gives a 388x388 output map (checked on a 1-channel-wide copy, cheap to run).
thin = UNet(c_in=1, n_out=2, c=1, depth=4, pad=0, norm=False)
with torch.no_grad():
    out_size = thin(torch.zeros(1, 1, 572, 572)).shape[-1]
claim("388", out_size)
claim("92", (572 - out_size) // 2)                                # the context each side: overlap-tile
# --8<-- [end:original]


# --8<-- [start:data]
S = 16


def scene(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A blob (r 2.5-4.5 px) and a 1-px line per image, in Gaussian noise; target = both."""
    x = np.zeros((n, 1, S, S), np.float32)
    y = np.zeros_like(x)
    for k in range(n):
        rr, cc = disk(tuple(rng.integers(4, S - 4, 2)), rng.uniform(2.5, 4.5), shape=(S, S))
        y[k, 0, rr, cc] = 1
        rr, cc = line(*rng.integers(0, S, 4))
        y[k, 0, rr, cc] = 1
    x += y + rng.normal(0, 0.3, x.shape).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def boundary(mask: np.ndarray, d: int = 1) -> np.ndarray:
    """Pixels of the mask within d px of its contour (Cheng et al. 2021, boundary IoU)."""
    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3)), iterations=d, border_value=0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def boundary_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([iou(boundary(p), boundary(g)) for p, g in zip(pred, gt)]))
# --8<-- [end:data]


# --8<-- [start:train]
x_test, y_test = scene(64)
gt = y_test.numpy()[:, 0] > 0.5
results, preds = {}, {}
for skips in (True, False):
    torch.manual_seed(0)                                        # the same initial weights for both
    net = UNet(skips=skips)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(60):                                      # fresh synthetic images every step
        x, y = scene(16)
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(x_test).numpy()[:, 0] > 0
    preds[skips] = pred
    results[skips] = dict(params=sum(p.numel() for p in net.parameters()), iou=iou(pred, gt),
                          biou=boundary_iou(pred, gt))

with_s, without = results[True], results[False]
assert with_s["params"] == without["params"]                    # same net, only the skips differ
claim("29,481", with_s["params"])
claim("0.93–0.96", with_s["iou"]), claim("0.62–0.70", without["iou"])
claim("0.87–0.92", with_s["biou"]), claim("0.27–0.36", without["biou"])
gap_iou, gap_biou = with_s["iou"] - without["iou"], with_s["biou"] - without["biou"]
assert gap_biou > 1.5 * gap_iou                                 # boundary IoU exposes the difference
claim("2.0 times", gap_biou / gap_iou, tol=0.2)
# --8<-- [end:train]
print({k: {m: round(v, 3) for m, v in r.items()} for k, r in results.items()})

fig, axes = plt.subplots(3, 4, figsize=(7.2, 5.6))
for k in range(3):
    for j, (img, name) in enumerate([(x_test.numpy()[k, 0], "input"), (gt[k], "target"),
                                     (preds[True][k], "U-Net (skips)"), (preds[False][k], "no skips")]):
        ax = axes[k, j]
        ax.imshow(img, cmap="gray", interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        if k == 0:
            ax.set_title(name, fontsize=9)
fig.suptitle("Same layers, same weights count: without skips the 1-px lines and blob edges are lost", fontsize=9)
save(fig, "detection-and-segmentation", "unet-skips", exact=False)
