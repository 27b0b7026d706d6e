"""Memory footprint: bytes per weight at fp32/fp16/int8/int4 checked against real serialised sizes,
global magnitude pruning (sparse is not small), and knowledge distillation into a 10x smaller student."""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from _train import fit
from torch import nn
from torch.nn.utils import prune

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def nbytes(obj) -> int:
    """Size of obj as torch.save writes it."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer().nbytes


# --8<-- [start:arithmetic]
BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "int8": 1, "int4": 0.5}


def weight_mb(n_params: float, dtype: str) -> float:
    return n_params * BYTES_PER_PARAM[dtype] / 1e6


resnet50, vit_b16 = 25.6e6, 86e6           # parameter counts (torchvision docs; Dosovitskiy et al. 2021)
claim("102.4 MB", weight_mb(resnet50, "fp32")), claim("51.2 MB", weight_mb(resnet50, "fp16"))
claim("25.6 MB", weight_mb(resnet50, "int8")), claim("12.8 MB", weight_mb(resnet50, "int4"))
claim("344 MB", weight_mb(vit_b16, "fp32")), claim("172 MB", weight_mb(vit_b16, "fp16"))
claim("86 MB", weight_mb(vit_b16, "int8")), claim("43 MB", weight_mb(vit_b16, "int4"))
# Activations are per image: ResNet-50's first conv output alone is 64 x 112 x 112 floats.
claim("3.2 MB per image", 64 * 112 * 112 * 4 / 1e6)      # in fp32
claim("32.7×", (1280 / 224) ** 2)                          # a 1280x1280 detector input vs 224x224
# Low rank: an m x n Linear layer replaced by rank-r factors stores r(m + n) instead of mn.
m, n, r = 2048, 2048, 256
claim("4× fewer", m * n / (r * (m + n)))
# --8<-- [end:arithmetic]


# --8<-- [start:sizes]
layer_shapes = [(2048, 1024), (1024, 2048), (1000, 1024)]          # a 5.2M-parameter head
weights = {f"w{i}": torch.randn(o, i_) * 0.02 for i, (o, i_) in enumerate(layer_shapes)}
n_params = sum(w.numel() for w in weights.values())


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: w ~ q * scale, q in [-127, 127]."""
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    return torch.round(w / scale).to(torch.int8), scale


