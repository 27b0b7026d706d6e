"""Mask R-CNN: RoIPool's quantisation error in pixels against RoIAlign's bilinear sampling, RoIAlign checked
against F.grid_sample (both pixel conventions), where a conv backbone's cells really sit, the 28x28 per-class
mask target with its loss, the mask head's size, and what the 28x28 resolution and RoIPool cost a mask."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from _figures import save
from matplotlib.patches import Rectangle
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)


# --8<-- [start:roipool]
def round_half_up(v):
    return np.floor(np.asarray(v) + 0.5).astype(int)            # C's round() for positive numbers


def roi_pool_cells(x1, x2, stride: int, out: int = 7):
    """The feature cells [lo, hi) each RoIPool bin reads along one axis: Fast R-CNN's kernel (also
    torchvision.ops.roi_pool). The box is rounded to the grid, then each bin's edges are floored and ceiled."""
    start, end = round_half_up(x1 / stride), round_half_up(x2 / stride)
    width = np.maximum(end - start + 1, 1)                      # cells start..end, inclusive
    k = np.arange(out)
    lo = np.floor(k * width[..., None] / out).astype(int) + start[..., None]
    hi = np.ceil((k + 1) * width[..., None] / out).astype(int) + start[..., None]
    return lo, hi


def roi_pool(feat: np.ndarray, box, stride: int, out: int = 7, reduce=np.max) -> np.ndarray:
    """RoIPool of one box on a (C, H, W) map: the max (or another reduction) over each bin's cells."""
    (ylo, yhi), (xlo, xhi) = (roi_pool_cells(np.array(box[1]), np.array(box[3]), stride, out),
                              roi_pool_cells(np.array(box[0]), np.array(box[2]), stride, out))
    res = np.empty((feat.shape[0], out, out))
    for i in range(out):
        for j in range(out):
            res[:, i, j] = reduce(feat[:, ylo[i]:yhi[i], xlo[j]:xhi[j]], axis=(1, 2))
    return res


# Where each bin reads from, in image pixels, for 10,000 random boxes 32-256 px wide. Cell j of a stride-s map
# stands for image position j*s (the convention these kernels were written for).
def bin_errors(stride: int, n: int = 10_000):
    x1 = rng.uniform(0, 512, n)
    w = rng.uniform(32, 256, n)
    lo, hi = roi_pool_cells(x1, x1 + w, stride)
    exact = x1[:, None] + np.arange(8) * w[:, None] / 7           # the true bin edges
    centre_err = (lo + hi - 1) / 2 * stride - (exact[:, :-1] + exact[:, 1:]) / 2
    edge_err = round_half_up(x1 / stride) * stride - x1          # the box's own first edge, rounded
    return np.abs(centre_err), np.abs(edge_err), hi - lo, hi[:, :-1] > lo[:, 1:]


c16, e16, cells16, overlap16 = bin_errors(16)
c32, e32, *_ = bin_errors(32)
assert e16.max() <= 8                                            # rounding alone moves an edge by at most s/2
claim("8 px", e16.max(), tol=0.01), claim("16 px", e32.max(), tol=0.01)
claim("4.4 px", c16.mean()), claim("17 px", c16.max())           # stride 16: bin centres off by this much
claim("8.8 px", c32.mean()), claim("34 px", c32.max())           # stride 32 (C5): twice as much
claim("2.2 cells", cells16.mean()), claim("86%", overlap16.mean())   # bins read overlapping, unequal windows
# --8<-- [end:roipool]


