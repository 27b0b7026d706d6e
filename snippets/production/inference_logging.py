"""A logging and metrics wrapper around a predictor: one JSON record per request, input fingerprints instead of
raw data, errors logged with the request id, Prometheus-style counters and histograms, and SLO arithmetic."""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import math
import re
import traceback
import uuid
from bisect import bisect_left
from collections import defaultdict
from pathlib import Path

import numpy as np

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:slo]
minutes_30d = 30 * 24 * 60
claim("43.2", (1 - 0.999) * minutes_30d)                # 99.9%: minutes of downtime per 30 days
claim("4.32 minutes", (1 - 0.9999) * minutes_30d)       # 99.99%
claim("30,000", round((1 - 0.999) * 1e6 * 30))          # or failed requests at 1M requests a day
# Burn rate: how fast the budget is spent relative to plan. Budget share used = rate x window / 30 days.
hours_30d = 30 * 24
claim("2% of the budget", 14.4 * 1 / hours_30d)         # 14.4x for 1 hour (page)
claim("5%", 6 * 6 / hours_30d)                          # 6x for 6 hours (page)
claim("10%", 1 * 72 / hours_30d)                        # 1x for 3 days (ticket)
# --8<-- [end:slo]


# --8<-- [start:metrics]
class Counter:
    def __init__(self, name: str, help_: str):
        self.name, self.help, self.values = name, help_, defaultdict(float)

    def inc(self, **labels) -> None:
        self.values[tuple(sorted(labels.items()))] += 1

    def expose(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for key, v in sorted(self.values.items()):
            labels = ",".join(f'{k}="{val}"' for k, val in key)
            lines.append(f"{self.name}{{{labels}}} {v:g}")
        return "\n".join(lines)


class Histogram:
    """Cumulative buckets like a Prometheus histogram: cheap to aggregate across replicas."""

    def __init__(self, name: str, help_: str, buckets: tuple[float, ...]):
        self.name, self.help, self.bounds = name, help_, list(buckets) + [math.inf]
        self.counts, self.sum, self.count = [0] * len(self.bounds), 0.0, 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bucket, as PromQL's histogram_quantile does."""
        rank, seen = q * self.count, 0
        for i, c in enumerate(self.counts):
            if seen + c >= rank:
                lo = 0.0 if i == 0 else self.bounds[i - 1]
                return lo + (self.bounds[i] - lo) * (rank - seen) / c
            seen += c
        return math.inf

    def expose(self) -> str:
        lines, cum = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"], 0
        for bound, c in zip(self.bounds, self.counts):
            cum += c
            le = "+Inf" if bound == math.inf else f"{bound:g}"
            lines.append(f'{self.name}_bucket{{le="{le}"}} {cum}')
        return "\n".join(lines + [f"{self.name}_sum {self.sum:g}", f"{self.name}_count {self.count}"])
# --8<-- [end:metrics]


# --8<-- [start:wrapper]
# The log schema: a record may carry these fields and nothing else.
SCHEMA = {"level", "msg", "schema", "request_id", "model_version", "input_fp", "user_fp", "input_shape",
          "input_dtype", "prediction", "confidence", "status", "latency_ms", "error_type", "error", "where"}
ARRAY_DUMP = re.compile(r"(?:-?\d+(?:\.\d+)?[,\s]+){16,}")        # 16+ numbers in a row: a tensor's repr
BLOB = re.compile(r"[A-Za-z0-9+/=]{64,}")                          # base64 or hex of raw bytes
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def scrub(text: str, limit: int = 300) -> str:
    """Free text (exception messages) may quote the input: cut what looks like data or personal data."""
    text = EMAIL.sub("<email>", ARRAY_DUMP.sub("<array> ", BLOB.sub("<blob>", text)))
    return text[:limit]


def leaks(record: dict) -> list[str]:
    """Why a log record could carry raw data or personal data: unknown fields, dumps, blobs, e-mails."""
    problems = [f"field {k!r} is not in the schema" for k in record.keys() - SCHEMA]
    for k, v in record.items():
        text = json.dumps(v)
        if len(text) > 400 or ARRAY_DUMP.search(text) or BLOB.search(text) or EMAIL.search(text):
            problems.append(f"field {k!r} looks like data")
    return problems


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"level": record.levelname, "msg": record.getMessage(), **record.fields},
                          sort_keys=True)


class InputError(ValueError):
    """The request is malformed: the client's fault, not the model's."""


class LoggedPredictor:
    def __init__(self, predict, model_version: str, logger: logging.Logger, secret: bytes,
                 clock, fallback=None):
        self.predict, self.version, self.log, self.secret = predict, model_version, logger, secret
        self.clock, self.fallback = clock, fallback
        self.requests = Counter("inference_requests_total", "Requests by outcome.")
        self.latency = Histogram("inference_latency_seconds", "End-to-end model latency.",
                                 (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))

    def fingerprint(self, data: bytes) -> str:
        """Keyed hash: equal inputs can be matched across logs, but nobody can hash a known photo
        and look it up without the key."""
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()[:16]

    def __call__(self, image: np.ndarray, user_id: str, request_id: str | None = None):
        request_id = request_id or uuid.uuid4().hex
        fields = {"schema": 2, "request_id": request_id, "model_version": self.version,
                  "input_fp": self.fingerprint(image.tobytes()), "user_fp": self.fingerprint(user_id.encode()),
                  "input_shape": list(image.shape), "input_dtype": str(image.dtype)}
        start = self.clock()
        try:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise InputError(f"expected HxWx3 uint8, got {image.shape} {image.dtype}")
            label, confidence = self.predict(image)
            status, result = "ok", (label, confidence)
            fields.update(prediction=label, confidence=round(confidence, 4))
        except InputError as exc:
            status, result = "rejected", None
            fields.update(error_type=type(exc).__name__, error=scrub(str(exc)))
        except Exception as exc:                       # the model or runtime failed: keep enough to debug it
            frames = traceback.extract_tb(exc.__traceback__)[-3:]
            fields.update(error_type=type(exc).__name__, error=scrub(str(exc)),
                          where=[f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames])
            if self.fallback is None:
                self._finish(request_id, "error", start, fields, level=logging.ERROR)
                raise
            status, result = "fallback", self.fallback
        self._finish(request_id, status, start, fields,
                     level=logging.INFO if status == "ok" else logging.WARNING)
        if status == "rejected":
            raise InputError(fields["error"])
        return result

    def _finish(self, request_id, status, start, fields, level) -> None:
        elapsed = self.clock() - start
        self.latency.observe(elapsed)
        self.requests.inc(model_version=self.version, status=status)
        fields.update(status=status, latency_ms=round(1000 * elapsed, 2))
        self.log.log(level, "inference", extra={"fields": fields})
