"""Split sizes for rows an older runner stored without them: ``python -m bench.backfill --matrix cpu``.

The report (bench/report/) reads every standard error's split sizes from the rows' ``bench.sizes``
tag. Rows written before the runner stored it get the sizes recomputed here from the matrix's
own splits (the same code the runner uses), tagged ``bench.sizes_backfilled``. It lives outside
the report room because it rebuilds cells.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.report.sanity import BACKFILLED_TAG, SIZES_TAG


def backfill(matrix_name: str, results: Path, data_root: Path | None, cache: Path | None,
             uri: str | None = None) -> int:
    """Add ``bench.sizes`` to every row of ``matrix_name`` that lacks it, from the matrix's
    own splits (the same code the runner uses). Returns the number of runs tagged."""
    from bench.config import load_matrix
    from bench.data import default_data_root
    from bench.runner import CellRunner
    from bench.tracking import Tracker, cell_slug

    matrix = load_matrix(matrix_name)
    tracker = Tracker(results, uri)
    df = tracker.results_frame(matrix.name)
    if df.empty:
        return 0
    todo = df[df["sizes"].astype(str) == ""]
    cells = {cell_slug(c): c for c in matrix.cells(str(data_root or default_data_root()))}
    tagged = 0
    for slug, g in todo.groupby("cell_slug"):
        if slug not in cells:
            print(f"skipped {slug}: not a cell of matrix {matrix.name} as configured now", file=sys.stderr)
            continue
        runner = CellRunner(cells[slug], cache or results / "cache")
        for _, row in g.iterrows():
            sizes = runner.audit_sizes(int(row.request))
            tracker.client.set_tag(row.run_id, SIZES_TAG, json.dumps(sizes))
            tracker.client.set_tag(row.run_id, BACKFILLED_TAG, "1")
            tagged += 1
    return tagged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__.splitlines()[0])
    p.add_argument("--matrix", required=True, help="shipped matrix name or YAML path")
    p.add_argument("--results-dir", type=Path, default=Path("runs"))
    p.add_argument("--tracking-uri", default=None, help="default: sqlite:///<results-dir>/mlflow.db")
    p.add_argument("--data-root", type=Path, default=None, help="data sets folder (default: $BENCH_DATA)")
    p.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: <results>/cache)")
    a = p.parse_args(argv)
    from bench.config import ConfigError
    from bench.data import DataUnavailableError
    from bench.registry import UnknownNameError

    try:
        n = backfill(a.matrix, a.results_dir, a.data_root, a.cache_dir, a.tracking_uri)
    except (ConfigError, UnknownNameError, DataUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"tagged {n} runs of matrix {a.matrix} with their split sizes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
