"""Why GPUs are fast (a roofline of the A100's datasheet figures, and a measured CPU check), what fp16
and bf16 do to small gradients and how loss scaling fixes it, and data-parallel gradients equal to
the large-batch gradient, with a ring all-reduce written out."""
from __future__ import annotations

import time

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

# --8<-- [start:roofline]
# NVIDIA A100 SXM4 80 GB, datasheet figures: dense FP16/BF16 Tensor Core peak, FP32 (no Tensor
# Cores) peak, HBM2e bandwidth.
PEAK_TC, PEAK_FP32, BANDWIDTH = 312e12, 19.5e12, 2.039e12       # FLOP/s, FLOP/s, bytes/s
RIDGE = PEAK_TC / BANDWIDTH                                      # FLOP per byte to be compute-bound


def matmul(m: int, k: int, n: int, bytes_per: int = 2) -> tuple[float, float]:
    """(FLOPs, bytes moved) of C[m, n] = A[m, k] @ B[k, n]: each operand read or written once."""
    return 2 * m * k * n, bytes_per * (m * k + k * n + m * n)


def conv2d(batch: int, c_in: int, c_out: int, hw: int, k: int = 3, bytes_per: int = 2):
    """A stride-1, 'same' convolution as the implicit matmul it is."""
    flops = 2 * batch * hw * hw * c_out * c_in * k * k
    return flops, bytes_per * (batch * hw * hw * (c_in + c_out) + c_out * c_in * k * k)


n_elem = 4096 * 4096
OPS = {                                                          # name: (FLOPs, bytes)
    "matmul 4096³": matmul(4096, 4096, 4096),
    "matmul 512³": matmul(512, 512, 512),
    "matmul 128³": matmul(128, 128, 128),
    "ResNet 3×3 conv, 256 ch, 14², batch 32": conv2d(32, 256, 256, 14),
    "matrix-vector, 4096² (batch 1)": matmul(4096, 4096, 1),
    "ReLU (elementwise)": (n_elem, 2 * 2 * n_elem),              # 1 FLOP; read 2 B, write 2 B
}
intensity = {name: f / b for name, (f, b) in OPS.items()}
attainable = {name: min(PEAK_TC, i * BANDWIDTH) for name, i in intensity.items()}

assert np.isclose(intensity["matmul 4096³"], 4096 / 3)          # n/3 for a square fp16 matmul
assert intensity["matmul 4096³"] > RIDGE and attainable["matmul 4096³"] == PEAK_TC
assert intensity["ResNet 3×3 conv, 256 ch, 14², batch 32"] > RIDGE     # convs are compute-bound too
assert intensity["matmul 512³"] > RIDGE > intensity["matmul 128³"]   # a small matmul is not
assert np.isclose(intensity["ReLU (elementwise)"], 0.25)
assert intensity["matrix-vector, 4096² (batch 1)"] < 1.01       # batch-1 inference: ~1 FLOP/byte
elementwise_share = attainable["ReLU (elementwise)"] / PEAK_TC
assert elementwise_share < 0.002                                 # under 0.2% of the Tensor Core peak
claim("153", RIDGE)
claim("1,365", intensity["matmul 4096³"])
claim("0.25", intensity["ReLU (elementwise)"])
claim("0.51", attainable["ReLU (elementwise)"] / 1e12)
claim("0.16%", elementwise_share)
claim("171", intensity["matmul 512³"])
claim("43", intensity["matmul 128³"])
claim("973", intensity["ResNet 3×3 conv, 256 ch, 14², batch 32"])
claim("1.0", intensity["matrix-vector, 4096² (batch 1)"])
claim("16×", PEAK_TC / PEAK_FP32)
add_intensity = n_elem / (3 * 2 * n_elem)                        # a + b: read 2 x 2 B, write 2 B
claim("0.17", add_intensity)
claim("0.34 TFLOP/s", add_intensity * BANDWIDTH / 1e12)
# --8<-- [end:roofline]

for name in OPS:
    print(f"{name:40s} intensity {intensity[name]:8.2f} FLOP/B  attainable {attainable[name] / 1e12:7.2f} TFLOP/s")