# --8<-- [start:roialign]
def bilinear(feat: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear interpolation at (y, x) in cell-index units, with RoIAlign's border rules: a sample more than
    one cell outside the map is 0, one up to a cell outside takes the border value."""
    _, h, w = feat.shape
    inside = (y >= -1) & (y <= h) & (x >= -1) & (x <= w)
    y, x = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
    y0, x0 = np.minimum(np.floor(y).astype(int), h - 2), np.minimum(np.floor(x).astype(int), w - 2)
    ly, lx = y - y0, x - x0
    v = (feat[:, y0, x0] * (1 - ly) * (1 - lx) + feat[:, y0, x0 + 1] * (1 - ly) * lx
         + feat[:, y0 + 1, x0] * ly * (1 - lx) + feat[:, y0 + 1, x0 + 1] * ly * lx)
    return v * inside


def roi_align(feat: np.ndarray, box, stride: float, out: int = 7, sampling_ratio: int = 2,
              aligned: bool = True) -> np.ndarray:
    """RoIAlign: no rounding anywhere. Each of the out x out bins averages sampling_ratio^2 bilinear samples at
    regularly spaced points. aligned=True shifts by half a cell (Detectron2's fix of the original)."""
    x1, y1, x2, y2 = np.asarray(box, float) / stride - (0.5 if aligned else 0.0)
    t = (np.arange(out * sampling_ratio) + 0.5) / (out * sampling_ratio)      # sample positions in [0, 1]
    ys, xs = np.meshgrid(y1 + t * (y2 - y1), x1 + t * (x2 - x1), indexing="ij")
    v = bilinear(feat, ys, xs)
    return v.reshape(feat.shape[0], out, sampling_ratio, out, sampling_ratio).mean(axis=(2, 4))


def roi_align_grid_sample(feat: torch.Tensor, box, stride: float, out: int = 7, sampling_ratio: int = 2,
                          aligned: bool = True) -> torch.Tensor:
    """The same op from F.grid_sample: align_corners=False is the aligned=True pixel model (cell j covers
    [j, j+1) and its value sits at j + 0.5); align_corners=True is the original (the value sits at j)."""
    h, w = feat.shape[-2:]
    x1, y1, x2, y2 = (torch.tensor(box, dtype=torch.float64) / stride).tolist()
    t = (torch.arange(out * sampling_ratio, dtype=torch.float64) + 0.5) / (out * sampling_ratio)
    xs, ys = x1 + t * (x2 - x1), y1 + t * (y2 - y1)
    if aligned:
        gx, gy = 2 * xs / w - 1, 2 * ys / h - 1
    else:
        gx, gy = 2 * xs / (w - 1) - 1, 2 * ys / (h - 1) - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]     # (1, rows, cols, (x, y))
    v = F.grid_sample(feat[None], grid, mode="bilinear", padding_mode="border", align_corners=not aligned)
    return F.avg_pool2d(v, sampling_ratio)[0]


feat = rng.normal(size=(8, 40, 40))                             # a stride-16 map of a 640 x 640 image
boxes = [(x, y, x + w, y + h) for x, y, w, h in
         zip(*[rng.uniform(0, 300, 200) for _ in range(2)], *[rng.uniform(8, 330, 200) for _ in range(2)])]
for aligned in (True, False):
    gap = max(np.abs(roi_align(feat, b, 16, aligned=aligned)
                     - roi_align_grid_sample(torch.from_numpy(feat), b, 16, aligned=aligned).numpy()).max()
              for b in boxes)
    assert gap < 1e-12, gap                                      # the hand-written op equals grid_sample

# A ramp whose value is the image x of each cell (j * 16 + 8 under aligned=True's model): bilinear
# interpolation is exact on it, so each bin returns the x of its own centre.
ramp = np.broadcast_to((np.arange(40) * 16 + 8.0)[None, None, :], (1, 40, 40))
box = (101.3, 57.9, 317.6, 240.2)
bin_centres = box[0] + (np.arange(7) + 0.5) * (box[2] - box[0]) / 7
assert np.abs(roi_align(ramp, box, 16)[0, 0] - bin_centres).max() < 1e-9            # 0 px
shift = roi_align(ramp, box, 16, aligned=False)[0, 0] - bin_centres
claim("8 px", shift.mean()), claim("8 px", shift.max())          # the original RoIAlign: half a cell, constant
print(f"RoIPool bins off by {c16.mean():.1f} px on average (max {c16.max():.0f}) at stride 16; "
      f"{c32.mean():.1f} (max {c32.max():.0f}) at stride 32; RoIAlign 0 px, legacy RoIAlign {shift.mean():.1f} px")
# --8<-- [end:roialign]


# --8<-- [start:centres]
# Where does a cell of a real conv backbone sit? Four 3x3, stride-2, padding-1 convolutions (stride 16): the
# receptive field of output cell j is centred on input pixel index 16 j (continuous coordinate 16 j + 0.5),
# not on 16 j + 8 as aligned=True's pixel model assumes. The offset between the two conventions is a
# constant, which the layers after RoIAlign can absorb; RoIPool's box-dependent error is not.
net = nn.Sequential(*[nn.Conv2d(1, 1, 3, stride=2, padding=1) for _ in range(4)])
x = torch.zeros(1, 1, 160, 160, requires_grad=True)
y = net(x)
for j in (2, 5, 7):
    (g,) = torch.autograd.grad(y[0, 0, j, j], x, retain_graph=True)
    rows = torch.nonzero(g[0, 0].abs().sum(1)).flatten()
    centre = (rows.min() + rows.max()).item() / 2
    assert centre == 16 * j, (j, centre)
    claim("31 px", (rows.max() - rows.min() + 1).item())        # receptive field of 4 such layers
# --8<-- [end:centres]


# --8<-- [start:mask-target]
def disc_mask(size: int, cy: float, cx: float, r: float, ring: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] + 0.5
    d = np.hypot(yy - cy, xx - cx)
    return ((d <= r) & (d >= r - ring if ring else d <= r)).astype(float)


def mask_target(gt_mask: np.ndarray, proposal, m: int = 28) -> np.ndarray:
    """Mask R-CNN's training target for one positive RoI: the ground-truth mask of its matched object,
    resampled by RoIAlign into the proposal's m x m grid (stride 1: image pixels), thresholded at 0.5."""
    side = max(proposal[2] - proposal[0], proposal[3] - proposal[1])
    ratio = int(np.ceil(side / m))                              # about one sample per pixel (adaptive)
    return roi_align(gt_mask[None], proposal, 1, out=m, sampling_ratio=ratio)[0] >= 0.5


def paste(mask_mxm: np.ndarray, box, size: int) -> np.ndarray:
    """Inference: resize an m x m mask (probabilities or a target) to the box in the image, threshold at 0.5."""
    m = mask_mxm.shape[0]
    yy, xx = np.mgrid[:size, :size] + 0.5                       # pixel centres
    v = bilinear(mask_mxm[None].astype(float), (yy - box[1]) / (box[3] - box[1]) * m - 0.5,
                 (xx - box[0]) / (box[2] - box[0]) * m - 0.5)[0]
    inside = (yy >= box[1]) & (yy < box[3]) & (xx >= box[0]) & (xx < box[2])
    return (v >= 0.5) & inside


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


S = 256
gt = disc_mask(S, 120.3, 131.7, 70.0) > 0                        # one object, a disc of radius 70 px
gt_box = (61.7, 50.3, 201.7, 190.3)
proposal = (52.0, 61.0, 196.0, 203.0)                            # a positive RoI: IoU >= 0.5 with the box
box_iou = iou(paste(np.ones((2, 2)), proposal, S), paste(np.ones((2, 2)), gt_box, S))
assert box_iou >= 0.5
target = mask_target(gt.astype(float), proposal)
assert target.shape == (28, 28)
# The target is the object as seen from the proposal: the part outside the RoI is cut off, so the head
# learns to segment inside its box, and the box branch's refinement decides where the mask is pasted.
claim("0.93", iou(paste(target, proposal, S), gt))
# Through the object's own box, a disc survives the 28 x 28 grid almost intact:
claim("0.98", iou(paste(mask_target(gt.astype(float), gt_box), gt_box, S), gt))

# A thin structure does not: a 4-px-wide ring of the same size, through the same 28 x 28 grid.
ring = disc_mask(S, 120.3, 131.7, 70.0, ring=4.0) > 0
ring_back = paste(mask_target(ring.astype(float), gt_box), gt_box, S)
ring_iou = iou(ring_back, ring)
claim("0.63", ring_iou)
# --8<-- [end:mask-target]


# --8<-- [start:loss]
K = 80                                                           # COCO classes


class MaskHead(nn.Module):
    """Mask R-CNN's FPN mask head: 14 x 14 RoIAlign features, four 3x3 convs, a 2x2 stride-2 deconvolution
    to 28 x 28, and a 1x1 conv to one mask per class."""

    def __init__(self, c: int = 256, classes: int = K):
        super().__init__()
        layers = []
        for _ in range(4):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.up = nn.ConvTranspose2d(c, c, 2, stride=2)
        self.predict = nn.Conv2d(c, classes, 1)

    def forward(self, x):
        return self.predict(F.relu(self.up(self.convs(x))))


head = MaskHead()
n_params = sum(p.numel() for p in head.parameters())
assert n_params == 4 * (9 * 256 * 256 + 256) + (4 * 256 * 256 + 256) + (256 * K + K)
claim("2,643,280", n_params)

rois = torch.randn(2, 256, 14, 14)
logits = head(rois)
assert logits.shape == (2, K, 28, 28)
claim("62,720", K * 28 * 28)                                      # logits per RoI: one 28 x 28 mask per class

# The loss reads only the channel of each RoI's ground-truth class: the other 79 masks get no gradient, so
# classes do not compete for pixels. A softmax over classes per pixel would push all 80 against each other.
classes = torch.tensor([17, 3])
targets = torch.stack([torch.from_numpy(target), torch.from_numpy(target[:, ::-1].copy())]).float()
logits = logits.detach().requires_grad_(True)
loss = F.binary_cross_entropy_with_logits(logits[torch.arange(2), classes], targets)
(grad,) = torch.autograd.grad(loss, logits)
touched = grad.abs().sum(dim=(2, 3)) > 0
assert touched.sum() == 2 and touched[0, 17] and touched[1, 3]
softmax_loss = F.cross_entropy(logits, classes[:, None, None].expand(2, 28, 28))
(grad_sm,) = torch.autograd.grad(softmax_loss, logits)
assert (grad_sm.abs().sum(dim=(2, 3)) > 0).all()                  # every class's mask is pushed
# --8<-- [end:loss]


# --8<-- [start:oracle]
# What RoIPool costs a mask even with perfect features: the feature map is the object's own mask,
# area-averaged to stride 16, cell j holding the share of the pixels within 8 px of 16 j that lie inside the
# object (the convention RoIPool and the original RoIAlign assume). Pool a 28 x 28 grid with each op,
# threshold at 0.5, paste back, and compare with the true mask.
def oracle_ious(n: int = 24):
    out = {"roipool": [], "roipool-mean": [], "roialign": []}
    for _ in range(n):
        cy, cx, r = rng.uniform(80, 176), rng.uniform(80, 176), rng.uniform(24, 64)
        obj = disc_mask(S, cy, cx, r)
        cells = np.pad(obj, 8).reshape(S // 16 + 1, 16, S // 16 + 1, 16).mean(axis=(1, 3))[None]
        b = (cx - r, cy - r, cx + r, cy + r)
        pooled = {"roipool": roi_pool(cells, b, 16, out=28)[0],
                  "roipool-mean": roi_pool(cells, b, 16, out=28, reduce=np.mean)[0],
                  "roialign": roi_align(cells, b, 16, out=28, sampling_ratio=2, aligned=False)[0]}
        for k, v in pooled.items():
            out[k].append(iou(paste(v, b, S), obj > 0))
    return {k: float(np.mean(v)) for k, v in out.items()}


oracle = oracle_ious()
claim("0.94", oracle["roialign"]), claim("0.73", oracle["roipool"])
claim("0.69", oracle["roipool-mean"])          # averaging instead of max does not help: the error is where bins read
assert oracle["roialign"] > oracle["roipool"] + 0.1
# --8<-- [end:oracle]

# Figure: (a) one box on the stride-16 grid, its exact 7 x 7 bins and the cells RoIPool reads for them;
# (b) the 28 x 28 target of the proposal; (c) the target pasted back against the ground truth.
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
ax = axes[0]
fbox = (37.0, 29.0, 141.0, 121.0)
for g in range(8, 177, 16):                                    # cell j is centred on 16 j
    ax.axhline(g, color="0.85", lw=0.6), ax.axvline(g, color="0.85", lw=0.6)
for k in range(8):
    ax.plot([fbox[0] + k * (fbox[2] - fbox[0]) / 7] * 2, [fbox[1], fbox[3]], color="tab:blue", lw=0.8)
    ax.plot([fbox[0], fbox[2]], [fbox[1] + k * (fbox[3] - fbox[1]) / 7] * 2, color="tab:blue", lw=0.8)
(ylo, yhi), (xlo, xhi) = (roi_pool_cells(np.array(fbox[1]), np.array(fbox[3]), 16),
                          roi_pool_cells(np.array(fbox[0]), np.array(fbox[2]), 16))
for i, j in [(0, 0), (3, 3), (6, 6)]:
    ax.add_patch(Rectangle((xlo[j] * 16 - 8, ylo[i] * 16 - 8), (xhi[j] - xlo[j]) * 16, (yhi[i] - ylo[i]) * 16,
                           fill=False, ec="tab:red", lw=1.5, ls="--"))
    ex, ey = fbox[0] + j * (fbox[2] - fbox[0]) / 7, fbox[1] + i * (fbox[3] - fbox[1]) / 7
    ax.add_patch(Rectangle((ex, ey), (fbox[2] - fbox[0]) / 7, (fbox[3] - fbox[1]) / 7, color="tab:blue", alpha=0.35))
ax.set(xlim=(16, 176), ylim=(144, 8), aspect="equal", xticks=range(16, 177, 32), yticks=range(16, 145, 32))
ax.set_title("7x7 bins (blue) and the stride-16 cells\nRoIPool reads for three of them (red)", fontsize=9)
axes[1].imshow(target, cmap="gray", interpolation="nearest")
axes[1].set_title("28x28 target of a proposal that cuts\nthe top and right of the disc", fontsize=9)
axes[1].set(xticks=[], yticks=[])
ax = axes[2]
rgb = np.zeros((S, S, 3))
rgb[..., 0], rgb[..., 1] = ring_back, ring                       # red: pasted back, green: truth, yellow: both
ax.imshow(rgb[40:200, 50:210], extent=(50, 210, 200, 40))
ax.set_title(f"a 4-px ring through 28x28 and back, IoU {ring_iou:.2f}\n(green: truth, red: pasted, yellow: both)",
             fontsize=9)
ax.set(xticks=[], yticks=[])
fig.tight_layout()
save(fig, "detection-and-segmentation", "mask-r-cnn-roialign")