# --8<-- [end:wrapper]


# --8<-- [start:test]
class FakeClock:
    """Deterministic time for tests: each prediction advances it by a simulated latency."""
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


clock = FakeClock()
true_latencies = []


def model(image: np.ndarray) -> tuple[str, float]:
    latency = float(rng.lognormal(np.log(0.02), 0.5))       # ~20 ms median, a heavy tail
    clock.now += latency
    true_latencies.append(latency)
    if image[0, 0, 0] == 255:                               # a poison pixel makes the runtime fail
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    brightness = float(image.mean()) / 255
    return ("day" if brightness > 0.5 else "night"), max(brightness, 1 - brightness)


stream = io.StringIO()
logger = logging.getLogger("inference")
logger.handlers[:] = [logging.StreamHandler(stream)]
logger.handlers[0].setFormatter(JsonFormatter())
logger.setLevel(logging.INFO)
logger.propagate = False

serve = LoggedPredictor(model, "detector-v7", logger, secret=b"rotate-me", clock=clock)
email = "alice@example.com"
n_ok, outcomes = 0, []
for i in range(1000):
    image = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)       # 255 never drawn: no poison
    if i % 100 == 7:
        image[0, 0, 0] = 255                                       # 10 runtime failures
    if i % 250 == 3:
        image = image[..., 0]                                      # 4 malformed requests
    try:
        serve(image, user_id=email, request_id=f"req-{i:04d}")
        outcomes.append("ok")
    except InputError:
        outcomes.append("rejected")
    except RuntimeError:
        outcomes.append("error")

observed = true_latencies + [0.0] * outcomes.count("rejected")   # rejects never reach the model
records = [json.loads(line) for line in stream.getvalue().splitlines()]
assert len(records) == 1000                                         # exactly one record per request
assert [r["request_id"] for r in records] == [f"req-{i:04d}" for i in range(1000)]
assert all({"model_version", "input_fp", "latency_ms", "status"} <= r.keys() for r in records)
assert email not in stream.getvalue()                               # no personal data...
assert not any(leaks(r) for r in records)                           # ...and nothing outside the schema
# The check catches the leaks that really happen: a tensor's repr, base64 bytes, an e-mail in a message.
leaky = [dict(records[0], error=f"bad values {image.tolist()}"),
         dict(records[0], error=base64.b64encode(image.tobytes()).decode()),
         dict(records[0], error=f"no quota for {email}"), dict(records[0], pixels=[1, 2, 3])]
assert all(leaks(r) for r in leaky) and not any(leaks(dict(r, error=scrub(r["error"]))) for r in leaky[:3])
errors = [r for r in records if r["status"] == "error"]
assert len(errors) == 10 and all(r["error_type"] == "RuntimeError" and r["level"] == "ERROR" for r in errors)
assert all("illegal memory access" in r["error"] and r["where"][-1].endswith("in model") for r in errors)
assert outcomes.count("error") == 10 and outcomes.count("rejected") == 4   # re-raised to the caller

# With a fallback, the same failure is logged and mapped to a safe default instead of raised.
serve_fb = LoggedPredictor(model, "detector-v7", logger, secret=b"rotate-me", clock=clock,
                           fallback=("unknown", 0.0))
poison = np.zeros((8, 8, 3), np.uint8)
poison[0, 0, 0] = 255
assert serve_fb(poison, user_id=email, request_id="req-fb") == ("unknown", 0.0)
last = json.loads(stream.getvalue().splitlines()[-1])
assert (last["request_id"], last["status"], last["error_type"]) == ("req-fb", "fallback", "RuntimeError")

# Metrics agree with the logs, and the histogram's p99 lands in the right bucket.
counts = {dict(k)["status"]: v for k, v in serve.requests.values.items()}
assert counts == {"ok": 986, "error": 10, "rejected": 4}
assert serve.latency.count == 1000
true_p99 = float(np.percentile(observed, 99))
est_p99 = serve.latency.quantile(0.99)
assert bisect_left(serve.latency.bounds, est_p99) == bisect_left(serve.latency.bounds, true_p99)
assert 50e-3 < true_p99 < est_p99 < 100e-3      # both in the 50-100 ms bucket; resolution is the bucket
claim("64 ms", 1000 * true_p99)
claim("87 ms", 1000 * est_p99)
# --8<-- [end:test]

print(records[0])
print(errors[0])
print(serve.requests.expose())
print(serve.latency.expose())
print(f"p99 latency: true {1000 * true_p99:.1f} ms, from histogram {1000 * est_p99:.1f} ms")
