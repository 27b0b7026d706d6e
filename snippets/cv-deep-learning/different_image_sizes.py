"""Different input sizes: resize vs letterbox vs crop, global pooling, fully convolutional inference,
and padding masks for a batch of mixed sizes."""
from __future__ import annotations

import io
import warnings

import cv2
import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save
from skimage import data

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_grad_enabled(False)                                # inference only
torch.manual_seed(0)


# --8<-- [start:letterbox]
def letterbox(img: np.ndarray, size: int, fill: int = 114) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio so the longer side is `size`, then pad to size x size.
    Returns the image, the scale and the (top, left) padding, needed to map boxes back."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.full((size, size) + img.shape[2:], fill, dtype=img.dtype)
    out[top:top + nh, left:left + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return out, scale, (top, left)


def unletterbox_box(box, scale: float, pad: tuple[int, int]) -> np.ndarray:
    """A box (x0, y0, x1, y1) predicted on the letterboxed image, in original pixel coordinates."""
    top, left = pad
    return (np.asarray(box, float) - [left, top, left, top]) / scale


frame = np.zeros((720, 1280, 3), np.uint8)                   # a 16:9 video frame
boxed, scale, pad = letterbox(frame, 640)
assert boxed.shape == (640, 640, 3) and pad[1] == 0
claim("= 0.5", scale)
claim("140 rows", pad[0])                                    # 640x360 content + 2x140 rows
box_on_model_input = [100, 240, 300, 340]                    # what a detector would predict
assert np.allclose(unletterbox_box(box_on_model_input, scale, pad), [200, 200, 600, 400])
# Stretching the same frame to 640x640 instead: widths shrink relative to heights.
claim("44%", 1 - (640 / 1280) / (640 / 720))                 # 43.75%
# --8<-- [end:letterbox]

# --8<-- [start:three-ways]
cat = data.chelsea()                                         # 300 x 451, aspect 1.50
S = 224
stretched = cv2.resize(cat, (S, S), interpolation=cv2.INTER_AREA)        # aspect forced to 1.0
padded, s_pad, (top, left) = letterbox(cat, S)                         # content 224 x 149
short = S / min(cat.shape[:2])                                           # shorter side -> 224
resized = cv2.resize(cat, (round(cat.shape[1] * short), S), interpolation=cv2.INTER_AREA)
x0 = (resized.shape[1] - S) // 2
cropped = resized[:, x0:x0 + S]                                          # centre crop

content_h = round(cat.shape[0] * s_pad)
assert (content_h, top, left) == (149, 37, 0)
claim("75 of", S - content_h)                # "75 of 224 rows": the letterbox wastes them on padding
claim("1.50", cat.shape[1] / cat.shape[0])                    # the original aspect ratio ...
assert abs(S / content_h - cat.shape[1] / cat.shape[0]) < 0.01   # ... which the letterbox keeps
lost = 1 - S / resized.shape[1]
assert resized.shape[:2] == (224, 337)
claim("33.5%", lost)                                          # the centre crop drops a third of the width
# --8<-- [end:three-ways]

# --8<-- [start:any-size]
def trunk(c: int = 32) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),          # stride 1, as in any ResNet block
                         nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU())


flatten_head = nn.Sequential(trunk(), nn.Flatten(), nn.Linear(64 * 8 * 8, 10))   # built for 32x32
gap_head = nn.Sequential(trunk(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

for h, w in [(32, 32), (64, 48), (97, 131), (224, 224)]:
    assert gap_head(torch.randn(2, 3, h, w)).shape == (2, 10)    # any size works

assert flatten_head(torch.randn(2, 3, 32, 32)).shape == (2, 10)
try:
    flatten_head(torch.randn(2, 3, 64, 48))                      # 64*16*12 features != 64*8*8
    raise AssertionError("a flatten head should reject a different size")
except RuntimeError:
    pass
# --8<-- [end:any-size]

# --8<-- [start:dynamic]
# Deployment: an exported graph has fixed shapes unless the axes are declared dynamic.
gap_head.eval()
onnx_file = io.BytesIO()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)          # the TorchScript-based exporter
    torch.onnx.export(gap_head, (torch.randn(1, 3, 32, 32),), onnx_file, dynamo=False,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}})
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(onnx_file.getvalue(), options, providers=["CPUExecutionProvider"])
for h, w in [(32, 32), (97, 131)]:                                # one graph, two input sizes
    x = torch.randn(2, 3, h, w)
    np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], gap_head(x).numpy(), atol=1e-5)
# --8<-- [end:dynamic]

# --8<-- [start:fully-conv]
# A classifier for 32x32 crops, written with no padding, so a crop maps to exactly one 1x1 cell.
features = nn.Sequential(nn.Conv2d(3, 16, 5), nn.ReLU(), nn.MaxPool2d(2),     # 32 -> 28 -> 14
                         nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),    # 14 -> 10 -> 5
                         nn.Conv2d(32, 64, 5), nn.ReLU())                     # 5 -> 1
