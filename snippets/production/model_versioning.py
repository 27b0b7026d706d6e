"""A model registry in 100 lines: content-addressed artifacts, lineage, gated stage promotion, one-step rollback."""
from __future__ import annotations

import hashlib
import io
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vault.claims import claim

rng = np.random.default_rng(0)


# --8<-- [start:registry]
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ModelVersion:
    name: str
    version: int                  # registry-assigned, monotonically increasing
    artifact_sha256: str          # what exactly is deployed
    data_version: str             # lineage: which data...
    code_commit: str              # ...which code...
    params: dict                  # ...which configuration
    metrics: dict                 # offline evaluation, incl. slices and latency
    signature: dict               # the input/output contract the serving API relies on
    stage: str = "none"           # none -> staging -> production -> archived
    history: list = field(default_factory=list)   # audit trail: (stage, reason, who)


class Registry:
    def __init__(self, root: Path):
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "models").mkdir(exist_ok=True)

    def _record(self, name: str, version: int) -> Path:
        return self.root / "models" / name / f"v{version}.json"

    def _save(self, mv: ModelVersion) -> None:
        self._record(mv.name, mv.version).write_text(json.dumps(asdict(mv), indent=1))

    def get(self, name: str, version: int) -> ModelVersion:
        return ModelVersion(**json.loads(self._record(name, version).read_text()))

    def versions(self, name: str) -> list[ModelVersion]:
        files = (self.root / "models" / name).glob("v*.json")
        return sorted((self.get(name, int(f.stem[1:])) for f in files), key=lambda m: m.version)

    def register(self, name: str, artifact: bytes, **meta) -> ModelVersion:
        digest = sha256(artifact)
        for mv in self.versions(name):                 # same bytes: same model, no new version
            if mv.artifact_sha256 == digest:
                return mv
        blob = self.root / "blobs" / digest            # content-addressed, written once
        blob.write_bytes(artifact)
        (self.root / "models" / name).mkdir(exist_ok=True)
        mv = ModelVersion(name, len(self.versions(name)) + 1, digest, **meta)
        self._save(mv)
        return mv

    def load(self, name: str, version: int) -> bytes:
        data = (self.root / "blobs" / self.get(name, version).artifact_sha256).read_bytes()
        if sha256(data) != self.get(name, version).artifact_sha256:
            raise ValueError(f"{name} v{version}: artifact does not match its hash")
        return data

    def production(self, name: str) -> ModelVersion | None:
        return next((m for m in self.versions(name) if m.stage == "production"), None)

    def set_stage(self, name: str, version: int, stage: str, reason: str, by: str) -> None:
        if stage == "production":                      # at most one production version
            current = self.production(name)
            if current is not None and current.version != version:
                current.stage = "archived"
                current.history.append(("archived", f"replaced by v{version}", by))
                self._save(current)
        mv = self.get(name, version)
        mv.stage = stage
        mv.history.append((stage, reason, by))         # who moved which version, and why
        self._save(mv)
# --8<-- [end:registry]


# --8<-- [start:gate]
def promotion_gate(candidate: ModelVersion, current: ModelVersion | None,
                   p99_budget_ms: float = 40.0, max_slice_drop: float = 0.01) -> list[str]:
    """Reasons to refuse promotion; an empty list means the candidate may go to production."""
    problems = []
    if candidate.metrics["p99_ms"] > p99_budget_ms:
        problems.append(f"p99 {candidate.metrics['p99_ms']} ms over the {p99_budget_ms} ms budget")
    if current is None:
        return problems
    if candidate.signature != current.signature:
        problems.append("signature changed: a breaking API change, needs a new major API version")
    if candidate.metrics["mAP"] <= current.metrics["mAP"]:
        problems.append("no improvement in overall mAP")
    for slice_name, value in current.metrics["slices"].items():   # no regression on key slices
        if candidate.metrics["slices"][slice_name] < value - max_slice_drop:
            problems.append(f"slice '{slice_name}' drops {value - candidate.metrics['slices'][slice_name]:.3f}")
    return problems
# --8<-- [end:gate]


def fake_weights(seed: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(seed).standard_normal(1000).astype(np.float32))
    return buf.getvalue()


