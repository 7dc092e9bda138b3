"""The library behind every CLI command: each is a function a test can call without a shell.

Only this module writes MLflow and the report: ``run_matrix`` (the driver) its rows, ``report``
the report's files and the report run that carries them.
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
from typing import TYPE_CHECKING

from bench import registry, tuned
from bench.config import ConfigError, Matrix, check_data_content, load_matrix, shipped_matrices, validate
from bench.dataspec import default_data_root
from bench.storelock import StoreLock

if TYPE_CHECKING:
    from bench.report.build import AuditorFigures, Report
    from bench.tracking import Tracker
# torch, MLflow and pandas load inside the functions that use them: a matrix refused for its
# YAML or a misspelt name answers without them

log = logging.getLogger("bench")


class Folders:
    """Where a command's data and model cache live: ``data_root`` (else $BENCH_DATA) and
    ``cache_dir`` (else ``<results_dir>/cache``); shared by ``run`` and ``tune`` options."""

    results_dir: Path
    data_root: Path | None
    cache_dir: Path | None

    @property
    def root(self) -> Path:
        return Path(self.data_root) if self.data_root else default_data_root()

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.results_dir) / "cache"


@dataclass
class RunOptions(Folders):
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
    compile: bool = False  # torch.compile the backbones (overrides the matrix's compile: false)
    tuned: Path | None = None  # a tuned.yaml (bench/tuned.py); overrides the matrix's tuned: key
    seeds: list[int] | None = None  # `run --seeds`: these instead of the matrix's (validated like its own)


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
    if opts.compile:
        matrix.compile = True
    if opts.tuned:
        matrix.tuned = str(opts.tuned)
    if opts.seeds is not None:
        matrix.seeds = list(opts.seeds)
    warnings = validate(matrix, opts.root, check_data=not opts.dry_run, download=opts.download,
                        executor=opts.executor)
    if matrix.tuned:  # unknown methods, values outside their spaces (bench/tuned.py)
        warnings += tuned.check(matrix)
    executor_for(opts, matrix)  # its name and options are checked here too, so `validate` refuses them
    return matrix, warnings


def get_executor(name: str, **options):
    """:func:`bench.executors.get_executor`, imported when first called (it imports the runner, so torch)."""
    from bench import executors

    return executors.get_executor(name, **options)


def executor_for(opts: RunOptions, matrix: Matrix):
    """The executor the options name, with the matrix's resources and defaults (cheap: engines
    connect only when cells are mapped)."""
    return get_executor(opts.executor, **{"resources": matrix.resources,
                                          **matrix.executors.get(opts.executor, {}),
                                          **opts.executor_options})


def cells_of(matrix: Matrix, root: Path, fingerprints: dict[str, str] | None = None) -> list:
    """The matrix's cells with its tuned.yaml applied (explicit matrix values win; bench/tuned.py):
    config stays free of tuning, so the two never import each other."""
    cells = matrix.cells(str(root), fingerprints)
    return tuned.apply(cells, tuned.load(matrix.tuned)) if matrix.tuned else cells


def describe_cells(matrix: Matrix, root: Path) -> str:
    from bench.estimate import describe as describe_cost

    cells = cells_of(matrix, root)
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
        from bench.data import load_dataset

        for ds in matrix.datasets:
            check_data_content(matrix, ds, load_dataset(ds, opts.root, download=True))
    executor = executor_for(opts, matrix)
    with StoreLock(opts.results_dir):  # one driver per store, taken before MLflow opens it
        return _drive(opts, matrix, executor, t0)


def _drive(opts: RunOptions, matrix: Matrix, executor, t0: float) -> RunSummary:
    """The run proper, holding the results folder: resume, run the cells, log them, report."""
    from bench.data import load_dataset
    from bench.executors import failed_rows
    from bench.report.publish import provenance_tags
    from bench.runner import pending, row_hashes
    from bench.tracking import Tracker

    tracker = Tracker(opts.results_dir, opts.tracking_uri)
    killed = tracker.mark_killed()  # we hold the store: a RUNNING invocation's driver is dead
    if killed:
        log.info("marked %d invocation(s) of a killed driver as KILLED", killed)
    exp_id = tracker.experiment_id(matrix.name)
    stale = tracker.discard_unfinished(exp_id)
    if stale:
        log.info("discarded %d half-written run(s) of an interrupted invocation", stale)
    done = frozenset() if opts.fresh else frozenset(tracker.finished_hashes(exp_id))
    # the content of each data set (loaded by validation) joins every cell's identity: rows of
    # data edited since do not resume, and models trained on it are not reused (bench/runner.py)
    fingerprints = {ds: load_dataset(ds, opts.root).fingerprint for ds in matrix.datasets}
    all_cells = cells_of(matrix, opts.root, fingerprints)
    cells = [c for c in all_cells if pending(c, done)]
    notes = tuned.notes(matrix, tuned.load(matrix.tuned)) if matrix.tuned else {}  # bench.tuned row tags
    parent = tracker.start_parent(exp_id, {"bench.matrix": matrix.name, "bench.argv": " ".join(sys.argv),
                                           **tuned.invocation_tags(matrix),
                                           **provenance_tags(matrix.device)})
    trained = cache_hits = 0

    def provenance() -> None:  # for `report --benchmarks`: the invocation's wall time and cache use
        tracker.tag_parent(parent, {"bench.wall_s": f"{time.perf_counter() - t0:.1f}",
                                    "bench.models_trained": trained, "bench.cache_hits": cache_hits})

    resumed = len(done & {h for c in all_cells for h in row_hashes(c)})  # this matrix's, on this data
    summary = RunSummary(resumed=resumed)
    log.info("matrix %s: %d cells, %d with work left; %d finished results found (resume)",
             matrix.name, len(all_cells), len(cells), resumed)
    try:
        for i, result in enumerate(executor.map(cells, opts.cache, done), 1):
            if result.error and not result.rows:  # died before any row: each method records why
                result.rows = failed_rows(result.cell, result.error, done)
            tuned.stamp(result, notes)
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
    """Rebuild ``<results>/<matrix>/`` (leaderboard.md, cells/*.md, figures/*.png) from MLflow
    alone, and log the same files on the experiment's report run (bench.kind=report, replacing
    the previous one); with ``benchmarks``, also write the leaderboard, with each contributing
    invocation's provenance, between the matrix's markers in that file (BENCHMARKS.md), its links
    resolving from there."""
    from bench.audit import metric_specs
    from bench.report import tuning
    from bench.report.build import build_report, write_report
    from bench.report.frame import latest
    from bench.report.publish import publish
    from bench.tracking import Tracker

    tracker = Tracker(results_dir, tracking_uri)
    df = tracker.results_frame(matrix_name)
    folder = Path(results_dir) / matrix_name
    rep = build_report(df, metric_specs(), matrix_name, auditor_figures(tracker, df),
                       header=[f"Hyperparameters: {tuning.header(df)}."] if len(df) else [],
                       cell_notes=tuning.method_lines, cell_summary=tuning.summary_lines)
    out = write_report(rep, folder)
    log_report_run(tracker, matrix_name, rep)
    if benchmarks is not None:
        tuned_from, budgets = tuning.sources(df)
        used = (set(latest(df).parent_run) if len(df) and "parent_run" in df else set()) | tuned_from
        last = df.groupby("parent_run").start_time.max() if len(df) else {}  # rows are logged as their cell ends
        runs = [{**i, "last_result": int(last[i["run_id"]])} for i in tracker.invocations(matrix_name)
                if i["run_id"] in used]
        tunes = [i for i in tracker.invocations(matrix_name, kind="tune")
                 if (int(i["tags"].get("bench.tune.seed", -1)), int(i["tags"].get("bench.tune.trials", -1))) in budgets]
        runs = sorted(runs + tunes, key=lambda i: i["start_time"])
        root = os.path.relpath(folder.resolve(), Path(benchmarks).resolve().parent).replace(os.sep, "/")
        publish(Path(benchmarks), matrix_name, rep.markdown(f"{root}/"), runs)
    return out


def auditor_figures(tracker: Tracker, df) -> AuditorFigures:
    """The PNGs the auditors drew, per (cell, seed), as the store keeps them: on the run the rows'
    ``bench.figures_run`` tag names, under ``figures/`` (Tracker.figure_paths), or, in stores
    written before that, on the invocation's parent run under ``<cell_slug>/``."""
    from bench.report.frame import CELL, latest

    out: dict = {}
    if not len(df) or "figures_run" not in df:
        return out
    rows = latest(df)
    for key, sub in rows[rows.figures_run != ""].groupby([*CELL, "seed"]):
        cell, seed = tuple(key[:-1]), key[-1]
        row = sub.sort_values("start_time").iloc[-1]
        found = [(_below_figures(p), p) for p in tracker.figure_paths(row.figures_run)]
        if not found:
            art = tracker.artifact_dir(row.figures_run)
            base = art / row.cell_slug if art is not None else None
            if base is not None and base.is_dir():
                found = [(p.relative_to(base).as_posix(), p) for p in sorted(base.glob("**/*.png"))]
        if found:
            out[(cell, int(seed))] = found
    return out


def _below_figures(path: Path) -> str:
    """A figure's name below its run's ``figures/`` folder (``r1/alignment_matrix.png``)."""
    top = next((p for p in path.parents if p.name == "figures"), path.parent)
    return path.relative_to(top).as_posix()


def log_report_run(tracker: Tracker, matrix_name: str, rep: Report) -> None:
    """The report's files as artifacts of one run tagged bench.kind=report (neither an invocation
    nor a row: resume and provenance never count it); the previous report run is deleted once
    the new one is complete."""
    import tempfile

    exp_id = tracker.experiment_id(matrix_name, create=False)
    if exp_id is None:
        return
    old = tracker.client.search_runs([exp_id], filter_string="tags.`bench.kind` = 'report'", max_results=100)
    run = tracker.client.create_run(exp_id, tags={"bench.kind": "report"},
                                    run_name=f"report {time.strftime('%Y-%m-%d %H:%M:%S')}")
    with tempfile.TemporaryDirectory() as tmp:
        for rel, content in rep.files.items():
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        tracker.client.log_artifacts(run.info.run_id, tmp)
    tracker.client.set_terminated(run.info.run_id, "FINISHED")
    for r in old:
        tracker.client.delete_run(r.info.run_id)


def list_components(kind: str) -> str:
    from bench.estimate import describe as describe_cost

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
    from bench.hparams import params, search_space

    def summary(entry) -> str:
        """The registered description, else the first sentence of the class's or its module's
        docstring (a dataclass without a docstring gets an auto-generated signature: never shown)."""
        obj = entry.obj
        own = (obj.__doc__ or "").strip()
        if dataclasses.is_dataclass(obj) and own.startswith(f"{obj.__name__}("):
            own = ""
        module = (getattr(sys.modules.get(obj.__module__), "__doc__", None) or "").strip()
        paragraph = " ".join((own or module).split("\n\n")[0].split())
        first, dot, _ = paragraph.partition(". ")
        return entry.meta.get("description") or first + dot.strip()

    def packed(label: str, items: list[str], sep: str) -> list[str]:
        """``label: a, b, c`` over lines of at most 100 characters, never splitting an item."""
        out, line = [], f"  {label + ':':14s}"
        for i, item in enumerate(items):
            piece = item + (sep if i < len(items) - 1 else "")
            if len(line) + len(piece) > 100 and line.strip() != label + ":":
                out.append(line.rstrip())
                line = " " * 16
            line += piece
        return [*out, line.rstrip()]

    def method_block(entry) -> list[str]:
        obj = entry.obj
        defaults = [f"{n}={p.default!r}" for n, p in params(obj).items()] or ["none"]
        space = [f"{n} {sp}" for n, sp in search_space(obj).items()] or ["none (runs at its defaults)"]
        return [*textwrap.wrap(f"{entry.name}: {summary(entry)}", 100, subsequent_indent="  "),
                *packed("source", [entry.meta.get("source", "")], ""),
                *packed("data", [f"needs={list(obj.needs)}", f"requires={sorted(obj.requires)}"], " "),
                *packed("defaults", defaults, ", "), *packed("search space", space, "; ")]

    lines: list[str] = []
    for entry in reg:
        if kind == "methods":
            lines += [*method_block(entry), ""]
            continue
        extra = " metrics=" + ",".join(f"{m.name}{m.arrow}" for m in entry.obj.metrics) if kind == "auditors" else ""
        lines.append(f"{entry.name:24s} {summary(entry)}{extra}")
    return "\n".join(lines).rstrip()


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
    """Serve the MLflow UI on the results store, bound to localhost, until Ctrl-C or SIGTERM.

    ``mlflow ui`` forks a server and its workers; they run in a process group of their own,
    which is stopped as a whole however this process ends (Ctrl-C, SIGTERM, SIGHUP, an
    error), so no server is left holding the port."""
    import signal
    import subprocess

    from bench.tracking import default_uri

    uri = tracking_uri or default_uri(results_dir)
    # one worker and no job runner (its huey consumers serve GenAI judges and trace rollups):
    # 2 processes instead of 15 for one local reader of tables and plots
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    print(f"MLflow UI on http://127.0.0.1:{port} (store {uri}); Ctrl-C stops it")
    # MLflow 3.17 opens any experiment as a GenAI app (an empty Overview) unless the browser is in
    # its "Model training" mode (the sidebar switch, remembered per browser, or this URL parameter):
    # these links open each experiment's runs table
    for exp in ui_experiments(results_dir, tracking_uri):
        print(f"  {exp.name}: http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs"
              "?workflowType=machine_learning")
    sys.stdout.flush()

    def leave(signum: int, frame) -> None:
        raise SystemExit(128 + signum)

    handled = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, leave) for s in handled}
    proc = subprocess.Popen(cmd, start_new_session=True, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        stop_group(proc)
        for s, h in previous.items():
            signal.signal(s, h)


def ui_experiments(results_dir: Path, tracking_uri: str | None) -> list:
    """The store's experiments, for the UI's links (none when the store cannot be read)."""
    from bench.tracking import Tracker

    try:
        exps = Tracker(results_dir, tracking_uri).client.search_experiments()
    except Exception:  # the server reports a broken store better than a list could
        return []
    return sorted((e for e in exps if e.name != "Default"), key=lambda e: e.name)


def stop_group(proc, grace_s: float = 10.0) -> None:
    """SIGTERM ``proc``'s process group (it leads one: ``start_new_session``), wait up to
    ``grace_s`` for every member to leave, then SIGKILL what remains."""
    import signal
    import subprocess

    if not hasattr(os, "killpg"):  # Windows: no process groups; the child alone
        proc.terminate()
        return
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)  # any member left?
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait()
