"""Depthwise separable and group convolutions: parameters and FLOPs by formula and by PyTorch, and CPU time that
does not follow the FLOPs.
"""
from __future__ import annotations

import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save
from torch.utils.flop_counter import FlopCounterMode

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:counts]
def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def flops(m: nn.Module, x: torch.Tensor) -> int:
    """FLOPs as PyTorch's own counter reports them (2 per multiply-accumulate)."""
    with FlopCounterMode(display=False) as counter:
        m(x)
    return counter.get_total_flops()


H = W = 56
M, N, k = 128, 128, 3                                # input channels, output channels, kernel
x = torch.randn(1, M, H, W)

standard = nn.Conv2d(M, N, k, padding=1, bias=False)
depthwise = nn.Conv2d(M, M, k, padding=1, groups=M, bias=False)   # one k x k filter per channel
pointwise = nn.Conv2d(M, N, 1, bias=False)                         # 1x1: mixes channels only
separable = nn.Sequential(depthwise, pointwise)

# Weights: k^2 M N against k^2 M + M N. MACs: the same times H W (stride 1).
assert n_params(standard) == k * k * M * N and n_params(separable) == k * k * M + M * N
claim("147,456", n_params(standard)), claim("17,536", n_params(separable))
claim("1,152", n_params(depthwise)), claim("16,384", n_params(pointwise))
assert flops(standard, x) == 2 * H * W * k * k * M * N
assert flops(separable, x) == 2 * H * W * (k * k * M + M * N)

macs = {name: flops(m, x) // 2 for name, m in
        [("standard", standard), ("depthwise", depthwise), ("pointwise", pointwise), ("separable", separable)]}
claim("462M", macs["standard"]), claim("3.6M", macs["depthwise"])
claim("51.4M", macs["pointwise"]), claim("55.0M", macs["separable"])

ratio = flops(separable, x) / flops(standard, x)
assert math.isclose(ratio, 1 / N + 1 / k**2)         # the cost ratio of the page
claim("8.4×", 1 / ratio)
claim("93%", M * N / (k * k * M + M * N))            # the 1x1 holds almost all of the FLOPs

# A separable conv IS a standard conv, with a factorised kernel W[n, m] = P[n, m] * D[m].
dense_kernel = pointwise.weight[:, :, 0, 0, None, None] * depthwise.weight[:, 0][None]
assert torch.allclose(F.conv2d(x, dense_kernel, padding=1), separable(x), atol=1e-4)

# Group conv: g groups, each mapping M/g channels to N/g. Weights and FLOPs divide by g.
for g in (1, 2, 4, 32, 128):
    grouped = nn.Conv2d(M, N, k, padding=1, groups=g, bias=False)
    assert n_params(grouped) * g == n_params(standard)
    assert flops(grouped, x) * g == flops(standard, x)
