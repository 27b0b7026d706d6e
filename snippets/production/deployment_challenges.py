"""Training/serving skew: three preprocessing bugs that raise no error, and the golden-input parity test that
catches them."""
from __future__ import annotations

import io

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
from _figures import save
from _train import fit
from PIL import Image, ImageOps
from torch import nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)

# Three kinds of fruit on a conveyor: ripe (red), unripe (green), overripe (dark purple).
COLOURS = np.array([[200, 35, 40], [70, 175, 55], [95, 40, 115]], dtype=float)  # RGB


def make_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """128x128 RGB uint8 camera frames: a jittered-colour ellipse on a noisy grey belt."""
    labels = rng.integers(0, 3, n)
    images = np.empty((n, 128, 128, 3), np.uint8)
    for i, y in enumerate(labels):
        img = rng.normal(128, 40, (128, 128, 3)).clip(0, 255)
        colour = (COLOURS[y] + rng.normal(0, 15, 3)).clip(0, 255)
        mask = np.zeros((128, 128), np.uint8)
        centre = tuple(int(c) for c in rng.integers(40, 88, 2))
        axes = tuple(int(a) for a in rng.integers(18, 34, 2))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        img[mask == 1] = colour + rng.normal(0, 8, (int(mask.sum()), 3))
        images[i] = img.clip(0, 255).astype(np.uint8)
    return images, labels


# --8<-- [start:preprocess]
MEAN = np.array([0.5, 0.5, 0.5], np.float32)
STD = np.array([0.25, 0.25, 0.25], np.float32)


def preprocess_train(rgb: np.ndarray) -> np.ndarray:
    """The training pipeline: PIL bilinear resize (antialiased), scale to [0, 1], normalise, HWC -> CHW."""
    small = np.asarray(Image.fromarray(rgb).resize((32, 32), Image.BILINEAR), np.float32)
    return ((small / 255.0 - MEAN) / STD).transpose(2, 0, 1)


# Three serving pipelines someone rewrote "to remove the PIL dependency". None raises an error.
def serve_bgr(frame_bgr: np.ndarray) -> np.ndarray:
    """Forgot that cv2.imread / cv2.VideoCapture return BGR."""
    return preprocess_train(frame_bgr)


def serve_no_scaling(rgb: np.ndarray) -> np.ndarray:
    """Forgot the / 255."""
    small = np.asarray(Image.fromarray(rgb).resize((32, 32), Image.BILINEAR), np.float32)
    return ((small - MEAN) / STD).transpose(2, 0, 1)


def serve_cv2_resize(rgb: np.ndarray) -> np.ndarray:
    """cv2.INTER_LINEAR does not antialias when it downscales; PIL's BILINEAR does."""
    small = cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return ((small / 255.0 - MEAN) / STD).transpose(2, 0, 1)
# --8<-- [end:preprocess]


train_x, train_y = make_images(600)
test_x, test_y = make_images(300)

model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    nn.Linear(32, 3),
)
X = torch.from_numpy(np.stack([preprocess_train(im) for im in train_x]))
fit(model, X, torch.from_numpy(train_y), epochs=8, lr=1e-2)   # plain Adam, see _train.py


