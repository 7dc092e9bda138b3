"""MLflow tracking: only the driver process writes here.

One experiment per matrix, one parent run per invocation, one nested run per
(cell, method[, request]) carrying params, metrics, tags and its cell's figures
(``figures/``), lasting its compute time. The experiment is tagged as a training
experiment (MLflow 3's "Machine learning" kind); an invocation left RUNNING by a dead
driver is marked KILLED by the next one (which holds the store: bench/storelock.py).
The tracking URI is
always explicit (default ``sqlite:///<results dir>/mlflow.db``: MLflow 3's file
store is not used). A row run is written in full and only then marked
``bench.status`` + FINISHED, so resume never trusts a half-written run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.config import Cell
from bench.report.sanity import BACKFILLED_TAG, SIZES_TAG
from bench.runner import CellResult, MethodResult
from bench.storelock import store_writes

log = logging.getLogger("bench.tracking")

ROW_KIND = "row"
CHECKPOINTS_TAG = "bench.checkpoints"
CODE_TAG = "bench.code"


def default_uri(results_dir: Path) -> str:
    return f"sqlite:///{Path(results_dir).resolve() / 'mlflow.db'}"


def cell_params(cell: Cell) -> dict[str, Any]:
    return {
        "dataset": cell.dataset,
        "encoder": cell.encoder_label,
        "encoder.name": cell.encoder,
        "backbone": cell.backbone,
        "scenario": cell.scenario,
        "seed": cell.seed,
        "precision": cell.precision,
        "compile": cell.compile,  # recorded, not part of the config hash (speed only)
        **{f"train.{k}": v for k, v in dataclasses.asdict(cell.train).items()},
        **{f"data.{k}": v for k, v in dataclasses.asdict(cell.data).items()},
        "data.fingerprint": cell.data_fingerprint,  # the content the row was computed on (bench/data.py)
        **{f"audit.{k}": v for k, v in dataclasses.asdict(cell.audit).items()},
        **{f"encoder.{k}": v for k, v in cell.encoder_params},
    }


STATUS_PREFIX = {"skipped": "n/a: ", "failed": "failed: "}  # run names of rows without results


def run_name(row: MethodResult, label: str) -> str:
    """The row's run name in the MLflow UI: ``method | cell``, prefixed ``n/a: `` for a method that
    does not apply (skipped) and ``failed: `` for a failure, so a run without metrics never reads as
    a success. The run itself stays FINISHED: resume and the results frame trust FINISHED runs that
    carry ``bench.status`` (the status says skipped or failed)."""
    return f"{STATUS_PREFIX.get(row.status, '')}{row.method} | {label}"


def cell_slug(cell: Cell) -> str:
    s = f"{cell.dataset}_{cell.encoder_label}_{cell.backbone}_{cell.scenario}_s{cell.seed}"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in s)


# MLflow 3 shows an experiment without this tag (or with genai_development) as a GenAI app;
# "custom_model_development" is its "Machine learning" kind, whose page is the runs table.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
FIGURES = "figures"  # artifact path of a row run's figures (its cell's auditor plots)


class Tracker:
    """The MLflow store of one results folder. Its read-then-write sequences (store creation
    and migration, experiment creation, a row replacing an older one of its hash) run under
    the folder's write lock (bench/storelock.py), so concurrent processes never duplicate a
    row nor crash in a migration."""

    def __init__(self, results_dir: Path, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.results_dir = Path(results_dir)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.uri = uri or default_uri(self.results_dir)
        self.writes = store_writes(self.results_dir)
        with self.writes:  # a fresh sqlite store is created and migrated here, by one process at a time
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)

    # --- experiments and parent runs -----------------------------------------
    def experiment_id(self, name: str, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is None and not create:
            return None
        if exp is None:
            with self.writes:
                exp = self.client.get_experiment_by_name(name)  # created meanwhile by another process
                if exp is None:
                    artifacts = (self.results_dir / "mlartifacts" / name).resolve()
                    exp_id = self.client.create_experiment(name, artifact_location=artifacts.as_uri(),
                                                           tags=dict([EXPERIMENT_KIND]))
                    return exp_id
        if create and exp.tags.get(EXPERIMENT_KIND[0]) is None:  # stores written before the tag
            self.client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
        return exp.experiment_id

    def start_parent(self, exp_id: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(exp_id, tags={"bench.kind": "invocation", **tags},
                                     run_name=f"run {time.strftime('%Y-%m-%d %H:%M:%S')}")
        return run.info.run_id

    def end_parent(self, run_id: str, failed: bool) -> None:
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def mark_killed(self) -> int:
        """Mark KILLED every invocation still RUNNING: called by a driver holding the store lock,
        so their drivers are dead (killed, or their machine lost), and MLflow should say so."""
        from mlflow.entities import ViewType

        exps = [e.experiment_id for e in self.client.search_experiments(view_type=ViewType.ALL)]
        if not exps:
            return 0
        stale = self.client.search_runs(
            exps, filter_string="tags.`bench.kind` = 'invocation' and attributes.status = 'RUNNING'",
            run_view_type=ViewType.ALL, max_results=1000)
        for r in stale:
            self.client.set_terminated(r.info.run_id, "KILLED")
        return len(stale)

    def tag_parent(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def invocations(self, experiment: str, kind: str = "invocation") -> list[dict[str, Any]]:
        """Parent runs of one kind (``invocation``: one per ``run``; ``tune``: one per ``tune``):
        id, tags, start time, status; oldest first."""
        exp_id = self.experiment_id(experiment, create=False)
        if exp_id is None:
            return []
        runs = self.client.search_runs([exp_id], filter_string=f"tags.`bench.kind` = '{kind}'",
                                       max_results=1000)
        return sorted(({"run_id": r.info.run_id, "tags": dict(r.data.tags), "status": r.info.status,
                        "start_time": r.info.start_time} for r in runs),
                      key=lambda i: i["start_time"])

    # --- results -------------------------------------------------------------
    def finished_hashes(self, exp_id: str) -> set[str]:
        """Config hashes of rows already logged in full (what resume skips)."""
        return {
            r.data.tags["bench.config_hash"]
            for r in self._rows(exp_id)
            if r.info.status == "FINISHED" and r.data.tags.get("bench.status", "failed") != "failed"
        }

    def discard_unfinished(self, exp_id: str) -> int:
        """Delete row runs a killed driver left half-written, so nothing is counted twice."""
        stale = [r for r in self._rows(exp_id) if r.info.status != "FINISHED" or "bench.status" not in r.data.tags]
        for r in stale:
            self.client.delete_run(r.info.run_id)
        return len(stale)

    def _rows(self, exp_id: str, where: str = "") -> list[Any]:
        from mlflow.entities import ViewType

        query = f"tags.`bench.kind` = '{ROW_KIND}'" + (f" and {where}" if where else "")
        out, token = [], None
        while True:
            page = self.client.search_runs(
                [exp_id], filter_string=query,
                run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token,
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    def log_cell(self, exp_id: str, parent_id: str, result: CellResult) -> None:
        """Every row of the cell, each run carrying the cell's figures under ``figures/``, so a
        row's page in the MLflow UI shows the plots its numbers come from."""
        cell = result.cell
        with tempfile.TemporaryDirectory() as tmp:
            figures = None
            if result.artifacts:
                figures = Path(tmp)
                for name, blob in result.artifacts.items():
                    path = figures / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(blob)
            for row in result.rows:
                self.log_row(exp_id, parent_id, cell, row, figures=figures, scenario_name=result.scenario_name)

    def log_row(self, exp_id: str, parent_id: str, cell: Cell, row: MethodResult, figures: Path | None = None,
                scenario_name: str = "") -> None:
        """``scenario_name``: the scenario with its class by name ("class:2 (delta)", from the runner),
        a param and part of the run name; the ``scenario`` param stays as written, for filtering.
        ``figures``: a folder of PNGs logged on the row's run under ``figures/`` (tag
        ``bench.figures_run`` = the run itself). The run lasts the row's compute time
        (``row.info["seconds"]``: unlearning + audit; the training time for the original), so
        MLflow's Duration column is the compute, not the logging."""
        tags = {
            "bench.kind": ROW_KIND,
            "mlflow.parentRunId": parent_id,
            "bench.cell": cell.label,
            "bench.cell_slug": cell_slug(cell),
            "bench.method": row.method,
            "bench.request": str(row.request),
            "bench.config_hash": row.config_hash,
            "bench.reason": row.reason[:4000],
            "bench.info": str(row.info)[:4000],
            "bench.report.flags": "\n".join(row.info.get("flags", []))[:4000],  # bench/report/flags.py
            "bench.cell_flags": "\n".join(row.info.get("cell_flags", []))[:4000],
            SIZES_TAG: json.dumps(row.info["sizes"]) if "sizes" in row.info else "",  # audit splits
            "bench.tuned": json.dumps(row.info["tuned"], sort_keys=True, default=str)  # bench/tuned.py
            if "tuned" in row.info else "",
            # the checkpoints the row was computed from (role -> sha256) and its code versions
            CHECKPOINTS_TAG: json.dumps(row.info.get("checkpoints", {}), sort_keys=True),
            CODE_TAG: json.dumps(row.info.get("code", {}), sort_keys=True),
        }
        with self.writes:  # query, create, delete: two writers of one hash never both keep theirs
            self._write_row(exp_id, cell, row, tags, figures, scenario_name)

    def _write_row(self, exp_id: str, cell: Cell, row: MethodResult, tags: dict[str, str],
                   figures: Path | None, scenario_name: str) -> None:
        from mlflow.entities import Metric, Param, RunTag

        older = self._rows(exp_id, f"tags.`bench.config_hash` = '{row.config_hash}'")
        shown = scenario_name or cell.scenario
        label = cell.label.replace(f" {cell.scenario} ", f" {shown} ", 1)
        end = int(time.time() * 1000)
        seconds = row.info.get("seconds", row.info.get("train_seconds", 0.0))
        start = end - int(1000 * max(0.0, float(seconds or 0.0)))
        if row.status in STATUS_PREFIX:  # the UI's Description: why this run has no metrics
            tags = {**tags, "mlflow.note.content": f"{row.status}: {row.reason}"[:4000]}
        run = self.client.create_run(exp_id, start_time=start, tags=tags, run_name=run_name(row, label))
        rid = run.info.run_id
        if figures is not None:
            self.client.log_artifacts(rid, str(figures), artifact_path=FIGURES)
            self.client.set_tag(rid, "bench.figures_run", rid)
        params = {**cell_params(cell), "scenario_name": shown, "method": row.method, "request": row.request,
                  **{f"hp.{k}": v for k, v in row.params.items()}}
        self.client.log_batch(
            rid,
            metrics=[Metric(k, float(v), end, 0) for k, v in row.metrics.items()],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        )
        # the status tag last: a run without it was interrupted mid-write
        self.client.log_batch(rid, tags=[RunTag("bench.status", row.status)])
        self.client.set_terminated(rid, "FINISHED", end_time=end)
        for prev in older:  # replaced only once the new row is complete: a failure retried, or --fresh
            self.client.delete_run(prev.info.run_id)

    # --- reading back --------------------------------------------------------
    def results_frame(self, experiment: str) -> pd.DataFrame:
        """One row per finished (cell, method[, request]) run: params, metrics and status."""
        exp_id = self.experiment_id(experiment, create=False)
        if exp_id is None:
            return pd.DataFrame()
        records = []
        for r in self._rows(exp_id):
            if r.info.status != "FINISHED" or "bench.status" not in r.data.tags:
                continue
            rec: dict[str, Any] = dict(r.data.params)
            rec.update({f"m.{k}": v for k, v in r.data.metrics.items()})
            rec.update({"status": r.data.tags["bench.status"], "reason": r.data.tags.get("bench.reason", ""),
                        "run_id": r.info.run_id, "figures_run": r.data.tags.get("bench.figures_run", ""),
                        "cell_slug": r.data.tags.get("bench.cell_slug", ""), "start_time": r.info.start_time,
                        "flags": r.data.tags.get("bench.report.flags", ""),
                        "cell_flags": r.data.tags.get("bench.cell_flags", ""),
                        "sizes": r.data.tags.get(SIZES_TAG, ""),
                        "sizes_backfilled": r.data.tags.get(BACKFILLED_TAG, ""),
                        "tuned": r.data.tags.get("bench.tuned", ""),
                        "config_hash": r.data.tags.get("bench.config_hash", ""),
                        "checkpoints": r.data.tags.get(CHECKPOINTS_TAG, ""),
                        "code": r.data.tags.get(CODE_TAG, ""),
                        "parent_run": r.data.tags.get("mlflow.parentRunId", "")})
            records.append(rec)
        df = pd.DataFrame.from_records(records)
        if len(df):
            df["seed"] = df["seed"].astype(int)
            df["request"] = df["request"].astype(int)
            # rows logged before the param existed show the scenario as written
            df["scenario_name"] = df.get("scenario_name", df["scenario"]).fillna(df["scenario"])
        return df

    def artifact_dir(self, run_id: str) -> Path | None:
        uri = self.client.get_run(run_id).info.artifact_uri
        return Path(uri.removeprefix("file://")) if uri.startswith("file://") else None

    def figure_paths(self, run_id: str) -> list[Path]:
        """Local paths of the PNGs a row run carries under ``figures/`` (sorted): in place for a
        local artifact store, else downloaded once into ``<results>/.figures/<run id>/``."""
        local = self.artifact_dir(run_id)
        if local is None:
            local = self.results_dir / ".figures" / run_id
            if not (local / FIGURES).is_dir():
                try:
                    self.client.download_artifacts(run_id, FIGURES, str(local))
                except Exception:  # no figures on this run
                    return []
        return sorted((local / FIGURES).glob("**/*.png"))
