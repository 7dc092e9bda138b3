"""Content-addressed checkpoint cache for the cell's reference models (original, retrain, references).

Keyed by a hash of everything that determines the model (bench/runner.py ``trained``: the
recipe, the training indices, the seed, the encoder's code version and the data's content,
``ImageData.fingerprint``, so data edited in place is never served a model of the old data),
so a second run of a matrix trains nothing again (solo-learn's config-identity reuse). Safe under
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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

log = logging.getLogger("bench.cache")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the whole new one, never a part.

    The temp name is unique across hosts (a shared cache on NFS sees several machines
    whose pids collide); the directory is synced so the rename survives a crash."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # directories cannot be opened everywhere (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ModelCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.pt", self.root / f"{key}.json"

    def read(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | str | None:
        """The checkpoint and its metadata; None when absent; a string saying what is wrong
        when present but unusable (truncated, corrupt, or its checksum record missing)."""
        ckpt, meta_path = self.paths(key)
        if not ckpt.exists():
            return None
        if not meta_path.exists():  # the writer died between the checkpoint and its record
            return "no checksum record beside it"
        try:
            meta = json.loads(meta_path.read_text())
            blob = ckpt.read_bytes()
            if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
                return f"checksum mismatch ({len(blob)} bytes)"
            state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as e:
            return f"unreadable: {type(e).__name__}: {e}"
        return state, meta

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The checkpoint and its metadata, or None when absent or unusable (read-only)."""
        hit = self.read(key)
        return hit if isinstance(hit, tuple) else None

    def save(self, key: str, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
        """Checkpoint first, then the json holding its sha256: the json is the commit record.
        Returns the metadata as stored (with ``sha256``)."""
        ckpt, meta_path = self.paths(key)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
        blob = buf.getvalue()
        _atomic_write(ckpt, blob)
        meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest()}
        _atomic_write(meta_path, json.dumps(meta, indent=1, default=str).encode())
        return meta

    def get_or_build(
        self, key: str, build: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], bool]:
        """(state, meta, hit). ``build`` runs at most once per key across processes.

        Unusable files are judged and replaced only under the key's lock: a reader
        outside it may see a checkpoint another worker is replacing right now."""
        hit = self.load(key)
        if hit is not None:
            return hit[0], hit[1], True
        with FileLock(str(self.root / f".{key}.lock")):
            found = self.read(key)  # another worker may have built it while we waited
            if isinstance(found, tuple):
                return found[0], found[1], True
            if isinstance(found, str):
                log.warning("cache: checkpoint %s is corrupt (%s); rebuilding it", key, found)
            for debris in self.root.glob(f".{key}.*.tmp"):  # from writers killed mid-write
                debris.unlink(missing_ok=True)
            state, meta = build()
            meta = self.save(key, state, meta)
        return state, meta, False
