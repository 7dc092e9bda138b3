"""``python -m bench`` / ``unlearn-bench``: run | tune | ls | validate | report | data import | ui.

Thin by design: every command calls a function of :mod:`bench.driver`. A
configuration problem prints one line and exits 2 with nothing written; failed
cells exit 1 after the rest of the matrix has run. Imports nothing heavy before
argparse has run: ``--help`` and a refused matrix answer without torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-dir", type=Path, default=Path("runs"),
                   help="where mlflow.db, the model cache and reports go (default: ./runs, untracked; "
                        "`report --publish results` copies a report into the tracked results/)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: sqlite:///<results-dir>/mlflow.db)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a matrix, log to MLflow, write the leaderboard")
    run.add_argument("--matrix", required=True, help="a shipped matrix name or a YAML path")
    _common(run)
    run.add_argument("--data-root", type=Path, default=None, help="data sets folder (default: $BENCH_DATA)")
    run.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: <results>/cache)")
    run.add_argument("--executor", default="local", help="local | ray | slurm")
    run.add_argument("--executor-options", default="{}", help="JSON options for the executor")
    run.add_argument("--device", default=None, help="auto | cpu | cuda[:N] (overrides the matrix)")
    run.add_argument("--precision", default=None, help="fp32 | bf16 (overrides the matrix)")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the backbones (speed only: results and cache keys unchanged)")
    run.add_argument("--fresh", action="store_true", help="ignore finished results (no resume)")
    run.add_argument("--dry-run", action="store_true", help="list the cells and the estimate; run nothing")
    run.add_argument("--download", action="store_true",
                     help="download missing data sets with torchvision (needs internet)")

    run.add_argument("--seeds", default=None,
                     help="run these seeds instead of the matrix's: comma-separated, ranges allowed (4-7,9); "
                          "with --from <published rows.csv> the report keeps the file's other seeds, "
                          "so seeds accumulate")
    run.add_argument("--tuned", type=Path, default=None,
                     help="a tuned.yaml from `tune`: its values for the methods (explicit matrix values win)")
    run.add_argument("--from", dest="from_rows", type=Path, action="append", default=[],
                     help="a rows.csv (e.g. results/<matrix>/rows.csv): its complete cell-seeds count as done "
                          "and join this matrix's report (repeatable)")

    tune = sub.add_parser("tune", help="tune each method on its own seeds, same budget for all")
    tune.add_argument("--matrix", required=True, help="a shipped matrix name or a YAML path")
    tune.add_argument("--trials", type=int, default=None, help="trials per method and tuning cell (default 20)")
    tune.add_argument("--methods", default=None, help="comma-separated methods to tune (default: all with a space)")
    tune.add_argument("--seeds", default=None,
                      help="tuning seeds, comma-separated, ranges allowed, at least two, outside the matrix's: "
                           "each trial's objective is the mean Avg Gap over their cells "
                           "(default 9000000,9000001; collisions are refused)")
    _common(tune)
    tune.add_argument("--data-root", type=Path, default=None, help="data sets folder (default: $BENCH_DATA)")
    tune.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: <results>/cache)")
    tune.add_argument("--device", default=None, help="auto | cpu | cuda[:N] (overrides the matrix)")
    tune.add_argument("--precision", default=None, help="fp32 | bf16 (overrides the matrix)")
    tune.add_argument("--dry-run", action="store_true", help="list tuning cells, seeds and budget; run nothing")
    tune.add_argument("--download", action="store_true",
                      help="download missing data sets with torchvision (needs internet)")

    ls = sub.add_parser("ls", help="list registered components or shipped matrices")
    ls.add_argument("kind", choices=["methods", "encoders", "backbones", "datasets", "auditors", "matrices"])

    val = sub.add_parser("validate", help="check a matrix (names, ratios, data) without training")
    val.add_argument("--matrix", required=True)
    val.add_argument("--data-root", type=Path, default=None)
    val.add_argument("--dry-run", action="store_true", help="report missing data as a warning")
    val.add_argument("--download", action="store_true",
                     help="accept missing data sets that torchvision can download")
    # what shapes a run is checked as `run` checks it: validate refuses exactly what run refuses
    val.add_argument("--executor", default="local", help="local | ray | slurm")
    val.add_argument("--executor-options", default="{}", help="JSON options for the executor")
    val.add_argument("--device", default=None, help="auto | cpu | cuda[:N] (overrides the matrix)")
    val.add_argument("--precision", default=None, help="fp32 | bf16 (overrides the matrix)")
    val.add_argument("--tuned", type=Path, default=None, help="a tuned.yaml from `tune`")

    rep = sub.add_parser("report", help="rebuild <results>/<matrix>/ (rows.csv, leaderboard.md) from MLflow, "
                                        "or a report from a rows.csv alone")
    which = rep.add_mutually_exclusive_group(required=True)
    which.add_argument("--matrix", help="matrix name (the MLflow experiment)")
    which.add_argument("--rows", type=Path, help="a rows.csv: rebuild the report from it alone (no MLflow)")
    rep.add_argument("--out", type=Path, default=None, help="with --rows: where to write (default: its folder)")
    rep.add_argument("--publish", type=Path, default=None,
                     help="with --matrix: also write rows.csv and the pages into <PUBLISH>/<matrix>/ (e.g. results)")
    rep.add_argument("--benchmarks", type=Path, default=None,
                     help="also write the leaderboard and its provenance into this file "
                          "(docs/leaderboards.md) between <!-- leaderboard:<matrix>:start/end --> markers")
    _common(rep)

    data = sub.add_parser("data", help="data set utilities")
    dsub = data.add_subparsers(dest="data_command", required=True)
    imp = dsub.add_parser("import", help="unpack a data set archive into the data root")
    imp.add_argument("archive", type=Path)
    imp.add_argument("--data-root", type=Path, default=None)

    ui = sub.add_parser("ui", help="start the MLflow UI on the results store (localhost)")
    _common(ui)
    ui.add_argument("--port", type=int, default=5000)
    return ap


def executor_options(text: str) -> dict:
    """``--executor-options``: a JSON object, or one line naming the flag and the problem."""
    from bench.config import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--executor-options is not valid JSON ({e.msg} at column {e.colno}): "
                          """pass an object, e.g. --executor-options '{"workers": 2}'""") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--executor-options must be a JSON object, e.g. '{{\"workers\": 2}}', got {text!r}")
    return value


def seed_list(text: str | None) -> list[int] | None:
    """``--seeds`` of ``run`` (None: the matrix's own), parsed as every ``--seeds`` is (bench/config.py)."""
    from bench.config import parse_seeds

    return None if text is None else parse_seeds(text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("bench").setLevel(logging.INFO)
    for noisy in ("alembic", "mlflow", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from bench.config import ConfigError
    from bench.dataspec import DataUnavailableError
    from bench.registry import BY_LISTING, BrokenComponentError, UnknownNameError

    try:
        from bench import driver

        if args.command == "run":
            opts = driver.RunOptions(
                matrix=args.matrix, results_dir=args.results_dir, data_root=args.data_root,
                cache_dir=args.cache_dir, executor=args.executor,
                executor_options=executor_options(args.executor_options), fresh=args.fresh,
                dry_run=args.dry_run, device=args.device, precision=args.precision,
                tracking_uri=args.tracking_uri, download=args.download, compile=args.compile,
                tuned=args.tuned, seeds=seed_list(args.seeds), from_rows=tuple(args.from_rows),
            )
            summary = driver.run_matrix(opts)
            if not args.dry_run:
                print(f"{summary.finished} results, {summary.skipped} skipped (n/a), "
                      f"{len(summary.failed)} failed, {summary.resumed} resumed; "
                      f"{summary.seconds:.0f}s; leaderboard: {summary.leaderboard}")
                for f in summary.failed:
                    print(f"FAILED {f}", file=sys.stderr)
            return summary.exit_code
        if args.command == "tune":
            from bench import tune as tuning
            from bench.config import parse_seeds

            topts = tuning.TuneOptions(
                matrix=args.matrix, trials=tuning.DEFAULT_TRIALS if args.trials is None else args.trials,
                methods=args.methods.split(",") if args.methods else None,
                seeds=tuning.DEFAULT_SEEDS if args.seeds is None else tuple(parse_seeds(args.seeds)),
                results_dir=args.results_dir,
                data_root=args.data_root, cache_dir=args.cache_dir, tracking_uri=args.tracking_uri,
                device=args.device, precision=args.precision, dry_run=args.dry_run, download=args.download,
            )
            result = tuning.tune(topts)
            if not args.dry_run:
                for name, t in result.studies.items():
                    best = "all trials failed" if t.best is None else f"best {t.best:.3f} {t.values}"
                    print(f"{name}: {t.trials} trials ({t.failed} failed), {best}")
                print(f"tuned values: {result.path} ({result.seconds:.0f}s)")
            return 0
        if args.command == "ls":
            print(driver.list_components(args.kind))
            for problem in BY_LISTING[args.kind].broken if args.kind in BY_LISTING else ():
                print(f"warning: not listed, cannot be imported: {problem}", file=sys.stderr)
            return 0
        if args.command == "validate":
            opts = driver.RunOptions(matrix=args.matrix, data_root=args.data_root, dry_run=args.dry_run,
                                     download=args.download, executor=args.executor,
                                     executor_options=executor_options(args.executor_options),
                                     device=args.device, precision=args.precision, tuned=args.tuned)
            matrix, warnings = driver.prepare(opts)
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
            print(f"matrix {matrix.name} is valid: {driver.size_text(matrix.cells())}")
            return 0
        if args.command == "report":
            if args.rows is not None:
                if args.benchmarks or args.publish:
                    raise ConfigError("--benchmarks and --publish read MLflow: use them with --matrix, not --rows")
                print(driver.report_rows(args.rows, args.out))
                return 0
            if args.out is not None:
                raise ConfigError("--out goes with --rows; with --matrix the report goes to <results-dir>/<matrix>/")
            print(driver.report(args.matrix, args.results_dir, args.tracking_uri, args.benchmarks, args.publish))
            return 0
        if args.command == "data":
            print(f"unpacked into {driver.import_archive(args.archive, args.data_root)}")
            return 0
        if args.command == "ui":
            return driver.start_ui(args.results_dir, args.port, args.tracking_uri)
    except (ConfigError, UnknownNameError, DataUnavailableError, BrokenComponentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 2