# --8<-- [start:cpu]
def best_time(f, reps: int = 10) -> float:
    """The best of `reps` runs in this thread's CPU time: time the core spent on other processes is not counted."""
    f()
    times = []
    for _ in range(reps):
        t0 = time.thread_time()
        f()
        times.append(time.thread_time() - t0)
    return min(times)


a, b = torch.randn(512, 512), torch.randn(512, 512)
x = torch.randn(16_000_000)
out = torch.empty_like(x)
matmul_flops = 2 * 512**3 / best_time(lambda: torch.mm(a, b))
add_flops = x.numel() / best_time(lambda: torch.add(x, x, out=out))
cpu_ratio = matmul_flops / add_flops
assert cpu_ratio > 5                 # the same roofline on one CPU core: the add waits on memory
claim("more than 5", cpu_ratio)      # how much more depends on the matmul kernel MKL picks
# --8<-- [end:cpu]
print(f"CPU: matmul {matmul_flops / 1e9:.1f} GFLOP/s, add {add_flops / 1e9:.2f} GFLOP/s, ratio {cpu_ratio:.0f}")

# --8<-- [start:precision]
f16, bf16 = torch.finfo(torch.float16), torch.finfo(torch.bfloat16)
assert f16.max == 65504 and f16.smallest_normal == 2.0**-14 and f16.eps == 2.0**-10
assert bf16.max > 3.3e38 and bf16.smallest_normal == torch.finfo(torch.float32).smallest_normal
assert bf16.eps == 2.0**-7
assert torch.tensor(2.0**-24).half().item() == 2.0**-24 and torch.tensor(2.0**-26).half().item() == 0
claim("65,504", f16.max)
claim("6.1\\times10^{-5}", f16.smallest_normal)
claim("6.0\\times10^{-8}", 2.0**-24)
claim("3.4\\times10^{38}", bf16.max)
f32 = torch.finfo(torch.float32)
claim("1.2\\times10^{-38}", f32.smallest_normal)
claim("1.4\\times10^{-45}", 2.0**-149)                        # fp32's smallest subnormal
claim("9.2\\times10^{-41}", 2.0**-133)                        # bf16's: 7 mantissa bits below 2^-126
assert torch.tensor(2.0**-133).bfloat16().item() == 2.0**-133 and torch.tensor(2.0**-135).bfloat16().item() == 0
claim("1.2\\times10^{-7}", f32.eps)
claim("9.8\\times10^{-4}", f16.eps)
claim("7.8\\times10^{-3}", bf16.eps)

# Gradients of a small MLP trained on scikit-learn's digits until the loss is small: they shrink with it.
digits = load_digits()
X = torch.tensor(digits.data[:600] / 16, dtype=torch.float32)       # 600 images: a full batch
y = torch.tensor(digits.target[:600])
net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
for _ in range(300):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(net(X), y)
    loss.backward()
    opt.step()
opt.zero_grad()
nn.functional.cross_entropy(net(X), y).backward()
g = torch.cat([p.grad.flatten() for p in net.parameters()])
g = g[g != 0]


def stored(grad: torch.Tensor, dtype, scale: float = 1.0) -> torch.Tensor:
    """The gradient as a buffer of `dtype` holds it: scaled, rounded, then unscaled in fp32."""
    return (grad * scale).to(dtype).float() / scale


lost = {S: (stored(g, torch.float16, S) == 0).float().mean().item() for S in (1.0, 2.0**10, 2.0**16)}
lost_bf16 = (stored(g, torch.bfloat16) == 0).float().mean().item()
subnormal = (g.abs() < f16.smallest_normal).float().mean().item()
assert lost[1.0] > 0.01 and lost[2.0**16] < lost[1.0] / 10 and lost_bf16 == 0
assert (stored(g, torch.float16, 2.0**16).abs() < 65504).all()  # this scale does not overflow here
rel_err = lambda s: ((s - g).abs() / g.abs()).median().item()   # noqa: E731
err_f16_scaled, err_bf16 = rel_err(stored(g, torch.float16, 2.0**16)), rel_err(stored(g, torch.bfloat16))
assert err_bf16 > 4 * err_f16_scaled                             # bf16: range of fp32, 3 fewer bits
claim("3.4–3.7%", lost[1.0])
claim("0.16–0.19%", lost[2.0**16])
claim("1.3%", lost[2.0**10])
claim("1.7\\times10^{-4}", err_f16_scaled)
claim("1.4\\times10^{-3}", err_bf16)
claim("over 99%", subnormal)
claim("5.5\\times10^{-4}", loss.item())

