"""Capacity planning arithmetic, and a discrete-event simulation of dynamic batching on one GPU."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from _figures import save

from vault.claims import claim

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
claim("2,315", avg), claim("6,944", peak)                  # 10M users x 20 requests a day
# Suppose a load test measured 1,200 images/s per GPU at the batch size that meets the latency SLO.
claim("**11**", gpus_needed(peak, 1200))                   # 10 at 60% utilisation, plus 1 spare
claim("to 8", gpus_needed(peak * (1 - 0.3), 1200))         # a 30% cache hit rate saves 3 GPUs
# Little's law: requests in flight = arrival rate x time in system.
claim("347", peak * 0.050)                                 # at 50 ms per request
# Cost of the 11 GPUs running all day, at an assumed USD 2.50 per GPU-hour:
gpu_hour = 2.50
claim("USD 660", 11 * 24 * gpu_hour)                       # per day
claim("USD 3.30", 11 * 24 * gpu_hour / (avg * 86_400 / 1e6))   # per million requests
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

claim("167 requests/s", capacity_b1), claim("865 requests/s", capacity_b32)
# Light load: waiting up to 4 ms for companions costs a few ms on average.
(thr_n, p99_n, mean_n), (thr_d, p99_d, mean_d) = results[20]["no batching"], results[20]["dynamic batching"]
claim("11.9 ms", p99_n), claim("mean 6.4 ms", mean_n), claim("20/s", thr_n)
claim("11.8 ms", p99_d), claim("mean 10.0 ms", mean_d), claim("20/s", thr_d)
# 150 req/s is 90% of the unbatched capacity: queueing inflates the tail; batching removes it.
rho, service = 150 / capacity_b1, A_MS + B_MS                      # M/D/1 queue: mean wait
md1_mean = service + rho * service / (2 * (1 - rho))               # = 6 + 27 = 33 ms
claim("33 ms", md1_mean), claim("5.5×", md1_mean / service)
claim("35.7 ms", results[150]["no batching"][2])                    # the simulator agrees with theory...
assert abs(results[150]["no batching"][2] / md1_mean - 1) < 0.1     # ...to within 10%
claim("154 ms", results[150]["no batching"][1]), claim("150/s", results[150]["no batching"][0])
claim("15.5 ms", results[150]["dynamic batching"][1]), claim("151/s", results[150]["dynamic batching"][0])
claim("10×", results[150]["no batching"][1] / results[150]["dynamic batching"][1])
# Above 167 req/s the unbatched server cannot keep up: the queue, and latency, grow without bound.
for rate in (400, 700):
    no_b = results[rate]["no batching"]
    assert no_b[0] < 1.02 * capacity_b1 and no_b[1] > 10_000         # p99 beyond 10 s and growing
claim("167/s", results[400]["no batching"][0]), claim("167/s", results[700]["no batching"][0])
claim("402/s", results[400]["dynamic batching"][0]), claim("24 ms", results[400]["dynamic batching"][1])
claim("701/s", results[700]["dynamic batching"][0]), claim("52 ms", results[700]["dynamic batching"][1])
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
