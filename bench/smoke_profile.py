"""Where a run's time goes: ``python -m bench.smoke_profile [--matrix smoke] [--results-dir DIR]``.

Runs the matrix as ``python -m bench run`` does (same driver, executor and workers), by
default into a fresh temporary results folder, so cold: empty model cache and MLflow store.
Timers wrap the parts of a run and the table gives each part's seconds, *exclusive* of the
parts inside it (a method's time excludes extracting and auditing its output; a training
is not counted again under the checkpoint cache that asked for it): start-up (imports),
validation, cell set-up, trainings, the checkpoint and audit caches, each method's
unlearning, feature extraction, each auditor, figures, MLflow, the report.

Cells run by a pool of worker processes are timed inside the workers and summed over
them: with two workers their sum can reach twice the time the driver waited for them.
``rte_s`` is the unlearning time the runner itself records on each row (summed), next to
the timer's: the two differ by the method's set-up (copying the model, its data), and
retrain's is the training it is charged from the model cache, not time spent here.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # before the suite's imports: start-up counts them

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would interleave with the table (workers inherit it)


class Timers:
    """Exclusive time per label: entering a part pauses the one it is inside."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[list[Any]] = []  # [label, resumed at]

    @contextmanager
    def part(self, label: str) -> Iterator[None]:
        now = time.perf_counter()
        if self.stack:
            self.seconds[self.stack[-1][0]] += now - self.stack[-1][1]
        self.stack.append([label, now])
        self.calls[label] += 1
        try:
            yield
        finally:
            now = time.perf_counter()
            done, resumed = self.stack.pop()
            self.seconds[done] += now - resumed
            if self.stack:
                self.stack[-1][1] = now

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        return dict(self.seconds), dict(self.calls)


TIMERS = Timers()
WORKERS: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # label -> [seconds, calls] summed over workers
RTE: dict[str, float] = defaultdict(float)  # method -> sum of the rows' rte_s


def _wrap(owner: Any, attr: str, label: str | Callable[..., str]) -> None:
    inner = getattr(owner, attr)
    if getattr(inner, "_timed", False):
        return

    @functools.wraps(inner)
    def timed(*a: Any, **k: Any) -> Any:
        with TIMERS.part(label(*a, **k) if callable(label) else label):
            return inner(*a, **k)

    timed._timed = True  # type: ignore[attr-defined]
    setattr(owner, attr, timed)


def install_cell_timers() -> None:
    """Timers on the parts of a cell (in whichever process runs it); idempotent."""
    import bench.runner as runner
    from bench import registry
    from bench.auditcache import AuditCache
    from bench.cache import ModelCache

    _wrap(runner.CellRunner, "__init__", "cell set-up (data, split)")
    _wrap(runner.CellRunner, "run", "cell, rest (views, flags, hashing)")
    _wrap(runner, "train_encoder", "training (original, retrain, references)")
    _wrap(ModelCache, "get_or_build", "checkpoint cache (load, save, sha256)")
    _wrap(AuditCache, "features", "audit cache")
    _wrap(AuditCache, "audit", "audit cache")
    _wrap(runner, "extract", "feature extraction")
    _wrap(runner.CellRunner, "run_method", lambda self, spec, *a, **k: f"method {spec.name}")
    for entry in registry.auditors:
        _wrap(entry.obj, "audit", f"auditor {entry.name}")
        _wrap(entry.obj, "figures", f"figures {entry.name}")


def profiled_cell(cell: Any, cache_root: Path, done: frozenset[str]) -> Any:
    """``run_cell`` with timers; the cell's timings ride back on the result (to the driver)."""
    from bench.runner import run_cell

    install_cell_timers()
    before_s, before_n = TIMERS.snapshot()
    result = run_cell(cell, cache_root, done)
    after_s, after_n = TIMERS.snapshot()
    result.profile = {k: (after_s.get(k, 0.0) - before_s.get(k, 0.0), after_n.get(k, 0) - before_n.get(k, 0))
                      for k in after_s if after_n.get(k, 0) != before_n.get(k, 0) or after_s[k] != before_s.get(k)}
    result.profile_pid = os.getpid()
    return result


