"""Capacity planning arithmetic, and a discrete-event simulation of dynamic batching on one GPU."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from _figures import save

rng = np.random.default_rng(0)


# --8<-- [start:capacity]
def peak_qps(daily_users: float, requests_per_user: float, peak_factor: float) -> float:
    return daily_users * requests_per_user / 86_400 * peak_factor


def gpus_needed(qps: float, per_gpu_throughput: float, target_utilisation: float = 0.6,
                spare: int = 1) -> int:
    """Replicas to serve the peak at a safe utilisation, plus spare capacity for a failed node."""
    return math.ceil(qps / (per_gpu_throughput * target_utilisation)) + spare


avg = peak_qps(10e6, 20, peak_factor=1)
peak = peak_qps(10e6, 20, peak_factor=3)
assert round(avg) == 2315 and round(peak) == 6944          # 10M users x 20 requests a day
# Suppose a load test measured 1,200 images/s per GPU at the batch size that meets the latency SLO.
assert gpus_needed(peak, 1200) == 11                       # 10 at 60% utilisation, plus 1 spare
assert gpus_needed(peak * (1 - 0.3), 1200) == 8            # a 30% cache hit rate saves 3 GPUs
# Little's law: requests in flight = arrival rate x time in system.
assert round(peak * 0.050) == 347                          # at 50 ms per request
# --8<-- [end:capacity]


# --8<-- [start:simulate]
def simulate(rate: float, n: int, a_ms: float, b_ms: float, max_batch: int, max_wait_ms: float):
    """One GPU, Poisson arrivals at `rate` per second, a batch of k takes a + b*k ms.
    The server starts a batch when max_batch requests wait, or when the oldest has waited max_wait
    (immediately, if the server was busy longer than that). max_batch=1 means no batching."""
    arrivals = np.cumsum(rng.exponential(1000 / rate, n))      # ms
    done = np.empty(n)
    t_free, i = 0.0, 0
    while i < n:
        deadline = max(arrivals[i] + max_wait_ms, t_free)
        full_at = i + max_batch - 1
        if full_at < n and arrivals[full_at] <= deadline:          # a full batch is ready first
            start, size = max(t_free, arrivals[full_at]), max_batch
        else:                                                      # go with whatever is waiting
            start = deadline
            size = min(max_batch, int(np.searchsorted(arrivals, deadline, side="right")) - i)
        t_free = start + a_ms + b_ms * size
        done[i:i + size] = t_free
        i += size
    latency = done - arrivals
    throughput = n / (done[-1] - arrivals[0]) * 1000               # completed per second
    return throughput, float(np.percentile(latency, 99)), float(np.mean(latency))


A_MS, B_MS = 5.0, 1.0           # fixed launch/transfer cost, then 1 ms per image
capacity_b1 = 1000 / (A_MS + B_MS)               # 167 req/s without batching
capacity_b32 = 32 * 1000 / (A_MS + 32 * B_MS)    # 865 req/s at batch 32
results = {}
for rate in (20, 150, 400, 700):
    results[rate] = {
        "no batching": simulate(rate, 20_000, A_MS, B_MS, max_batch=1, max_wait_ms=0),
        "dynamic batching": simulate(rate, 20_000, A_MS, B_MS, max_batch=32, max_wait_ms=4),
    }

# Light load: waiting up to 4 ms for companions costs a few ms on average.
assert results[20]["dynamic batching"][2] > results[20]["no batching"][2] + 2
# 150 req/s is 90% of the unbatched capacity: queueing inflates the tail; batching removes it.
rho, service = 150 / capacity_b1, A_MS + B_MS                      # M/D/1 queue: mean wait
md1_mean = service + rho * service / (2 * (1 - rho))               # = 6 + 27 = 33 ms
assert abs(results[150]["no batching"][2] / md1_mean - 1) < 0.15  # the simulator agrees with theory
assert results[150]["no batching"][1] > 8 * results[150]["dynamic batching"][1]
# Above 167 req/s the unbatched server cannot keep up: the queue, and latency, grow without bound.
for rate in (400, 700):
    no_b, dyn = results[rate]["no batching"], results[rate]["dynamic batching"]
    assert no_b[0] < 1.02 * capacity_b1 and no_b[1] > 10_000         # p99 beyond 10 s and growing
    assert abs(dyn[0] / rate - 1) < 0.03                             # batching keeps up
assert results[400]["dynamic batching"][1] < 40                      # with p99 under 40 ms...
assert 40 < results[700]["dynamic batching"][1] < 80                 # ...until it nears its own capacity
# --8<-- [end:simulate]

loads = np.array([20, 50, 100, 130, 150, 160, 200, 300, 400, 500, 600, 700, 780])
curves = {"no batching": (1, 0), "dynamic batching (max 32, wait 4 ms)": (32, 4)}
fig, ax = plt.subplots(figsize=(6.5, 3.5))
for label, (mb, mw) in curves.items():
    p99 = [simulate(r, 5000, A_MS, B_MS, max_batch=mb, max_wait_ms=mw)[1] for r in loads]
    ax.plot(loads, p99, "o-", ms=3, label=label)
ax.axvline(capacity_b1, color="tab:blue", ls=":", lw=1)
ax.axvline(capacity_b32, color="tab:orange", ls=":", lw=1)
ax.text(capacity_b1 + 8, 2e3, "capacity at batch 1", fontsize=7, color="tab:blue")
ax.text(capacity_b32 - 230, 2e3, "capacity at batch 32", fontsize=7, color="tab:orange")
ax.axhline(50, color="0.5", ls="--", lw=1)
ax.text(25, 58, "50 ms SLO", fontsize=7, color="0.4")
ax.set(yscale="log", xlabel="offered load (requests/s, Poisson)", ylabel="p99 latency (ms)",
       title="One GPU, batch of k takes 5 + k ms")
ax.legend(fontsize=8, loc="upper left")
save(fig, "production", "dynamic-batching-p99")

for rate, r in results.items():
    print(rate, {k: (round(v[0]), round(v[1], 1), round(v[2], 1)) for k, v in r.items()})
print(f"capacity batch 1 {capacity_b1:.0f}/s, batch 32 {capacity_b32:.0f}/s; peak QPS {peak:.0f}")
