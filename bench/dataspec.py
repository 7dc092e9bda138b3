"""Naming and locating data sets without loading them: a spec's syntax, the data root, and the
error for absent data. Torch-free, so configuration checks and the CLI's error handling import it
for free (:mod:`bench.data` re-exports all three)."""

from __future__ import annotations

import os
from pathlib import Path


class DataUnavailableError(RuntimeError):
    """The dataset is not on disk (and cannot be downloaded); the message says how to get it."""


def user_cache() -> Path:
    """The user's cache folder of the suite (``$XDG_CACHE_HOME/unlearn-bench``, else ``~/.cache/unlearn-bench``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unlearn-bench"


def default_data_root() -> Path:
    """``$BENCH_DATA`` or the user's cache dir (``~/.cache/unlearn-bench/data``)."""
    env = os.environ.get("BENCH_DATA")
    if env:
        return Path(env).expanduser()
    return user_cache() / "data"


def parse_dataset(spec: str) -> tuple[str, str | None]:
    """``"imagefolder:/path"`` -> ``("imagefolder", "/path")``; ``"cifar10"`` -> ``("cifar10", None)``."""
    name, _, arg = spec.partition(":")
    return name, (arg or None)
