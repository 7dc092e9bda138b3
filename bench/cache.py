"""Content-addressed checkpoint cache for the cell's reference models (original, retrain, references).

Keyed by a hash of everything that determines the model, so a second run of a
matrix trains nothing again (solo-learn's config-identity reuse). Safe under
concurrency: one file lock per key makes the model computed once across workers,
writes go to a temp file and are renamed into place, and a sha256 stored beside
each checkpoint detects a corrupt or truncated file, which is logged and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

log = logging.getLogger("bench.cache")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ModelCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.pt", self.root / f"{key}.json"

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The checkpoint and its metadata, or None when absent or corrupt (corrupt files are removed)."""
        ckpt, meta_path = self.paths(key)
        if not ckpt.exists() or not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            blob = ckpt.read_bytes()
            if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
                raise ValueError("checksum mismatch")
            state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, corrupt, half-written by a killed process
            log.warning("cache: checkpoint %s is corrupt (%s); rebuilding it", ckpt.name, e)
            ckpt.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return None
        return state, meta

    def save(self, key: str, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        ckpt, meta_path = self.paths(key)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
        blob = buf.getvalue()
        _atomic_write(ckpt, blob)
        meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest()}
        _atomic_write(meta_path, json.dumps(meta, indent=1, default=str).encode())

    def get_or_build(
        self, key: str, build: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], bool]:
        """(state, meta, hit). ``build`` runs at most once per key across processes."""
        hit = self.load(key)
        if hit is not None:
            return hit[0], hit[1], True
        with FileLock(str(self.root / f".{key}.lock")):
            hit = self.load(key)  # another worker may have built it while we waited
            if hit is not None:
                return hit[0], hit[1], True
            state, meta = build()
            self.save(key, state, meta)
        return state, meta, False
