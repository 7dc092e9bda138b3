"""The yardsticks' features and audits, kept beside the model cache so a resumed invocation redoes neither.

A cell's original, retrain, reference retrains and floor are the same models from one
invocation to the next (their checkpoints come from the content-addressed model cache), so
their features and audits are too: adding one method to a matrix should cost that method's
unlearning and audit only. Entries are keyed by everything they are computed from (see
``CellRunner.yardstick_key``: the checkpoints' sha256, the audit views' indices, the audit
options, the auditors and their versions, the feature code's version, seed, precision and
device type), so nothing edited is ever served a stale entry. Files live in
``<cache dir>/audits/``; writes are atomic, and an unreadable entry is recomputed.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.cache import _atomic_write
from bench.features import ModelFeatures

log = logging.getLogger("bench.cache")

FIELDS = ("feats", "labels", "align_head", "align_backbone", "loss", "class_scores")  # split -> array


def _pack(mf: ModelFeatures) -> bytes:
    arrays = {f"{f}/{split}": a for f in FIELDS for split, a in getattr(mf, f).items()}
    meta = {"capabilities": sorted(mf.capabilities), "reads": sorted(mf.reads)}
    buf = io.BytesIO()
    np.savez(buf, align_views=mf.align_views, meta=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def _unpack(blob: bytes, name: str) -> ModelFeatures:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        fields: dict[str, dict[str, np.ndarray]] = {f: {} for f in FIELDS}
        for key in z.files:
            if "/" in key:
                f, split = key.split("/", 1)
                fields[f][split] = z[key]
        meta = json.loads(str(z["meta"]))
        return ModelFeatures(name=name, align_views=z["align_views"], capabilities=frozenset(meta["capabilities"]),
                             reads=frozenset(meta["reads"]), **fields)


class AuditCache:
    def __init__(self, cache_root: Path):
        self.root = Path(cache_root) / "audits"

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError:
            return None

    def _write(self, path: Path, blob: bytes) -> None:
        try:  # best effort: a read-only cache only costs recomputing next time
            self.root.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, blob)
        except OSError as e:
            log.warning("audit cache: cannot write %s (%s)", path, e)

    def features(self, key: str, name: str, build: Callable[[], ModelFeatures]) -> tuple[ModelFeatures, bool]:
        """(features, hit): those stored under ``key`` (renamed ``name``), else ``build()``'s, stored."""
        path = self.root / f"{key}.npz"
        blob = self._read(path)
        if blob is not None:
            try:
                return _unpack(blob, name), True
            except Exception as e:  # truncated or foreign: extract again
                log.warning("audit cache: features %s unreadable (%s); extracting again", key, e)
        mf = build()
        self._write(path, _pack(mf))
        return mf, False

    def audit(self, key: str, build: Callable[[], tuple[dict[str, float], list[str]]]
              ) -> tuple[dict[str, float], list[str], bool]:
        """(metrics, problems, hit). An audit in which an auditor failed is not stored: it is retried."""
        path = self.root / f"{key}.json"
        blob = self._read(path)
        if blob is not None:
            try:
                got = json.loads(blob)
                return {k: float(v) for k, v in got["metrics"].items()}, list(got["problems"]), True
            except (ValueError, KeyError, TypeError) as e:
                log.warning("audit cache: audit %s unreadable (%s); auditing again", key, e)
        metrics, problems = build()
        if not problems:
            self._write(path, json.dumps({"metrics": metrics, "problems": problems}).encode())
        return metrics, problems, False
