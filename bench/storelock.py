"""One driver per results folder, and serialised writes to its MLflow store.

Two drivers on one store would both do all the work, or crash in MLflow's schema
migration, or log the same row twice. So a driver holds ``<results>/.bench-driver.lock``
from before it opens the store until it ends: a second one is refused with one line
naming the holder (pid, host, command, start time, kept beside the lock in
``.bench-driver.json``). The lock is an OS file lock (``flock`` through ``filelock``),
which the kernel releases however its holder ends, SIGKILL included, so a dead holder's
lock is simply taken over; the holder record it left is then overwritten.

:func:`store_writes` is a second, blocking lock for the store's few read-then-write
sequences (its creation and migration, the experiment's creation, a row's
replace-by-hash), so that any other process writing the store (``tune``, ``backfill``,
a test) is safe too.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from bench.config import ConfigError

LOCK = ".bench-driver.lock"
HOLDER = ".bench-driver.json"
WRITES = ".bench-mlflow-writes.lock"


class StoreBusyError(ConfigError):
    """Another live driver holds the results folder (one line naming it; exit 2, nothing written)."""


def holder(results_dir: Path) -> dict | None:
    """The record of the process holding (or that last held) the folder, or None."""
    try:
        return json.loads((Path(results_dir) / HOLDER).read_text())
    except (OSError, ValueError):
        return None


def describe(info: dict | None) -> str:
    if not info:
        return "a process that has not written its record yet"
    return (f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: "
            f"{info.get('command')}")


def invocation() -> str:
    """This process's command line as the user typed it (``python -m bench run ...``)."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join(["python -m bench" if prog == "__main__.py" else prog, *sys.argv[1:]])


class StoreLock:
    """``with StoreLock(results_dir):`` -- hold the folder for one driver, or raise
    :class:`StoreBusyError` at once."""

    def __init__(self, results_dir: Path, command: str | None = None):
        self.results_dir = Path(results_dir)
        self.command = command if command is not None else invocation()
        self._lock: FileLock | None = None

    def __enter__(self) -> StoreLock:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.results_dir / LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            info = None
            for _ in range(20):  # the holder writes its record right after taking the lock
                info = holder(self.results_dir)
                if info:
                    break
                time.sleep(0.05)
            raise StoreBusyError(
                f"results folder {self.results_dir} is in use by another driver ({describe(info)}): "
                "wait for it to end, or use another --results-dir"
            ) from None
        self._lock = lock
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = self.results_dir / f".{HOLDER}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.results_dir / HOLDER)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._lock is None:
            return
        info = holder(self.results_dir)
        if info and info.get("pid") == os.getpid():
            (self.results_dir / HOLDER).unlink(missing_ok=True)
        self._lock.release()
        self._lock = None


def store_writes(results_dir: Path) -> FileLock:
    """The blocking lock around one read-then-write sequence on the store (re-entrant in a
    thread, shared by every Tracker of the process on that folder)."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(results_dir).resolve() / WRITES), timeout=600, is_singleton=True)