# Master weights: an update below half an ulp of the weight vanishes in fp16 and bf16, not in fp32.
w = {dt: torch.tensor(1.0, dtype=dt) for dt in (torch.float32, torch.float16, torch.bfloat16)}
for _ in range(1000):
    for dt in w:
        w[dt] = w[dt] + torch.tensor(1e-4, dtype=dt)
assert w[torch.float16].item() == 1.0 and w[torch.bfloat16].item() == 1.0
assert abs(w[torch.float32].item() - 1.1) < 1e-4

# Dynamic loss scaling with torch.amp.GradScaler (on the CPU, fp16 autocast): a scale that overflows
# the fp16 backward gives inf gradients; the step is skipped and the scale halved until it fits.
torch.manual_seed(0)
net16 = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
opt16 = torch.optim.SGD(net16.parameters(), lr=0.1)
scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
history = []
for step in range(4):
    before = net16[0].weight.detach().clone()
    opt16.zero_grad()
    with torch.autocast("cpu", dtype=torch.float16):
        logits = net16(X)
    scaler.scale(nn.functional.cross_entropy(logits.float(), y)).backward()
    finite = all(torch.isfinite(p.grad).all() for p in net16.parameters())
    scaler.step(opt16)
    scaler.update()
    history.append((finite, torch.equal(before, net16[0].weight), scaler.get_scale()))
assert logits.dtype == torch.float16
skipped = [not finite for finite, _, _ in history]
assert all(unchanged for (finite, unchanged, _) in history if not finite)   # a skipped step changes nothing
assert not any(unchanged for (finite, unchanged, _) in history if finite)
assert skipped[0] and not skipped[-1] and history[-1][2] < 2.0**24
default = torch.amp.GradScaler("cpu")
claim("2,000", default.get_growth_interval())
assert default.get_scale() == 2.0**16 and default.get_backoff_factor() == 0.5 and default.get_growth_factor() == 2.0
claim("4,194,304", history[-1][2])
claim("2 steps", sum(skipped))
# --8<-- [end:precision]
print(f"final loss {loss.item():.2e}; fp16 lost {lost}; bf16 lost {lost_bf16}; subnormal {subnormal:.3f}")
print(f"median rel err fp16x2^16 {err_f16_scaled:.2e} bf16 {err_bf16:.2e}; scaler {history}")

# --8<-- [start:data-parallel]
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).double()
Xd, yd = X[:256].double(), y[:256]
WORKERS = 4


def gradient(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> list[torch.Tensor]:
    m.zero_grad()
    nn.functional.cross_entropy(m(xb), yb).backward()          # mean over this worker's batch
    return [p.grad.clone() for p in m.parameters()]


def ring_all_reduce(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], int]:
    """Sum one flat tensor per worker with a ring: N-1 reduce-scatter steps, N-1 all-gather steps.
    Returns every worker's result and the number of elements worker 0 sent."""
    n = len(tensors)
    chunks = [list(t.clone().chunk(n)) for t in tensors]       # worker r holds n chunks
    sent = 0
    for s in range(n - 1):                                      # reduce-scatter
        msgs = [(r, (r - s) % n, chunks[r][(r - s) % n].clone()) for r in range(n)]
        for r, c, msg in msgs:
            chunks[(r + 1) % n][c] += msg
        sent += msgs[0][2].numel()
    for s in range(n - 1):                                      # all-gather: pass the finished chunks on
        msgs = [(r, (r + 1 - s) % n, chunks[r][(r + 1 - s) % n].clone()) for r in range(n)]
        for r, c, msg in msgs:
            chunks[(r + 1) % n][c] = msg
        sent += msgs[0][2].numel()
    return [torch.cat(c) for c in chunks], sent


