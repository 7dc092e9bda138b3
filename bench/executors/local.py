"""Local executor: in-process, one cell at a time; or a pool of worker processes (``workers: N``).

The pool is for multi-GPU boxes: each worker is a spawned process that owns one GPU
(``CUDA_VISIBLE_DEVICES``, round-robin over the visible ones) and runs cells sent to
it one at a time; results stream back as cells finish. A worker that dies (a
segfault, the OOM killer) fails only the cell it was running and is replaced.
Workers exit on their own when the driver dies, even by SIGKILL.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from bench.config import Cell, ConfigError
from bench.executors import CellFn, cell_threads, error_text, run_in_worker
from bench.runner import CellResult, run_cell

log = logging.getLogger("bench.executors")


def _orphan_watch(parent_pid: int) -> None:
    """Exit when the driver is gone: a killed driver must not leave GPUs busy."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _serve(conn: Connection, parent_pid: int, fn: CellFn, threads: int) -> None:
    """A pool worker: receive (cell, cache_root, done), send back its CellResult, until told to stop."""
    threading.Thread(target=_orphan_watch, args=(parent_pid,), daemon=True).start()
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        cell, cache_root, done = msg
        result = run_in_worker(fn, cell, cache_root, done, threads)
        try:
            conn.send(result)
        except Exception as e:  # portable() makes this rare; the cell still comes back, failed
            conn.send(CellResult(cell, error=f"result could not be sent back: {error_text(e)}"))


def visible_gpus() -> list[str]:
    """Device ids this process may use, as CUDA_VISIBLE_DEVICES spells them (empty on CPU)."""
    import torch

    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [s.strip() for s in env.split(",") if s.strip()] if env else []
    return ids or [str(i) for i in range(torch.cuda.device_count())]


class _Worker:
    def __init__(self, ctx: Any, gpu: str | None, fn: CellFn, threads: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, os.getpid(), fn, threads), daemon=True)
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpu is not None:  # a spawned child starts with this environment, before torch loads
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        try:
            self.proc.start()
        finally:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved
        child.close()  # so that recv() sees EOF when the worker dies
        self.gpu = gpu
        self.cell: Cell | None = None

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class LocalExecutor:
    """``workers``: None runs cells in this process; N >= 1 runs them in N worker processes.
    ``gpus``: device ids for the pool (default: every visible GPU). ``resources``: the
    matrix's per-cell request; its ``num_cpus`` sets each cell's CPU threads."""

    def __init__(self, workers: int | None = None, gpus: list[str] | None = None,
                 resources: dict[str, Any] | None = None, fn: CellFn = run_cell):
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"local executor: workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self.gpus = [str(g) for g in gpus] if gpus is not None else None
        self.threads = cell_threads(resources)
        self.fn = fn

    def map(self, cells: list[Cell], cache_root: Path, done: frozenset[str]) -> Iterator[CellResult]:
        if self.workers is None:
            for cell in cells:
                yield run_in_worker(self.fn, cell, cache_root, done, self.threads)
            return
        yield from self._pool(cells, cache_root, done)

    def _pool(self, cells: list[Cell], cache_root: Path, done: frozenset[str]) -> Iterator[CellResult]:
        ctx = mp.get_context("spawn")  # CUDA cannot be forked
        gpus = self.gpus if self.gpus is not None else visible_gpus()
        n = min(self.workers or 1, len(cells))
        slots = [gpus[i % len(gpus)] if gpus else None for i in range(n)]
        todo = deque(cells)
        workers = [_Worker(ctx, g, self.fn, self.threads) for g in slots]
        log.info("local pool: %d workers%s", n, f" on GPUs {slots}" if gpus else "")
        try:
            while todo or any(w.cell is not None for w in workers):
                for i, w in enumerate(workers):
                    if w.cell is None and todo:
                        try:
                            w.conn.send((todo[0], str(cache_root), done))
                        except OSError:  # died while idle: the cell has not started, so no blame
                            log.warning("local pool: an idle worker died (exit code %s); replacing it",
                                        w.proc.exitcode)
                            w.conn.close()
                            workers[i] = w = _Worker(ctx, w.gpu, self.fn, self.threads)
                            w.conn.send((todo[0], str(cache_root), done))
                        w.cell = todo.popleft()
                busy = {w.conn: w for w in workers if w.cell is not None}
                for conn in wait(list(busy)):
                    w = busy[conn]
                    try:
                        result = conn.recv()
                    except (EOFError, OSError) as e:  # the worker died mid-cell
                        w.proc.join(timeout=5)
                        reason = f"worker process died (exit code {w.proc.exitcode})"
                        log.error("cell %s failed: %s", w.cell.label, reason)
                        result = CellResult(w.cell, error=reason if isinstance(e, EOFError) else
                                            f"{reason}: {error_text(e)}")
                        workers.remove(w)
                        w.conn.close()
                        if todo:  # replace it while there is work for it
                            workers.append(_Worker(ctx, w.gpu, self.fn, self.threads))
                    else:
                        w.cell = None
                    yield result
        finally:
            for w in workers:
                if w.cell is not None and w.proc.is_alive():
                    w.proc.kill()  # the driver stops early: don't finish a cell nobody will log
                w.stop()
