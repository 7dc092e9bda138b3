"""The library behind every CLI command: each is a function a test can call without a shell.

Only this module writes MLflow and the report: ``run_matrix`` (the driver) its rows, ``report``
the report's files and the report run that carries them.
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import logging
import os
import shutil
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

RUNS = Path("runs")  # the default results folder: untracked, so a plain `run` never dirties git
ROWS = "rows.csv"  # a matrix's raw rows, beside its leaderboard (bench/rows.py)


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
    results_dir: Path = RUNS
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
    from_rows: tuple[Path, ...] = ()  # rows files (bench/rows.py) whose whole cell-seeds count as done


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
                        executor=opts.executor, cache=opts.cache)
    if matrix.tuned:  # unknown methods, values outside their spaces (bench/tuned.py)
        warnings += tuned.check(matrix)
    executor_for(opts, matrix)  # its name and options are checked here too, so `validate` refuses them
    if opts.from_rows and opts.fresh:
        raise ConfigError("--fresh recomputes every row and --from counts a file's rows as done: pass one of them")
    if opts.from_rows:  # bench.rows imports pandas: only when a rows file is to be read
        from bench import rows

        for path in opts.from_rows:
            rows.read(path)  # a bad rows file: one line naming the fix, before any work
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


def _cell_key(c) -> tuple[str, str, str]:
    """What the report calls a cell (dataset x encoder x scenario); a Cell object is one seed of it."""
    return c.dataset, f"{c.encoder_label}/{c.backbone}", c.scenario


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def size_text(cells: list) -> str:
    """``N cells (dataset x encoder x scenario) x S seeds = R runs``: the leaderboard's meaning of a
    cell, with a seed's run of it counted as a run."""
    n = len({_cell_key(c) for c in cells})
    seeds = {c.seed for c in cells}
    return (f"{_plural(n, 'cell')} (dataset x encoder x scenario) x {_plural(len(seeds), 'seed')} = "
            f"{_plural(len(cells), 'run')}")


def _seed_list(seeds: list[int]) -> str:
    """0-4, 7, 9: consecutive seeds as ranges."""
    parts: list[list[int]] = []
    for s in sorted(seeds):
        if parts and s == parts[-1][-1] + 1:
            parts[-1].append(s)
        else:
            parts.append([s])
    return ", ".join(f"{p[0]}-{p[-1]}" if len(p) > 2 else ", ".join(map(str, p)) for p in parts)


def describe_cells(matrix: Matrix, root: Path) -> str:
    """The dry run's listing: the size, the estimate, then the cells grouped by data set, each with
    its seeds (one line per cell, not per run)."""
    from bench.estimate import describe as describe_cost

    cells = cells_of(matrix, root)
    est = matrix.estimate
    lines = [f"matrix {matrix.name}: {size_text(cells)}; each run: {_plural(len(matrix.methods), 'method')}, "
             f"{_plural(len(matrix.auditors), 'auditor')}"]
    if est:
        lines.append("estimate: " + describe_cost(matrix))
        if est.get("basis"):
            lines.append(f"  basis: {est['basis']}")
    groups: dict[tuple[str, str], dict[str, list[int]]] = {}  # (dataset, encoder) -> scenario -> seeds
    for c in cells:
        ds, enc, sc = _cell_key(c)
        groups.setdefault((ds, enc), {}).setdefault(sc, []).append(c.seed)
    dataset = None
    for (ds, enc), scenarios in groups.items():
        if ds != dataset:
            dataset = ds
            lines.append(f"  {ds}:")
        seed_sets = {tuple(sorted(v)) for v in scenarios.values()}
        if len(seed_sets) == 1:  # one line per encoder: its cells share their seeds
            (seeds,) = seed_sets
            each = " each" if len(scenarios) > 1 else ""
            lines.append(f"    {enc} · {', '.join(scenarios)}: {_plural(len(seeds), 'seed')}{each} "
                         f"({_seed_list(list(seeds))})")
        else:
            lines += [f"    {enc} · {sc}: {_plural(len(v), 'seed')} ({_seed_list(v)})" for sc, v in scenarios.items()]
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
            check_data_content(matrix, ds, load_dataset(ds, opts.root, download=True, cache=opts.cache))
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
    fingerprints = {ds: load_dataset(ds, opts.root, cache=opts.cache).fingerprint for ds in matrix.datasets}
    all_cells = cells_of(matrix, opts.root, fingerprints)
    if opts.from_rows:
        done |= done_from_files(opts.from_rows, all_cells)
    cells = [c for c in all_cells if pending(c, done)]
    notes = tuned.notes(matrix, tuned.load(matrix.tuned)) if matrix.tuned else {}  # bench.tuned row tags
    sources = {FROM_TAG: json.dumps([str(Path(p).resolve()) for p in opts.from_rows])} if opts.from_rows else {}
    parent = tracker.start_parent(exp_id, {"bench.matrix": matrix.name, "bench.argv": " ".join(sys.argv),
                                           **tuned.invocation_tags(matrix), **sources,
                                           **provenance_tags(matrix.device)})
    trained = cache_hits = 0

    def provenance() -> None:  # for `report --benchmarks`: the invocation's wall time and cache use
        tracker.tag_parent(parent, {"bench.wall_s": f"{time.perf_counter() - t0:.1f}",
                                    "bench.models_trained": trained, "bench.cache_hits": cache_hits})

    resumed = len(done & {h for c in all_cells for h in row_hashes(c)})  # this matrix's, on this data
    summary = RunSummary(resumed=resumed)
    log.info("matrix %s: %s, %d with work left; %d finished results found (resume)",
             matrix.name, size_text(all_cells), len(cells), resumed)
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