@torch.no_grad()
def logits(batch: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()


# --8<-- [start:skew]
def accuracy(pipeline, frames: np.ndarray) -> float:
    return float((logits(np.stack([pipeline(f) for f in frames])).argmax(1) == test_y).mean())


acc_ref = accuracy(preprocess_train, test_x)
acc_bgr = accuracy(serve_bgr, test_x[..., ::-1])          # the camera hands over BGR
acc_raw = accuracy(serve_no_scaling, test_x)
acc_cv2 = accuracy(serve_cv2_resize, test_x)

claim("100%", acc_ref)                 # the model is fine...
claim("62%", acc_bgr)                  # ...red fruit now look blue-purple
claim("65%", acc_raw)                  # mean shift lost, inputs 255x too large
assert abs(acc_cv2 - acc_ref) < 0.03   # accuracy barely moves: a test-set check would pass
claim("100%", acc_cv2)

raw_probs = torch.softmax(torch.from_numpy(logits(np.stack([serve_no_scaling(f) for f in test_x]))), 1)
raw_confidence = float(raw_probs.max(1).values.mean())
claim("0.997", raw_confidence)         # and it is certain about every answer, right or wrong
# --8<-- [end:skew]

# --8<-- [start:golden]
# At training time: freeze a few raw inputs and the exact outputs of the training pipeline.
golden_frames = test_x[:16].copy()
golden_logits = logits(np.stack([preprocess_train(f) for f in golden_frames]))


def parity_check(pipeline, frames: np.ndarray, atol: float = 1e-3) -> tuple[bool, float]:
    """Run in CI against the serving code: same raw input must give the same logits."""
    got = logits(np.stack([pipeline(f) for f in frames]))
    err = float(np.abs(got - golden_logits).max())
    return err <= atol, err


ok_ref, err_ref = parity_check(preprocess_train, golden_frames)
ok_bgr, err_bgr = parity_check(serve_bgr, golden_frames[..., ::-1])
ok_raw, err_raw = parity_check(serve_no_scaling, golden_frames)
ok_cv2, err_cv2 = parity_check(serve_cv2_resize, golden_frames)

assert ok_ref and err_ref == 0.0                         # same call, same batch, same device: bit-identical
assert not ok_bgr and not ok_raw and not ok_cv2          # all three bugs are caught
claim("2.1", err_cv2)                                    # even the "harmless" resize, by a wide margin
claim("about 2", err_cv2, tol=0.5)

# Not the same call: the same frames one at a time instead of as a batch of 16.
one_by_one = np.concatenate([logits(preprocess_train(f)[None]) for f in golden_frames])
claim("under $10^{-5}$", np.abs(one_by_one - golden_logits).max())   # kernels sum in another order
# --8<-- [end:golden]

# --8<-- [start:library-traps]
# How far PIL's bilinear and OpenCV's downscaling filters disagree, in grey levels, at 4x (128 -> 32).
def resized(method) -> np.ndarray:
    return np.stack([method(f).astype(float) for f in test_x[:50]])


pil = resized(lambda f: np.asarray(Image.fromarray(f).resize((32, 32), Image.BILINEAR)))
ocv = resized(lambda f: cv2.resize(f, (32, 32), interpolation=cv2.INTER_LINEAR))
area = resized(lambda f: cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA))
pixel_gap, area_gap = float(np.abs(pil - ocv).mean()), float(np.abs(pil - area).mean())
claim("12 grey levels", pixel_gap)      # INTER_LINEAR samples 2x2 pixels: aliased
claim("4 grey levels", area_gap)        # INTER_AREA averages the footprint: much closer, not equal


def serve_cv2_area(rgb: np.ndarray) -> np.ndarray:
    small = cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    return ((small / 255.0 - MEAN) / STD).transpose(2, 0, 1)


ok_area, err_area = parity_check(serve_cv2_area, golden_frames)
assert not ok_area                      # closer is not the same: the parity test still fails
claim("0.48", err_area)

# EXIF orientation: a phone stores a portrait photo as landscape pixels plus an "rotate 90°" tag.
photo = Image.fromarray(test_x[0][:, :96].copy())         # 128 high, 96 wide
exif = photo.getexif()
exif[0x0112] = 6                                          # Orientation = 6: rotate 90° clockwise to view
buf = io.BytesIO()
photo.save(buf, "JPEG", exif=exif)
jpeg = np.frombuffer(buf.getvalue(), np.uint8)
by_cv2 = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)             # OpenCV applies the tag by default
by_pil = np.asarray(Image.open(io.BytesIO(jpeg.tobytes())))          # PIL does not...
by_pil_fixed = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(jpeg.tobytes()))))  # ...unless asked
assert by_cv2.shape[:2] == (96, 128) and by_pil.shape[:2] == (128, 96)   # the same bytes, two orientations
assert by_pil_fixed.shape == by_cv2.shape
assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION).shape == by_pil.shape
# --8<-- [end:library-traps]

fig, axes = plt.subplots(1, 4, figsize=(7.5, 2.3))
frame = test_x[int(np.argmax(test_y == 0))]
shown = [("camera frame 128x128", frame),
         ("training input (PIL)", preprocess_train(frame)),
         ("served: BGR", serve_bgr(frame[..., ::-1].copy())),
         ("served: cv2 resize", serve_cv2_resize(frame))]
for ax, (title, im) in zip(axes, shown):
    if im.ndim == 3 and im.shape[0] == 3:                  # undo normalisation for display
        im = ((im.transpose(1, 2, 0) * STD + MEAN).clip(0, 1) * 255).astype(np.uint8)
    ax.imshow(im, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
save(fig, "production", "preprocessing-skew")

print(f"accuracy: reference {acc_ref:.3f}, BGR {acc_bgr:.3f}, no /255 {acc_raw:.3f}, cv2 resize {acc_cv2:.3f}; "
      f"no /255 mean confidence {raw_confidence:.4f}")
print(f"golden max |logit diff|: reference {err_ref:.1e}, BGR {err_bgr:.2f}, no /255 {err_raw:.1f}, "
      f"cv2 resize {err_cv2:.3f}; PIL vs cv2 mean pixel gap {pixel_gap:.1f} grey levels")
