"""Ray executor: one Ray task per cell, with the matrix's resource request.

Connects to a running cluster when one is named (option ``address``, or
``RAY_ADDRESS`` as set by ``ray job submit`` / a head node) and starts a small
local instance otherwise. Tasks return plain :class:`CellResult` data; the driver
collects them with ``ray.wait`` as they complete and alone writes MLflow. A task
whose worker or node dies comes back as a failed cell (``max_retries`` Ray-side
retries first, default none). On a cluster every node needs the package installed
(or ``runtime_env``) and must see the same model cache and data paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from bench.config import Cell, ConfigError
from bench.executors import CellFn, cell_threads, error_text, run_in_worker
from bench.runner import CellResult, run_cell

log = logging.getLogger("bench.executors")


class RayExecutor:
    """Options: ``address`` (a cluster; default ``$RAY_ADDRESS``, else a local instance),
    ``num_cpus`` / ``num_gpus`` per cell (default: the matrix's ``resources``),
    ``local_cpus`` / ``local_gpus`` (size of a local instance), ``max_retries``
    (Ray-side retries of a task whose worker died), ``runtime_env`` (passed to ray.init)."""

    def __init__(self, address: str | None = None, num_cpus: float | None = None,
                 num_gpus: float | None = None, local_cpus: int | None = None,
                 local_gpus: int | None = None, max_retries: int = 0,
                 runtime_env: dict[str, Any] | None = None, resources: dict[str, Any] | None = None,
                 fn: CellFn = run_cell):
        res = dict(resources or {})
        self.num_cpus = float(num_cpus if num_cpus is not None else res.get("num_cpus", 1))
        self.num_gpus = float(num_gpus if num_gpus is not None else res.get("num_gpus", 0))
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.local_cpus = local_cpus
        self.local_gpus = local_gpus
        self.max_retries = int(max_retries)
        self.runtime_env = runtime_env
        self.threads = cell_threads({"num_cpus": self.num_cpus})
        self.fn = fn

    def connect(self) -> None:
        """Join the cluster (or start a local instance) unless this process already has."""
        if ray.is_initialized():
            return
        if self.address:
            log.info("ray: connecting to %s", self.address)
            ray.init(address=self.address, runtime_env=self.runtime_env, log_to_driver=True)
            return
        cpus = self.local_cpus or max(int(self.num_cpus), min(os.cpu_count() or 1, 8))
        log.info("ray: no cluster named (RAY_ADDRESS or option address); starting a local "
                 "instance with %d CPUs", cpus)
        ray.init(num_cpus=cpus, num_gpus=self.local_gpus, include_dashboard=False,
                 log_to_driver=True, runtime_env=self.runtime_env)

    def check_fits(self) -> None:
        """Fail fast when no node could ever run a cell (a task would pend forever)."""
        total = ray.cluster_resources()
        short = [f"{k}={v:g} per cell but the cluster has {total.get(key, 0):g}"
                 for k, v, key in (("num_cpus", self.num_cpus, "CPU"), ("num_gpus", self.num_gpus, "GPU"))
                 if v > total.get(key, 0)]
        if not short:
            return
        msg = "ray: " + "; ".join(short)
        if self.address:  # an autoscaling cluster may still add the nodes
            log.warning("%s (waiting for the autoscaler)", msg)
        else:
            raise ConfigError(f"{msg}: lower resources in the matrix or --executor-options, "
                              "or give a cluster address")

    def map(self, cells: list[Cell], cache_root: Path, done: frozenset[str]) -> Iterator[CellResult]:
        self.connect()
        self.check_fits()
        task = ray.remote(run_in_worker).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.max_retries,
            retry_exceptions=False, name="unlearn-bench cell",
        )
        done_ref = ray.put(done)  # shipped to the object store once, not once per cell
        pending = {task.remote(self.fn, cell, str(cache_root), done_ref, self.threads): cell for cell in cells}
        log.info("ray: %d cell tasks submitted (num_cpus=%g, num_gpus=%g each)",
                 len(pending), self.num_cpus, self.num_gpus)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as e:  # worker crash, node loss, OOM kill, cancel
                        log.error("cell %s failed in ray: %s", cell.label, error_text(e))
                        yield CellResult(cell, error=error_text(e))
        finally:
            for ref in pending:  # the driver stopped early: don't leave orphan tasks running
                ray.cancel(ref, force=True)