def done_from_files(files, cells) -> frozenset[str]:
    """The config hashes of every cell-seed whose rows the files hold in full (failed ones
    excepted): the unit that moves between machines, since a seed's methods and yardsticks come
    from one model cache. A cell-seed a file holds in part is computed here entirely."""
    from bench import rows
    from bench.runner import row_hashes

    have: set[str] = set()
    for path in files:
        have |= rows.finished(rows.read(path))
    out: set[str] = set()
    partial = 0
    for cell in cells:
        hashes = set(row_hashes(cell))
        if hashes <= have:
            out |= hashes
        elif hashes & have:
            partial += 1
    log.info("rows files %s: %d cell-seed(s) complete (done), %d in part (computed here in full)",
             ", ".join(map(str, files)), sum(set(row_hashes(c)) <= out for c in cells), partial)
    return frozenset(out)


def report(matrix_name: str, results_dir: Path = RUNS, tracking_uri: str | None = None,
           benchmarks: Path | None = None, publish_to: Path | None = None) -> Path:
    """Rebuild ``<results>/<matrix>/`` (rows.csv, leaderboard.md, cells/*.md, figures/*.png) from
    MLflow and the rows files the matrix's runs started ``--from`` (bench/rows.py), and log the
    same files on the experiment's report run (bench.kind=report, replacing the previous one).
    The pages are built from rows.csv as written, so ``report --rows`` on it gives the same
    bytes. With ``publish_to``, also write rows.csv and the pages into ``<publish_to>/<matrix>/``
    (the tracked results/). With ``benchmarks``, also write the leaderboard, with each
    contributing invocation's provenance, between the matrix's markers in that file
    (docs/leaderboards.md), its links resolving from there."""
    from bench import rows
    from bench.report import tuning
    from bench.report.build import write_report
    from bench.report.frame import CELL, latest
    from bench.report.publish import publish
    from bench.tracking import Tracker

    tracker = Tracker(results_dir, tracking_uri)
    raw = tracker.results_frame(matrix_name)
    invs = tracker.invocations(matrix_name)
    files = from_files(invs, publishing=publish_to is not None)  # before anything is written
    sources = {p: rows.read(p) for p in files}  # a bad file: one line, exit 2, nothing written
    folder = Path(results_dir) / matrix_name
    merged = rows.merge(rows.export(raw, invs), list(sources.values()))
    df = rows.read(rows.write(merged, folder / ROWS))
    figs: dict = {}
    for p, fdf in sources.items():  # the file's figures, for the cell-seeds whose rows came from it
        figs.update(published_figures(Path(p).parent, df[df.invocation.isin(set(fdf.invocation))]))
    mine = df[df.invocation.isin({i["run_id"] for i in invs})]
    keys = {(tuple(k[:-1]), int(k[-1])) for k, _ in mine.groupby([*CELL, "seed"])} if len(mine) else set()
    figs.update({k: v for k, v in auditor_figures(tracker, raw).items() if k in keys})  # the store's seeds
    rep = report_of(df, matrix_name, figs)
    out = write_report(rep, folder)
    log_report_run(tracker, matrix_name, rep)
    if publish_to is not None:
        folder = Path(publish_to) / matrix_name
        rows.write(merged, folder / ROWS)
        write_report(rep, folder)
        chosen = Path(results_dir) / matrix_name / tuned.FILE  # the values a tune of this store chose
        if chosen.is_file():
            shutil.copyfile(chosen, folder / tuned.FILE)
    if benchmarks is not None:
        tuned_from, budgets = tuning.sources(df)
        used = (set(latest(df).parent_run) if len(df) else set()) | tuned_from
        last = df.groupby("parent_run").start_time.max() if len(df) else {}  # rows are logged as their cell ends
        known = {i["run_id"] for i in invs}
        runs = [{**i, "last_result": int(last[i["run_id"]])} for i in invs if i["run_id"] in used]
        runs += [i for i in file_invocations(df) if i["run_id"] in used and i["run_id"] not in known]
        tunes = [i for i in tracker.invocations(matrix_name, kind="tune")
                 if tuning.tune_budget(i["tags"]) in budgets]
        runs = sorted(runs + tunes, key=lambda i: i["start_time"])
        root = os.path.relpath(folder.resolve(), Path(benchmarks).resolve().parent).replace(os.sep, "/")
        command = (f"python -m bench report --matrix {matrix_name}"
                   + (f" --publish {Path(publish_to).as_posix()}" if publish_to is not None else "")
                   + f" --benchmarks {Path(benchmarks).as_posix()}")
        publish(Path(benchmarks), matrix_name, rep.markdown(f"{root}/"), runs, command)
    return out