fc = nn.Linear(64, 10)
classify_crop = lambda crop: fc(features(crop).flatten(1))

# The same weights as a fully convolutional net: the Linear layer becomes a 1x1 convolution.
head = nn.Conv2d(64, 10, 1)
head.weight.data.copy_(fc.weight.data[:, :, None, None])
head.bias.data.copy_(fc.bias.data)
fcn = nn.Sequential(features, head)

big = torch.randn(1, 3, 96, 128)
score_map = fcn(big)                                   # one pass over the whole image
assert score_map.shape == (1, 10, 17, 25)              # (96-32)/4+1 by (128-32)/4+1, stride 4
for i, j in [(0, 0), (5, 11), (16, 24)]:
    crop = big[:, :, 4 * i:4 * i + 32, 4 * j:4 * j + 32]
    assert torch.allclose(score_map[:, :, i, j], classify_crop(crop), atol=1e-5)
claim("425 crop classifications", score_map[0, 0].numel())   # in one pass, the overlapping work shared
# --8<-- [end:fully-conv]

# --8<-- [start:masks]
torch.manual_seed(0)
net = trunk()
sizes = [(40, 64), (64, 48), (23, 37)]                  # three images, three sizes
images = [torch.randn(3, h, w) for h, w in sizes]

# Reference: each image on its own, global average pooled.
reference = torch.stack([net(im[None]).mean(dim=(2, 3))[0] for im in images])

# Batched: zero-pad to the largest size and carry a validity mask.
H, W = max(h for h, _ in sizes), max(w for _, w in sizes)
batch = torch.stack([F.pad(im, (0, W - im.shape[2], 0, H - im.shape[1])) for im in images])
mask = torch.zeros(len(sizes), 1, H, W)
for k, (h, w) in enumerate(sizes):
    mask[k, :, :h, :w] = 1


def masked_trunk(x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the trunk, re-zeroing the padding after every layer: padding must look like zeros to the next conv."""
    for layer in net:
        x = layer(x)
        if isinstance(layer, nn.Conv2d) and layer.stride[0] == 2:
            m = F.max_pool2d(m, 1, stride=2)           # a cell is valid if its centre input was
        x = x * m
    return x, m


feat, m_out = masked_trunk(batch, mask)
masked = feat.sum(dim=(2, 3)) / m_out.sum(dim=(2, 3))  # average over valid cells only
assert torch.allclose(masked, reference, atol=1e-5)     # exact: the same as one image at a time

# Without the mask: averaging over padding dilutes the features, most for the smallest image...
y = net(batch)
naive = y.mean(dim=(2, 3))
# ...and a mask at the end only is not enough: ReLU(bias) makes padding non-zero for the next conv.
late = (y * m_out).sum(dim=(2, 3)) / m_out.sum(dim=(2, 3))
rel = lambda est: ((est - reference).norm(dim=1) / reference.norm(dim=1)).tolist()   # per image
err_naive, err_late = rel(naive), rel(late)
claim("15.6%", err_naive[0]), claim("10.5%", err_naive[1]), claim("31.0%", err_naive[2])
claim("1.0%", err_late[0]), claim("0.8%", err_late[1]), claim("3.7%", err_late[2])   # even sizes leak too

# Where the leak goes: only into valid cells near the padded bottom and right edges.
band = 0
for k in range(len(sizes)):
    hv, wv = int(m_out[k, 0].sum(0).max()), int(m_out[k, 0].sum(1).max())   # valid output rows, cols
    wrong = torch.nonzero(((y - feat)[k, :, :hv, :wv]).abs().amax(0) > 1e-5)
    band = max(band, int(torch.minimum(hv - wrong[:, 0], wv - wrong[:, 1]).max()))
claim("at most 2 output cells", band)                  # 8 input pixels at stride 4
# --8<-- [end:masks]

print(f"letterbox 720x1280 -> 640: scale {scale}, pad {pad}; chelsea: crop loses {lost:.1%} of width")
print(f"FCN score map {tuple(score_map.shape)} == 425 crop classifications")
print("mixed batch, relative error per image: naive GAP " + ", ".join(f"{e:.5f}" for e in err_naive)
      + "; mask only at the end " + ", ".join(f"{e:.5f}" for e in err_late) + f" (within {band} cells of the"
      " padded edges); masked every layer 0")

fig, axes = plt.subplots(1, 4, figsize=(8, 2.4))
for ax, im, title in zip(axes, [cat, stretched, padded, cropped],
                         ["original 300x451", "stretch to 224x224", "letterbox (pad)", "resize + centre crop"]):
    ax.imshow(im)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]); ax.set_yticks([])
save(fig, "cv-deep-learning", "image-size-resize-pad-crop")
