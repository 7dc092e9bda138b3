"""The raw rows of a matrix as one CSV file (``rows.csv``): what every report is rebuilt from.

One line per row of ``bench.tracking.Tracker.results_frame`` (cell x method x seed x request:
params, ``m.<metric>`` columns, status, flags, ...), with what it was computed from
(``config_hash``, ``precision``, ``data.fingerprint``, ``code``: json of the encoder's and
method's versions, ``checkpoints``: json role -> sha256) and where (its invocation's parent
run id ``invocation``, ``commit``, ``machine``, ``date``, ``wall_s``, ``command``).
MLflow run ids are left out: they name nothing outside the store. Columns and rows are in a
fixed order, so a rerun that changes nothing rewrites the same bytes.

``read`` gives back the frame the report reads from MLflow, so a report built from the file
is the report built from the store. A row's identity is its ``config_hash`` (the cell with
its seed, the method with its hyperparameters, the request, the data's content and the code
versions): a file holds each at most once.

The unit that moves between machines is a whole cell-seed (:func:`cell_seed_columns`): a
seed's methods and yardsticks are computed from one model cache, so :func:`merge` takes each
cell-seed's rows from one source only.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.config import ConfigError

PROVENANCE = ("invocation", "commit", "machine", "date", "wall_s", "command")
IDENTITY = ("config_hash", "precision", "data.fingerprint", "code", "checkpoints")
KEY = ("dataset", "encoder", "backbone", "scenario", "request", "seed", "method")
REQUIRED = (*KEY, "status", "start_time", *IDENTITY, *PROVENANCE)
INTEGERS = ("seed", "request", "start_time")
VOLATILE = ("run_id", "figures_run", "parent_run")  # MLflow ids: meaningless outside the store
LEAD = (*KEY, "status", *IDENTITY)  # the columns a reader looks at first, in this order


class RowsError(ConfigError):
    """A rows file the report cannot trust (the CLI prints it as one line and exits 2)."""


def _date(ms: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ms) / 1000)) if ms else ""


def export(df: pd.DataFrame, invocations: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows file's frame of a results frame: provenance joined from each row's invocation
    (``Tracker.invocations``: its tags ``bench.commit``, ``bench.machine``, ``bench.wall_s``,
    ``bench.command``/``bench.argv`` and its start as ``date``, UTC), MLflow ids dropped."""
    out = df.copy()
    for col in REQUIRED:
        if col not in out:
            out[col] = ""
    by_id = {i["run_id"]: i for i in invocations}
    parents = out["parent_run"] if "parent_run" in out else pd.Series("", index=out.index)
    inv = [by_id.get(p, {}) for p in parents]
    tags = [i.get("tags", {}) for i in inv]
    out["invocation"] = parents.fillna("").astype(str)
    out["commit"] = [t.get("bench.commit", "") for t in tags]
    out["machine"] = [t.get("bench.machine", "") for t in tags]
    out["date"] = [_date(i.get("start_time")) for i in inv]
    out["wall_s"] = [t.get("bench.wall_s", "") for t in tags]
    out["command"] = [t.get("bench.command") or t.get("bench.argv", "") for t in tags]
    return normalize(out.drop(columns=[c for c in VOLATILE if c in out]))


def _order(df: pd.DataFrame) -> pd.DataFrame:
    metrics = sorted(c for c in df.columns if c.startswith("m."))
    rest = sorted(c for c in df.columns if c not in (*LEAD, *PROVENANCE) and c not in metrics)
    df = df[[*LEAD, *PROVENANCE, *rest, *metrics]]
    return df.sort_values([*KEY, "config_hash"], kind="stable").reset_index(drop=True)


def _csv(df: pd.DataFrame) -> str:
    return _order(df).to_csv(index=False, lineterminator="\n")