def report_rows(path: Path, out: Path | None = None) -> Path:
    """Rebuild the report from a rows file alone (no MLflow): into ``out`` (default: the file's
    folder), titled by that folder's name (results/<matrix>/rows.csv), with the auditors'
    figures a published report left beside the file (MLflow alone keeps the originals)."""
    from bench import rows
    from bench.report.build import write_report

    path = Path(path)
    df = rows.read(path)  # validated before anything is written
    rep = report_of(df, path.resolve().parent.name, published_figures(path.parent, df))
    return write_report(rep, Path(out) if out is not None else path.parent)


def report_of(df, title: str, figures: AuditorFigures) -> Report:
    """The report of a rows frame (bench/rows.py ``read``): one function for both sources."""
    from bench.audit import metric_specs
    from bench.report import tuning
    from bench.report.build import build_report

    return build_report(df, metric_specs(), title, figures,
                        header=[f"Hyperparameters: {tuning.header(df)}."] if len(df) else [],
                        cell_notes=tuning.method_lines, cell_summary=tuning.summary_lines)


FROM_TAG = "bench.from"  # an invocation's --from rows files (json list), merged by `report`


def from_files(invocations, publishing: bool = False) -> list[str]:
    """The rows files the invocations started ``--from``, oldest first, each once. A file moved
    away since is left out with a warning (its rows then are not in the report), except when
    publishing: the published rows would silently lose them, so that is a ConfigError."""
    out: list[str] = []
    for inv in invocations:
        for p in json.loads(inv["tags"].get(FROM_TAG) or "[]"):
            if p not in out:
                if Path(p).is_file():
                    out.append(p)
                elif publishing:
                    raise ConfigError(f"the rows file {p} (run --from) is gone: restore it before publishing, "
                                      "or the published rows would lose its rows")
                else:
                    log.warning("the rows file %s (run --from) is gone: its rows are left out; restore it "
                                "to report them", p)
    return out


def file_invocations(df) -> list[dict]:
    """Invocations known only from rows files (another machine's runs), for the provenance table."""
    if not len(df):
        return []
    out = []
    for inv, g in df.groupby("invocation"):
        r = g.iloc[0]
        start = int(calendar.timegm(time.strptime(r.date, "%Y-%m-%d %H:%M:%S")) * 1000) if r.date else 0
        out.append({"run_id": inv, "status": "FINISHED", "start_time": start, "last_result": int(g.start_time.max()),
                    "tags": {"bench.commit": r.commit, "bench.machine": r.machine, "bench.wall_s": r.wall_s,
                             "bench.command": r.command}})
    return out


def published_figures(folder: Path, df) -> AuditorFigures:
    """The auditors' figures a written report holds under ``<folder>/figures/<cell>/s<seed>-*.png``,
    per (cell, seed) of ``df``."""
    from bench.report import paths
    from bench.report.frame import CELL

    out: dict = {}
    if not len(df):
        return out
    for cell, sub in df.groupby(list(CELL), sort=False):
        for seed in sorted(set(sub.seed)):
            found = sorted((Path(folder) / paths.cell_figures(cell)).glob(f"s{seed}-*.png"))
            if found:
                out[(cell, int(seed))] = [(p.name.removeprefix(f"s{seed}-"), p) for p in found]
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
            lines.append(f"{name}: {size_text(m.cells())}")
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


def start_ui(results_dir: Path = RUNS, port: int = 5000, tracking_uri: str | None = None) -> int:
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