def data_version(files: dict[str, bytes]) -> str:
    """Like DVC: hash every file, then hash the sorted manifest of (path, hash)."""
    manifest = "\n".join(f"{path} {sha256(blob)}" for path, blob in sorted(files.items()))
    return "data-" + sha256(manifest.encode())[:12]


# --8<-- [start:lifecycle]
signature = {"input": "uint8[N,640,640,3] RGB", "output": "boxes[N,K,6]", "labels": ["person", "car", "bike"]}
dataset_v1 = {"train/0001.jpg": b"frame-1", "train/0002.jpg": b"frame-2"}
dataset_v2 = {**dataset_v1, "train/0003.jpg": b"night-frame-3"}       # night images added
dv1, dv2 = data_version(dataset_v1), data_version(dataset_v2)
assert dv1 != dv2 and data_version(dict(reversed(dataset_v1.items()))) == dv1   # order does not matter

with tempfile.TemporaryDirectory() as tmp:
    reg = Registry(Path(tmp))
    v1 = reg.register("detector", fake_weights(1), data_version=dv1, code_commit="a1b2c3d",
                      params={"lr": 0.01, "epochs": 50}, signature=signature,
                      metrics={"mAP": 0.612, "p99_ms": 31.0, "slices": {"night": 0.48, "rain": 0.55}})
    assert promotion_gate(v1, None) == []
    reg.set_stage("detector", 1, "production", "first release", by="ci-gate")

    v2 = reg.register("detector", fake_weights(2), data_version=dv2, code_commit="e4f5a6b",
                      params={"lr": 0.01, "epochs": 60}, signature=signature,
                      metrics={"mAP": 0.634, "p99_ms": 33.0, "slices": {"night": 0.57, "rain": 0.55}})
    v3 = reg.register("detector", fake_weights(3), data_version=dv2, code_commit="c7d8e9f",
                      params={"lr": 0.02, "epochs": 60}, signature=signature,
                      metrics={"mAP": 0.641, "p99_ms": 52.0, "slices": {"night": 0.60, "rain": 0.51}})
    assert [m.version for m in reg.versions("detector")] == [1, 2, 3]
    assert reg.register("detector", fake_weights(2), data_version=dv2, code_commit="e4f5a6b", params={},
                        signature=signature, metrics={}).version == 2                  # dedup by content

    # v3 has the best mAP but fails the gate twice; v2 passes.
    assert promotion_gate(v3, reg.production("detector")) == [
        "p99 52.0 ms over the 40.0 ms budget", "slice 'rain' drops 0.040"]
    claim("0.04 mAP", v1.metrics["slices"]["rain"] - v3.metrics["slices"]["rain"])   # best overall, worse on rain
    assert promotion_gate(v2, reg.production("detector")) == []
    reg.set_stage("detector", 2, "staging", "gate passed", by="ci-gate")
    reg.set_stage("detector", 2, "production", "canary 5% -> 100%, guardrails green", by="alice")
    assert reg.production("detector").version == 2 and reg.get("detector", 1).stage == "archived"

    # Incident: v2 misbehaves on a new camera. Rollback = move the pointer, no rebuild, no retraining.
    previous = max((m for m in reg.versions("detector") if m.stage == "archived"
                    and any(s == "production" for s, _, _ in m.history)), key=lambda m: m.version)
    reg.set_stage("detector", previous.version, "production", "rollback: false alarms on camera 17", by="bob")
    assert reg.production("detector").version == 1
    assert reg.load("detector", 1) == fake_weights(1)          # exactly the bytes that ran before

    # Lineage answers "which data and code made the model that made this decision?"
    assert (reg.get("detector", 2).data_version, reg.get("detector", 2).code_commit) == (dv2, "e4f5a6b")

    # Tampering with a stored artifact is detected on load.
    blob = Path(tmp) / "blobs" / reg.get("detector", 1).artifact_sha256
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    try:
        reg.load("detector", 1)
        raise AssertionError("corrupted artifact was not detected")
    except ValueError:
        pass
    history = reg.get("detector", 1).history
# --8<-- [end:lifecycle]

assert [(s, who) for s, _, who in history] == [("production", "ci-gate"), ("archived", "alice"), ("production", "bob")]
print(f"data versions {dv1} -> {dv2}; v1 history: {history}")
print(f"v3 refused: {promotion_gate(v3, v1)}")