# groups = 1 is a standard conv, groups = channels is a depthwise conv. Channels never cross a
# group boundary: output channel 0 ignores input channel M - 1 entirely.
xg = x.clone().requires_grad_()
nn.Conv2d(M, N, k, padding=1, groups=4)(xg)[0, 0].sum().backward()
assert xg.grad[0, : M // 4].abs().sum() > 0 and xg.grad[0, M // 4:].abs().sum() == 0
# --8<-- [end:counts]


# --8<-- [start:intensity]
def intensity(c_in: int, c_out: int, k: int, groups: int, hw: int, bytes_per: int = 4) -> float:
    """FLOPs per byte moved if input, output and weights each cross memory once (the roofline x-axis)."""
    flop = 2 * hw * k * k * c_in * c_out / groups
    moved = bytes_per * (hw * c_in + hw * c_out + k * k * c_in * c_out / groups)
    return flop / moved


ai = {
    "standard 3x3": intensity(M, N, 3, 1, H * W),
    "pointwise 1x1": intensity(M, N, 1, 1, H * W),
    "depthwise 3x3": intensity(M, M, 3, M, H * W),
}
claim("243 FLOPs per byte", ai["standard 3x3"])
claim("31 FLOPs per byte", ai["pointwise 1x1"])
claim("2.2 FLOPs per byte", ai["depthwise 3x3"])
# Whatever the channel count, a depthwise 3x3 stays below k^2 / 4 = 2.25 FLOPs per fp32 byte:
# each output value costs 9 MACs and needs one value read and one written.
assert all(intensity(c, c, 3, c, H * W) < 9 / 4 for c in (16, 64, 512, 2048))
# --8<-- [end:intensity]


# --8<-- [start:latency]
def cpu_ms(modules: dict[str, nn.Module], inputs: dict[str, torch.Tensor], rounds: int = 31) -> dict[str, float]:
    """Median CPU time of one forward pass, in ms, the modules interleaved round by round.
    CPU time of this thread, not wall time: other processes on a shared machine do not count."""
    times = {name: [] for name in modules}
    with torch.no_grad():
        for name, m in modules.items():          # warm-up: allocation, kernel selection
            m(inputs[name]), m(inputs[name])
        for _ in range(rounds):
            for name, m in modules.items():
                t0 = time.thread_time()
                m(inputs[name])
                times[name].append(time.thread_time() - t0)
    return {name: 1e3 * sorted(t)[len(t) // 2] for name, t in times.items()}


layers = {"standard": standard, "separable": separable, "depthwise": depthwise, "pointwise": pointwise,
          "groups=64": nn.Conv2d(M, N, k, padding=1, groups=64, bias=False)}
ms = cpu_ms(layers, {name: x for name in layers})

speedup = ms["standard"] / ms["separable"]
claim("2–7×", speedup)                                 # against 8.4x fewer FLOPs
dw_flop_share = flops(depthwise, x) / flops(separable, x)
dw_time_share = ms["depthwise"] / (ms["depthwise"] + ms["pointwise"])
claim("6.6%", dw_flop_share)
claim("8–70%", dw_time_share)                          # the cheap layer takes more than its share of the
assert dw_time_share > 1.2 * dw_flop_share             # time: 17-38% idle, 11% with the other core busy
claim("at most 10×", ms["standard"] / ms["groups=64"])  # 64x fewer FLOPs buy a small fraction of that


# ShuffleNet V2's guideline G2: at EQUAL FLOPs, more groups cost more memory traffic. A 1x1 group
# conv with c channels in and out on h x w pixels: FLOPs 2hwc^2/g, memory access hw(2c) + c^2/g.
def mac_1x1(c: int, g: int, hw: int) -> float:
    return hw * 2 * c + c * c / g


hw = 56 * 56
# 16 groups, not 4: at 4 groups (2.0x the traffic) one CI run measured only 1.04x, within noise.
widths = {1: 128, 16: 512}                                      # c^2 / g constant
assert widths[1] ** 2 / 1 == widths[16] ** 2 / 16                # the same FLOPs
claim("3.9×", mac_1x1(widths[16], 16, hw) / mac_1x1(widths[1], 1, hw))
same_flops = {f"g={g}": nn.Conv2d(c, c, 1, groups=g, bias=False) for g, c in widths.items()}
ms_g = cpu_ms(same_flops, {f"g={g}": torch.randn(1, c, 56, 56) for g, c in widths.items()})
claim("1.3–3.5×", ms_g["g=16"] / ms_g["g=1"])           # slower, at the same FLOPs: 1.9-2.3x idle or loaded
# --8<-- [end:latency]


# --8<-- [start:memory]
def saved_activation_bytes(block: nn.Module, x: torch.Tensor) -> int:
    """Bytes of non-parameter tensors autograd keeps for the backward pass (each storage once)."""
    params = {p.data_ptr() for p in block.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params and t.numel() > 1024:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x.requires_grad_())
    return sum(seen.values())


conv_bn_relu = nn.Sequential(nn.Conv2d(M, N, 3, padding=1, bias=False), nn.BatchNorm2d(N), nn.ReLU())
sep_block = nn.Sequential(nn.Conv2d(M, M, 3, padding=1, groups=M, bias=False), nn.BatchNorm2d(M), nn.ReLU(),
                          nn.Conv2d(M, N, 1, bias=False), nn.BatchNorm2d(N), nn.ReLU())
xm = torch.randn(8, M, 28, 28)
mem_ratio = saved_activation_bytes(sep_block, xm.clone()) / saved_activation_bytes(conv_bn_relu, xm.clone())
assert math.isclose(mem_ratio, 5 / 3)
claim("1.67×", mem_ratio)       # 5 saved activations against 3: fewer FLOPs, more memory to train
# In a network the block's input is the previous block's output, already kept: each further block
# adds 4 tensors (separable) against 2 (dense).
two = lambda make: nn.Sequential(make(), make())
extra_sep = saved_activation_bytes(two(lambda: sep_block), xm.clone()) - saved_activation_bytes(sep_block, xm.clone())
extra_dense = (saved_activation_bytes(two(lambda: conv_bn_relu), xm.clone())
               - saved_activation_bytes(conv_bn_relu, xm.clone()))
claim("2×", extra_sep / extra_dense)
# --8<-- [end:memory]

print(f"FLOP ratio {1 / ratio:.2f}x; CPU ms {', '.join(f'{k_}={v:.2f}' for k_, v in ms.items())}")
print(f"separable speed-up {speedup:.2f}x; depthwise: {dw_flop_share:.1%} of FLOPs, {dw_time_share:.1%} of time; "
      f"g=64 {ms['standard'] / ms['groups=64']:.2f}x; "
      f"1x1 same FLOPs g=16/g=1 {ms_g['g=16'] / ms_g['g=1']:.2f}x; AI {ai}; memory x{mem_ratio:.2f}")

# The figure: a roofline for an A100 in FP32 (datasheet: 19.5 TFLOP/s, 1,555 GB/s on the 40 GB model),
# with the layers above placed by their arithmetic intensity.
PEAK, BW, BW_80GB, TF32 = 19.5e12, 1.555e12, 2.039e12, 156e12
ridge = PEAK / BW
claim("12.5 FLOPs per byte", ridge)
claim("9.6–12.5 FLOPs per byte", PEAK / BW_80GB), claim("9.6–12.5 FLOPs per byte", ridge)
# The depthwise conv's attainable share of the peaks: bandwidth x intensity / peak.
claim("18–23%", ai["depthwise 3x3"] * BW / PEAK), claim("18–23%", ai["depthwise 3x3"] * BW_80GB / PEAK)
claim("2–3%", ai["depthwise 3x3"] * BW / TF32), claim("2–3%", ai["depthwise 3x3"] * BW_80GB / TF32)
fig, ax = plt.subplots(figsize=(6.4, 3.8))
xs = np.logspace(-0.5, 3, 200)
ax.loglog(xs, np.minimum(PEAK, xs * BW) / 1e12, c="0.3", lw=1.5)
ax.axvline(ridge, c="0.7", ls=":", lw=1)
ax.text(ridge * 1.1, 1.2, f"ridge {ridge:.1f} FLOPs/byte", fontsize=8, color="0.4")
groups = [1, 2, 4, 8, 16, 32, 64, 128]
g_ai = [intensity(M, N, 3, g, H * W) for g in groups]
claim("32 groups", min(g for g, a in zip(groups, g_ai) if a < ridge))   # the first memory-bound one
ax.plot(g_ai, np.minimum(PEAK, np.array(g_ai) * BW) / 1e12, "o", c="tab:blue", ms=4, label="3x3 conv, groups 1 to 128")
for g, a in zip(groups, g_ai):
    if g in (1, 8, 128):
        ax.annotate(f"g={g}", (a, min(PEAK, a * BW) / 1e12), textcoords="offset points", xytext=(4, -11), fontsize=7)
pw = ai["pointwise 1x1"]
ax.plot([pw], [min(PEAK, pw * BW) / 1e12], "s", c="tab:orange", label="pointwise 1x1")
assert g_ai[-1] == ai["depthwise 3x3"] and g_ai[0] == ai["standard 3x3"]
ax.set(xlabel="arithmetic intensity (FLOPs per byte, fp32)", ylabel="attainable TFLOP/s",
       title="Roofline of an A100 in FP32, the layers of the table above")
ax.legend(fontsize=8, loc="lower right")
save(fig, "cv-deep-learning", "depthwise-roofline")