full = gradient(model, Xd, yd)                                  # one worker, batch 256
local = [gradient(model, xs, ys) for xs, ys in zip(Xd.chunk(WORKERS), yd.chunk(WORKERS))]  # 4 x 64
flat = [torch.cat([g.flatten() for g in grads]) for grads in local]
reduced, sent = ring_all_reduce(flat)
averaged = reduced[0] / WORKERS
assert all(torch.equal(r, reduced[0]) for r in reduced)         # every worker ends with the same sum
full_flat = torch.cat([g.flatten() for g in full])
dp_error = (averaged - full_flat).abs().max().item()
assert dp_error < 1e-15                                          # == the large-batch gradient
claim("within $10^{-15}$", dp_error)
M = flat[0].numel()                                             # worker 0 sends 2(N-1)/N of the gradient
assert abs(sent - 2 * (WORKERS - 1) / WORKERS * M) <= 2 * (WORKERS - 1)   # (chunks differ by <= 1 element)
claim("1.5", sent / flat[0].numel())
# What that costs for ResNet-50 (25,557,032 parameters, fp32 gradients) on 8 GPUs, per step:
ring_bytes = 2 * (8 - 1) / 8 * 25_557_032 * 4
nvlink_ms, ethernet_ms = ring_bytes / 300e9 * 1e3, ring_bytes / 12.5e9 * 1e3   # A100 NVLink per direction; 100 Gb/s
claim("179 MB", ring_bytes / 1e6)
claim("0.6 ms", nvlink_ms)
claim("14 ms", ethernet_ms)

# Two ways to break the equality: unequal shards averaged as equals, and BatchNorm's per-worker statistics.
sizes = [100, 60, 60, 36]
shards = list(zip(Xd.split(sizes), yd.split(sizes)))
naive = torch.stack([torch.cat([g.flatten() for g in gradient(model, xs, ys)]) for xs, ys in shards]).mean(0)
assert (naive - full_flat).abs().max() > 1e-4
weighted = sum(len(ys) / 256 * torch.cat([g.flatten() for g in gradient(model, xs, ys)]) for xs, ys in shards)
assert torch.allclose(weighted, full_flat, rtol=0, atol=1e-15)  # weight by shard size and it is exact again
torch.manual_seed(0)
bn_model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10)).double()
bn_full = torch.cat([g.flatten() for g in gradient(bn_model, Xd, yd)])
bn_avg = torch.stack([torch.cat([g.flatten() for g in gradient(bn_model, xs, ys)])
                      for xs, ys in zip(Xd.chunk(WORKERS), yd.chunk(WORKERS))]).mean(0)
bn_gap = ((bn_avg - bn_full).norm() / bn_full.norm()).item()
assert bn_gap > 0.01                                            # SyncBatchNorm exists for this reason
claim("8%", bn_gap)
# --8<-- [end:data-parallel]
print(f"ring sent {sent} of {flat[0].numel()} per worker; BN gap {bn_gap:.3f}")

# --- the roofline figure ---
fig, ax = plt.subplots(figsize=(7, 4))
I = np.logspace(-1.5, 4, 200)
ax.plot(I, np.minimum(PEAK_TC, I * BANDWIDTH) / 1e12, c="k", lw=1.8, label="FP16/BF16 Tensor Core roof")
ax.plot(I, np.minimum(PEAK_FP32, I * BANDWIDTH) / 1e12, c="0.5", lw=1.2, ls="--", label="FP32 roof (no Tensor Cores)")
ax.axvline(RIDGE, c="0.7", lw=0.8, ls=":")
ax.text(RIDGE * 1.1, 1.0, f"ridge: {RIDGE:.0f} FLOP/B", fontsize=7, color="0.3")
markers = ["o", "s", "^", "D", "v", "X"]
for (name, i), m in zip(intensity.items(), markers):
    ax.plot(i, attainable[name] / 1e12, m, ms=7, label=name)
ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per byte of DRAM traffic)",
       ylabel="attainable TFLOP/s", title="Roofline of an A100 SXM4 80 GB (datasheet figures)", ylim=(0.02, 600))
ax.legend(fontsize=6.5, loc="lower right")
save(fig, "deep-learning", "gpu-roofline")
