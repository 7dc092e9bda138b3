"""Slurm executor: the cells as one submitit job array; submitit's local executor without Slurm.

On a Slurm login node the matrix becomes a job array (one job per cell) with the
partition, time limit, GPUs and CPUs per job from ``--executor-options`` or the
matrix's ``resources``; the driver stays on the login node, polls the jobs and logs
each result as it arrives. Where ``sbatch`` is absent, submitit's LocalExecutor runs
the cells as subprocesses of this machine, ``array_parallelism`` at a time, one GPU
each when there are GPUs. A job that dies, times out or is cancelled comes back as
a failed cell. Job folders (pickles, stdout/stderr) go to ``folder``, default
``<cache dir>/../submitit``: on a cluster it must be on a shared filesystem, like
the model cache and the data.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import submitit

from bench.config import Cell, ConfigError
from bench.executors import CellFn, cell_threads, error_text, run_in_worker
from bench.executors.local import visible_gpus
from bench.runner import CellResult, run_cell

log = logging.getLogger("bench.executors")

CLUSTERS = ("slurm", "local", "debug")


class SlurmExecutor:
    """Options: ``cluster`` (slurm | local | debug; default slurm where ``sbatch`` exists,
    else local), ``partition``, ``time`` (minutes per job), ``gpus_per_job``,
    ``cpus_per_job`` (default: the matrix's ``resources``), ``mem_gb``,
    ``array_parallelism`` (jobs running at once), ``folder``, ``poll_s``, and ``extra``:
    further submitit parameters verbatim (e.g. ``{"slurm_account": "lab"}``)."""

    def __init__(self, cluster: str | None = None, partition: str | None = None, time: int = 240,
                 gpus_per_job: int | None = None, cpus_per_job: int | None = None,
                 mem_gb: float | None = None, array_parallelism: int | None = None,
                 folder: str | None = None, poll_s: float | None = None, extra: dict[str, Any] | None = None,
                 resources: dict[str, Any] | None = None, fn: CellFn = run_cell):
        if cluster is not None and cluster not in CLUSTERS:
            raise ConfigError(f"slurm executor: cluster '{cluster}' unknown: use {', '.join(CLUSTERS)}")
        res = dict(resources or {})
        self.cluster = cluster or ("slurm" if shutil.which("sbatch") else "local")
        self.partition = partition
        self.time = int(time)
        self.gpus = int(gpus_per_job if gpus_per_job is not None else res.get("num_gpus", 0))
        self.cpus = int(cpus_per_job if cpus_per_job is not None else max(1, res.get("num_cpus", 1)))
        self.mem_gb = mem_gb
        self.parallelism = array_parallelism or (64 if self.cluster == "slurm" else 1)
        self.folder = folder
        self.poll_s = float(poll_s if poll_s is not None else (15.0 if self.cluster == "slurm" else 0.5))
        self.extra = dict(extra or {})
        self.threads = cell_threads({"num_cpus": self.cpus})
        self.fn = fn

    def executor(self, cache_root: Path) -> submitit.Executor:
        folder = Path(self.folder) if self.folder else Path(cache_root).resolve().parent / "submitit"
        if self.cluster == "local":  # set directly: AutoExecutor hides visible_gpus
            ex = submitit.LocalExecutor(folder=folder / "%j")
            local = {k.removeprefix("local_"): v for k, v in self.extra.items() if k.startswith("local_")}
            ex.update_parameters(timeout_min=self.time, gpus_per_node=self.gpus, **local)
            return ex
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        params: dict[str, Any] = {
            "name": "unlearn-bench", "timeout_min": self.time, "cpus_per_task": self.cpus,
            "gpus_per_node": self.gpus, "mem_gb": self.mem_gb, "tasks_per_node": 1, "nodes": 1,
            "slurm_array_parallelism": self.parallelism, "slurm_partition": self.partition,
        }
        try:
            ex.update_parameters(**{**params, **self.extra})
        except (NameError, AssertionError, ValueError) as e:
            raise ConfigError(f"slurm executor: bad parameters: {str(e).splitlines()[0]}") from None
        return ex

    def map(self, cells: list[Cell], cache_root: Path, done: frozenset[str]) -> Iterator[CellResult]:
        ex = self.executor(cache_root)
        args = (str(cache_root), done, self.threads)
        if self.cluster == "slurm":
            n = len(cells)
            jobs = ex.map_array(run_in_worker, [self.fn] * n, cells, *([a] * n for a in args))
            log.info("slurm: job array %s submitted (%d cells)", jobs[0].job_id.split("_")[0], n)
            yield from self._collect(ex, dict(zip(jobs, cells)), deque(), [], args)
            return
        # without Slurm, submit as slots free up: submitit's local executor would start
        # every job at once, all on GPU 0
        gpus = [g for g in visible_gpus() if g.isdigit()] if self.gpus and self.cluster == "local" else []
        log.info("slurm: no Slurm here; submitit %s executor, %d job(s) at a time%s", self.cluster,
                 self.parallelism, f" on GPUs {gpus}" if gpus else "")
        yield from self._collect(ex, {}, deque(cells), gpus, args)

    def _collect(self, ex: Any, running: dict[Any, Cell], queue: deque[Cell], gpus: list[str],
                 args: tuple) -> Iterator[CellResult]:
        """Submit from ``queue`` while slots are free, yield results as jobs finish."""
        free = list(gpus)
        slot: dict[Any, str] = {}
        try:
            while running or queue:
                while queue and len(running) < self.parallelism and (free or not gpus):
                    if gpus:
                        slot_gpu = free.pop(0)
                        ex.update_parameters(visible_gpus=[int(slot_gpu)])
                    job = ex.submit(run_in_worker, self.fn, queue[0], *args)
                    running[job] = queue.popleft()
                    if gpus:
                        slot[job] = slot_gpu
                finished = [job for job in running if job.done()]
                if not finished:
                    time.sleep(self.poll_s)
                    continue
                for job in finished:
                    cell = running.pop(job)
                    if job in slot:
                        free.append(slot.pop(job))
                    try:
                        result = job.result()
                    except Exception as e:  # died, timed out, cancelled, preempted too often
                        log.error("cell %s failed in job %s: %s", cell.label, job.job_id, error_text(e))
                        result = CellResult(cell, error=f"job {job.job_id}: {error_text(e)}")
                    yield result
        finally:
            for job in running:  # the driver stopped early: don't leave jobs running
                job.cancel(check=False)