def write(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` (from :func:`export`, :func:`read` or :func:`merge`) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(_csv(df))
    os.replace(tmp, path)
    return path


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` exactly as writing and reading it back gives it (what the report is built from)."""
    return _parse(io.StringIO(_csv(df)), "rows")


def read(path: Path) -> pd.DataFrame:
    """The rows of ``path`` as the report reads the MLflow frame (params as text, ``m.*`` as
    floats, seed/request/start_time as integers, ``parent_run`` = ``invocation``). Raises
    RowsError on a missing file or column, a duplicated ``config_hash`` or a non-numeric value."""
    path = Path(path)
    if not path.is_file():
        raise RowsError(f"rows file {path} does not exist: pass the rows.csv that `python -m bench report` wrote")
    try:
        return _parse(path, str(path))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise RowsError(f"{path} is not a rows CSV ({str(e).splitlines()[0]}): "
                        "pass the rows.csv that `python -m bench report` wrote") from None


def _parse(source: Any, name: str) -> pd.DataFrame:
    df = pd.read_csv(source, dtype=str, keep_default_na=False)
    fix = "write it with `python -m bench report` (bench/rows.py) rather than by hand"
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise RowsError(f"{name}: missing column(s) {', '.join(missing)}: {fix}")
    empty = df.index[df.config_hash == ""]
    if len(empty):
        raise RowsError(f"{name}: line {empty[0] + 2} has no config_hash: {fix}")
    dup = df.config_hash[df.config_hash.duplicated()]
    if len(dup):
        raise RowsError(f"{name}: config_hash {dup.iloc[0]} appears {int((df.config_hash == dup.iloc[0]).sum())} "
                        f"times (a row's identity): keep one line per config_hash")
    for col in [*INTEGERS, *(c for c in df.columns if c.startswith("m."))]:
        values = df[col].where(df[col] != "", None) if col.startswith("m.") else df[col]
        num = pd.to_numeric(values, errors="coerce")
        bad = num.isna() & values.notna() & ~values.astype(str).str.lower().isin(("nan", ""))
        if col in INTEGERS:
            bad |= num.isna() | (num.notna() & (num != num.round()))
        if bad.any():
            i = bad[bad].index[0]
            raise RowsError(f"{name}: column {col} holds {df.at[i, col]!r} on line {i + 2}, not a number: "
                            f"fix or remove that line")
        df[col] = num.astype("int64") if col in INTEGERS else num.astype(float)
    df["parent_run"] = df["invocation"]  # the report groups rows by invocation under this name
    return df


def finished(df: pd.DataFrame) -> set[str]:
    """Config hashes of the rows that count as done (not failed), as resume counts the store's."""
    return set(df.config_hash[df.status != "failed"]) if len(df) else set()


def cell_seed_columns(df: pd.DataFrame) -> list[str]:
    """The columns that name a cell-seed: the cell's parameters (data, encoder, training and
    audit options, precision, the data's content) with its seed; methods and requests vary within."""
    own = ("dataset", "encoder", "backbone", "scenario", "seed", "precision", "data.fingerprint")
    return [c for c in df.columns if c in own or c.startswith(("train.", "data.", "audit.", "encoder."))]


def merge(store: pd.DataFrame, files: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The store's rows with the files' (all normalized frames): per cell-seed, the rows of the
    source holding most of its finished rows (the store on a tie), so no seed mixes models
    from two caches; a later file's cell-seed replaces an earlier's only by holding more. Rows
    of other sources computed from the same checkpoints join them (a default and a tuned run
    on one model cache), one row per config hash."""
    frames = [f for f in (store, *files) if len(f)]
    if len(frames) <= 1:
        return frames[0] if frames else store
    allr = pd.concat([f.assign(_source=i) for i, f in enumerate(frames)], ignore_index=True)
    key = cell_seed_columns(allr)
    allr[key] = allr[key].fillna("")  # a column one source lacks
    counts = allr.assign(_ok=allr.status != "failed").groupby([*key, "_source"])._ok.sum().reset_index()
    pick = counts.sort_values(["_ok", "_source"], ascending=[False, True]).drop_duplicates(key)
    chosen = allr.merge(pick[[*key, "_source"]], on=[*key, "_source"], how="inner")
    # the other sources' rows computed from the very models the chosen source used (the same
    # checkpoints' sha256, e.g. a default run and a tuned run from one model cache) join them
    models = chosen[[*key, "checkpoints"]].drop_duplicates()
    models = models[models.checkpoints.fillna("").astype(str).ne("")]  # rows that record no models join nothing
    same = allr.merge(models, on=[*key, "checkpoints"], how="inner")
    out = pd.concat([chosen, same], ignore_index=True).sort_values("_source", kind="stable")
    # one row per config hash (a row's identity), the earliest source's: the store's before a file's
    out = out.drop_duplicates("config_hash").drop(columns="_source")
    return normalize(out)
