"""The library behind every CLI command: each is a function a test can call without a shell.

Only this module's ``run_matrix`` (the driver) writes MLflow and the leaderboard.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tarfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import registry
from bench.audit import metric_specs
from bench.config import ConfigError, Matrix, load_matrix, shipped_matrices, validate
from bench.data import default_data_root, load_dataset
from bench.estimate import describe as describe_cost
from bench.executors import failed_rows, get_executor
from bench.report.leaderboard import GROUP, build_markdown, latest, write_leaderboard
from bench.report.publish import provenance_tags, publish
from bench.runner import pending
from bench.tracking import Tracker

log = logging.getLogger("bench")


@dataclass
class RunOptions:
    matrix: str
    results_dir: Path = Path("results")
    data_root: Path | None = None
    cache_dir: Path | None = None
    executor: str = "local"
    executor_options: dict = field(default_factory=dict)
    fresh: bool = False
    dry_run: bool = False
    device: str | None = None
    precision: str | None = None
    tracking_uri: str | None = None
    download: bool = False  # let torchvision download missing data sets (needs internet)

    @property
    def root(self) -> Path:
        return Path(self.data_root) if self.data_root else default_data_root()

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.results_dir) / "cache"


@dataclass
class RunSummary:
    finished: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0
    resumed: int = 0
    leaderboard: Path | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def prepare(opts: RunOptions) -> tuple[Matrix, list[str]]:
    """Load and validate the matrix (raises ConfigError before anything is written)."""
    matrix = load_matrix(opts.matrix)
    if opts.device:
        matrix.device = opts.device
    if opts.precision:
        matrix.precision = opts.precision
    warnings = validate(matrix, opts.root, check_data=not opts.dry_run, download=opts.download)
    return matrix, warnings


def describe_cells(matrix: Matrix, root: Path) -> str:
    cells = matrix.cells(str(root))
    est = matrix.estimate
    lines = [f"matrix {matrix.name}: {len(cells)} cells x {len(matrix.methods)} methods "
             f"x {len(matrix.auditors)} auditors"]
    if est:
        lines.append("estimate: " + describe_cost(matrix))
        if est.get("basis"):
            lines.append(f"  basis: {est['basis']}")
    lines += [f"  {c.label}" for c in cells]
    return "\n".join(lines)


def run_matrix(opts: RunOptions) -> RunSummary:
    t0 = time.perf_counter()
    matrix, warnings = prepare(opts)
    for w in warnings:
        log.warning("%s", w)
    if opts.dry_run:
        print(describe_cells(matrix, opts.root))
        return RunSummary()
    if opts.download:  # fetch once here, so cells (in any worker) find the files on disk
        for ds in matrix.datasets:
            load_dataset(ds, opts.root, download=True)
    executor = get_executor(opts.executor, **{"resources": matrix.resources,
                                              **matrix.executors.get(opts.executor, {}),
                                              **opts.executor_options})
    tracker = Tracker(opts.results_dir, opts.tracking_uri)
    exp_id = tracker.experiment_id(matrix.name)
    stale = tracker.discard_unfinished(exp_id)
    if stale:
        log.info("discarded %d half-written run(s) of an interrupted invocation", stale)
    done = frozenset() if opts.fresh else frozenset(tracker.finished_hashes(exp_id))
    all_cells = matrix.cells(str(opts.root))
    cells = [c for c in all_cells if pending(c, done)]
    parent = tracker.start_parent(exp_id, {"bench.matrix": matrix.name, "bench.argv": " ".join(sys.argv),
                                           **provenance_tags(matrix.device)})
    trained = cache_hits = 0

    def provenance() -> None:  # for `report --benchmarks`: the invocation's wall time and cache use
        tracker.tag_parent(parent, {"bench.wall_s": f"{time.perf_counter() - t0:.1f}",
                                    "bench.models_trained": trained, "bench.cache_hits": cache_hits})

    summary = RunSummary(resumed=len(done))
    log.info("matrix %s: %d cells, %d with work left; %d finished results found (resume)",
             matrix.name, len(all_cells), len(cells), len(done))
    try:
        for i, result in enumerate(executor.map(cells, opts.cache, done), 1):
            if result.error and not result.rows:  # died before any row: each method records why
                result.rows = failed_rows(result.cell, result.error, done)
            tracker.log_cell(exp_id, parent, result)
            trained += sum(e.startswith("trained ") for e in result.events)
            cache_hits += sum(e.startswith("cache hit") for e in result.events)
            provenance()  # so far: a run killed later still shows its wall time to this cell
            if result.error:
                summary.failed.append(f"{result.cell.label}: {result.error}")
            for row in result.rows:
                if row.status == "failed":
                    if not result.error:  # else counted once, as the cell's failure
                        summary.failed.append(f"{result.cell.label} {row.method}: {row.reason}")
                elif row.status == "skipped":
                    summary.skipped += 1
                else:
                    summary.finished += 1
            log.info("[%d/%d] %s %s", i, len(cells), result.cell.label,
                     f"FAILED: {result.error}" if result.error else "done")
    finally:
        provenance()
        tracker.end_parent(parent, failed=bool(summary.failed))
    summary.leaderboard = report(matrix.name, opts.results_dir, opts.tracking_uri)
    summary.seconds = time.perf_counter() - t0
    return summary


def report(matrix_name: str, results_dir: Path = Path("results"), tracking_uri: str | None = None,
           benchmarks: Path | None = None) -> Path:
    """Rebuild ``<results>/<matrix>/leaderboard.md`` from MLflow alone; with ``benchmarks``,
    also write it, with each contributing invocation's provenance, between the matrix's
    markers in that file (BENCHMARKS.md)."""
    tracker = Tracker(results_dir, tracking_uri)
    df = tracker.results_frame(matrix_name)
    path = Path(results_dir) / matrix_name / "leaderboard.md"
    links = {}
    if len(df) and "figures_run" in df:
        for key, sub in df[df.figures_run != ""].groupby(GROUP):
            row = sub.sort_values(["seed", "start_time"]).iloc[-1]
            art = tracker.artifact_dir(row.figures_run)
            if art is None:
                continue
            figs = sorted((art / row.cell_slug).glob("**/*.png"))
            if figs:
                links[key] = os.path.relpath(figs[0], path.parent)
    md = build_markdown(df, metric_specs(), matrix_name, links)
    out = write_leaderboard(md, path)
    if benchmarks is not None:
        used = set(latest(df).parent_run) if len(df) and "parent_run" in df else set()
        last = df.groupby("parent_run").start_time.max()  # rows are logged as their cell ends
        runs = [{**i, "last_result": int(last[i["run_id"]])} for i in tracker.invocations(matrix_name)
                if i["run_id"] in used]
        # no figure links: they point into the results folder, which the repository lacks
        publish(Path(benchmarks), matrix_name, build_markdown(df, metric_specs(), matrix_name), runs)
    return out


def list_components(kind: str) -> str:
    if kind == "matrices":
        lines = []
        for name, path in sorted(shipped_matrices().items()):
            m = load_matrix(str(path))
            lines.append(f"{name}: {len(m.cells())} cells")
            lines += textwrap.wrap(m.description, 100, initial_indent="  ", subsequent_indent="  ")
            lines += textwrap.wrap(f"cost: {describe_cost(m)}", 100, initial_indent="  ",
                                   subsequent_indent="    ")
        return "\n".join(lines)
    reg = {"methods": registry.methods, "encoders": registry.encoders, "datasets": registry.datasets,
           "auditors": registry.auditors, "backbones": registry.backbones}.get(kind)
    if reg is None:
        raise ConfigError(f"unknown listing '{kind}': use methods, encoders, backbones, datasets, auditors or matrices")
    lines = []
    for entry in reg:
        obj = entry.obj
        doc = (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else entry.meta.get("description", "")
        extra = ""
        if kind == "methods":
            fields = {f.name: f.default for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
            extra = f" needs={list(obj.needs)} requires={sorted(obj.requires)} defaults={fields}"
        elif kind == "auditors":
            extra = " metrics=" + ",".join(f"{m.name}{m.arrow}" for m in obj.metrics)
        lines.append(f"{entry.name:24s} {entry.meta.get('description', doc)}{extra}")
    return "\n".join(lines)


def import_archive(archive: Path, data_root: Path | None = None) -> Path:
    """Unpack a dataset archive (e.g. cifar10-jpeg.tar.gz) into the data root."""
    archive = Path(archive)
    if not archive.is_file():
        raise ConfigError(f"archive {archive} not found: give the path of a .tar.gz / .tar / .zip file")
    root = Path(data_root) if data_root else default_data_root()
    root.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".zip":
        import zipfile

        with zipfile.ZipFile(archive) as z:
            z.extractall(root)
    else:
        with tarfile.open(archive) as t:
            t.extractall(root, filter="data")
    return root


def start_ui(results_dir: Path = Path("results"), port: int = 5000, tracking_uri: str | None = None) -> int:
    """Start the MLflow UI on the results store, bound to localhost."""
    import subprocess

    from bench.tracking import default_uri

    uri = tracking_uri or default_uri(results_dir)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port)]
    print(f"MLflow UI on http://127.0.0.1:{port} (store {uri}); Ctrl-C stops it")
    return subprocess.call(cmd)