def install_driver_timers() -> None:
    import bench.driver as driver
    from bench.executors.local import LocalExecutor
    from bench.tracking import Tracker

    _wrap(driver, "prepare", "validation (matrix, data)")
    _wrap(driver, "report", "report (leaderboard, figures)")
    for name in ("__init__", "experiment_id", "mark_killed", "discard_unfinished", "finished_hashes",
                 "start_parent", "tag_parent", "end_parent"):
        _wrap(Tracker, name, "MLflow (store, invocation)")
    log_cell = Tracker.log_cell

    def logged(self: Any, exp_id: str, parent: str, result: Any) -> None:
        if getattr(result, "profile_pid", os.getpid()) != os.getpid():  # timed in a worker
            for label, (secs, calls) in result.profile.items():
                WORKERS[label][0] += secs
                WORKERS[label][1] += calls
        for row in result.rows:
            if row.status == "finished" and "rte_s" in row.metrics:
                RTE[row.method] += row.metrics["rte_s"]
        with TIMERS.part("MLflow (logging rows)"):
            log_cell(self, exp_id, parent, result)

    Tracker.log_cell = logged
    executor_for = driver.executor_for

    def timed_executor(opts: Any, matrix: Any) -> Any:
        ex = executor_for(opts, matrix)
        if isinstance(ex, LocalExecutor):
            ex.fn = profiled_cell
        inner = ex.map

        def map_(cells: list, cache_root: Path, done: frozenset[str]) -> Iterator[Any]:
            it = inner(cells, cache_root, done)
            while True:
                with TIMERS.part("waiting for the cells"):
                    try:
                        result = next(it)
                    except StopIteration:
                        return
                yield result

        ex.map = map_
        return ex

    driver.executor_for = timed_executor


def table(wall: float, startup: float) -> str:
    own, calls = TIMERS.snapshot()
    rows = [("start-up (imports)", startup, 1, None), *[(k, v, calls[k], None) for k, v in own.items()]]
    measured = startup + sum(own.values())
    lines = [f"{'part':44s} {'seconds':>8s} {'calls':>6s} {'% wall':>7s} {'rte_s':>7s}"]

    def add(label: str, secs: float, n: int) -> None:
        method = label.removeprefix("method ") if label.startswith("method ") else None
        rte = f"{RTE[method]:7.1f}" if method in RTE else ""
        lines.append(f"{label:44s} {secs:8.1f} {n:6d} {100 * secs / wall:6.1f}% {rte:>7s}")

    lines.append("-- this process")
    for label, secs, n, _ in sorted(rows, key=lambda r: -r[1]):
        add(label, secs, n)
    add("rest of the driver (untimed)", max(0.0, wall - measured), 1)
    if WORKERS:
        lines.append("-- inside the worker processes (summed over them)")
        for label, (secs, n) in sorted(WORKERS.items(), key=lambda kv: -kv[1][0]):
            add(label, secs, int(n))
        lines.append(f"{'sum over the workers':44s} {sum(s for s, _ in WORKERS.values()):8.1f}")
    lines.append(f"{'wall (python start to end)':44s} {wall:8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.smoke_profile", description=__doc__.splitlines()[0])
    p.add_argument("--matrix", default="smoke")
    p.add_argument("--results-dir", type=Path, default=None, help="default: a fresh temporary folder (cold)")
    p.add_argument("--json", type=Path, default=None, help="also write the timings here")
    args = p.parse_args(argv)
    # the suite, torch and MLflow: what a run imports first (the driver itself imports them lazily)
    import bench.executors.local  # noqa: F401
    import bench.runner  # noqa: F401
    import bench.tracking  # noqa: F401
    from bench import driver

    startup = time.perf_counter() - T0

    install_driver_timers()
    install_cell_timers()  # cells run in this process unless the executor has workers
    with tempfile.TemporaryDirectory(prefix="smoke-profile-") as tmp:
        summary = driver.run_matrix(driver.RunOptions(matrix=args.matrix, results_dir=args.results_dir or Path(tmp)))
    wall = time.perf_counter() - T0
    print(f"matrix {args.matrix}: {summary.finished} results, {len(summary.failed)} failed, "
          f"{summary.skipped} n/a, {summary.resumed} resumed")
    print(table(wall, startup))
    if args.json:
        own, calls = TIMERS.snapshot()
        args.json.write_text(json.dumps({"wall_s": wall, "startup_s": startup, "driver": own, "calls": calls,
                                         "workers": dict(WORKERS), "rte_s": dict(RTE)}, indent=1))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