def quantize_int4_packed(w: np.ndarray, group: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 in groups of 64 weights (one fp16 scale each), two 4-bit values per byte."""
    g = w.reshape(-1, group)
    scale = np.abs(g).max(axis=1, keepdims=True) / 7
    q = np.clip(np.round(g / scale), -8, 7).astype(np.int8)
    nibbles = (q & 0x0F).astype(np.uint8).reshape(-1, 2)              # two's complement low nibble
    return (nibbles[:, 0] | (nibbles[:, 1] << 4)).astype(np.uint8), scale.astype(np.float16)


def dequantize_int4(packed: np.ndarray, scale: np.ndarray, shape, group: int = 64) -> np.ndarray:
    lo, hi = (packed & 0x0F).astype(np.int8), (packed >> 4).astype(np.int8)
    q = np.stack([lo, hi], axis=1).reshape(-1)
    q = np.where(q > 7, q - 16, q)                                      # back to signed
    return (q.reshape(-1, group) * scale.astype(np.float32)).reshape(shape)


sizes, errors = {}, {}
sizes["fp32"] = nbytes(weights)
sizes["fp16"] = nbytes({k: w.half() for k, w in weights.items()})
int8 = {k: quantize_int8(w) for k, w in weights.items()}
sizes["int8"] = nbytes(int8)
int4 = {k: quantize_int4_packed(w.numpy()) for k, w in weights.items()}
sizes["int4"] = nbytes({k: (torch.from_numpy(p), torch.from_numpy(s)) for k, (p, s) in int4.items()})

n_rows = sum(o for o, _ in layer_shapes)
expected = {d: n_params * BYTES_PER_PARAM[d] for d in sizes}
expected["int8"] += 4 * n_rows                    # one fp32 scale per output channel
expected["int4"] += 2 * n_params // 64            # one fp16 scale per 64 weights: 4.25 bits/weight
for dtype, size in sizes.items():
    assert expected[dtype] <= size < expected[dtype] + 20_000, dtype   # + a few KB of file format
claim("5.22 M weights", n_params / 1e6)
claim("20.9 MB", sizes["fp32"] / 1e6), claim("10.4 MB", sizes["fp16"] / 1e6)
claim("5.24 MB", sizes["int8"] / 1e6), claim("2.77 MB", sizes["int4"] / 1e6)
claim("4.25 bits", 8 * (expected["int4"]) / n_params)

def rel_err(w_hat, w) -> float:
    return float(np.linalg.norm(np.asarray(w_hat) - np.asarray(w)) / np.linalg.norm(np.asarray(w)))

errors["fp16"] = np.mean([rel_err(w.half().float(), w) for w in weights.values()])
errors["int8"] = np.mean([rel_err(q.float() * s, weights[k]) for k, (q, s) in int8.items()])
errors["int4"] = np.mean([rel_err(dequantize_int4(p, s, weights[k].shape), weights[k])
                          for k, (p, s) in int4.items()])
claim("2\\times10^{-4}", errors["fp16"])
claim("0.8%", errors["int8"])
claim("11%", errors["int4"])                       # naive rounding, even with group scales
# --8<-- [end:sizes]


# A synthetic task for pruning and distillation: 10 classes, each a mixture of 4 Gaussian blobs in 20-D.
D, C, MODES = 20, 10, 4
centres = rng.normal(0, 1, (C * MODES, D))


def make_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = rng.integers(0, C * MODES, n)
    x = centres[k] + rng.normal(0, 0.9, (n, D))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(k % C)


def mlp(hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(D, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, C))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


x_train, y_train = make_data(5000)
x_test, y_test = make_data(5000)
teacher = fit(mlp(128), x_train, y_train, epochs=15, lr=2e-3, batch=128)
acc_teacher = accuracy(teacher, x_test, y_test)
claim("93.3%", acc_teacher)

# --8<-- [start:pruning]
def prune_copy(model: nn.Module, amount: float) -> nn.Module:
    pruned = mlp(128)
    pruned.load_state_dict(model.state_dict())
    linears = [(m, "weight") for m in pruned if isinstance(m, nn.Linear)]
    prune.global_unstructured(linears, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in linears:
        prune.remove(module, name)                 # bake the mask into the weight tensor
    return pruned


dense_bytes = nbytes(teacher.state_dict())
dense_weight_bytes = sum(m.weight.numel() * 4 for m in teacher if isinstance(m, nn.Linear))
pruning = {}
for amount in (0.5, 0.8, 0.9):
    p = prune_copy(teacher, amount)
    ws = [mod.weight for mod in p if isinstance(mod, nn.Linear)]
    sparsity = sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    assert abs(sparsity - amount) < 1e-3
    assert abs(nbytes(p.state_dict()) - dense_bytes) < 0.01 * dense_bytes   # zeros still cost 4 bytes
    csr = [w.detach().to_sparse_csr() for w in ws]
    csr_bytes = sum(sum(t.numel() * t.element_size() for t in (c.values(), c.col_indices(), c.crow_indices()))
                    for c in csr)
    pruning[amount] = (accuracy(p, x_test, y_test), csr_bytes)

# CSR stores 4-byte values plus 8-byte column indices: it only wins below 1/3 density.
claim("1.5×", pruning[0.5][1] / dense_weight_bytes)
claim("0.33×", pruning[0.9][1] / dense_weight_bytes)
claim("92.9%", pruning[0.5][0])                    # half the weights go almost for free...
claim("under 0.5 points", 100 * (acc_teacher - pruning[0.5][0]))
claim("77.9–78.0%", pruning[0.8][0]), claim("15 points", 100 * (acc_teacher - pruning[0.8][0]))
claim("47.8%", pruning[0.9][0]), claim("over 45 points", 100 * (acc_teacher - pruning[0.9][0]))   # ...80-90% do not
# --8<-- [end:pruning]

# --8<-- [start:distill]
T = 4.0


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Hinton et al. (2015): KL between temperature-softened distributions, scaled by T^2."""
    return T * T * nn.functional.kl_div(nn.functional.log_softmax(student_logits / T, 1),
                                        nn.functional.softmax(teacher_logits / T, 1),
                                        reduction="batchmean")


with torch.no_grad():
    teacher_logits = teacher(x_train)
small = slice(0, 300)                              # the student sees 300 examples
torch.manual_seed(1)
hard = fit(mlp(32), x_train[small], y_train[small], epochs=60, lr=3e-3, batch=50)
torch.manual_seed(1)
distilled = fit(mlp(32), x_train[small], teacher_logits[small], epochs=60, lr=3e-3, batch=50,
                loss_fn=kd_loss)

n_teacher = sum(p.numel() for p in teacher.parameters())
n_student = sum(p.numel() for p in distilled.parameters())
with torch.no_grad():
    teacher_pred = teacher(x_test).argmax(1)
acc_hard, acc_kd = accuracy(hard, x_test, y_test), accuracy(distilled, x_test, y_test)
agree_hard, agree_kd = accuracy(hard, x_test, teacher_pred), accuracy(distilled, x_test, teacher_pred)

claim("10× smaller", n_teacher / n_student)
claim("67.3%", acc_hard), claim("68.2%", agree_hard)
claim("77.5%", acc_kd), claim("79.4%", agree_kd)   # soft targets carry more per example

# With all 5,000 labels and a short schedule the advantage is gone on this task.
torch.manual_seed(1)
hard_full = fit(mlp(32), x_train, y_train, epochs=8, lr=3e-3, batch=128)
torch.manual_seed(1)
kd_full = fit(mlp(32), x_train, teacher_logits, epochs=8, lr=3e-3, batch=128, loss_fn=kd_loss)
acc_hard_full, acc_kd_full = accuracy(hard_full, x_test, y_test), accuracy(kd_full, x_test, y_test)
claim("87.9%", acc_hard_full), claim("85.2–85.3%", acc_kd_full)
# --8<-- [end:distill]

print(f"{n_params / 1e6:.2f}M weights, bytes: " + ", ".join(f"{d} {s / 1e6:.2f} MB" for d, s in sizes.items()))
print("relative weight error: " + ", ".join(f"{d} {e:.4f}" for d, e in errors.items()))
print(f"teacher acc {acc_teacher:.3f}; dense weights {dense_weight_bytes} B; pruned (acc, CSR bytes): "
      + ", ".join(f"{a:.0%}: ({v[0]:.3f}, {v[1]})" for a, v in pruning.items()))
print(f"student {n_student} vs teacher {n_teacher} params; 300 examples: hard labels acc {acc_hard:.3f} "
      f"(agreement {agree_hard:.3f}), distilled acc {acc_kd:.3f} (agreement {agree_kd:.3f})")
print(f"5000 examples: hard labels acc {acc_hard_full:.3f}, distilled acc {acc_kd_full:.3f}")
