"""MLflow tracking: only the driver process writes here.

One experiment per matrix, one parent run per invocation, one nested run per
(cell, method[, request]) carrying params, metrics and tags. The tracking URI is
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

log = logging.getLogger("bench.tracking")

ROW_KIND = "row"


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
        **{f"train.{k}": v for k, v in dataclasses.asdict(cell.train).items()},
        **{f"data.{k}": v for k, v in dataclasses.asdict(cell.data).items()},
        **{f"audit.{k}": v for k, v in dataclasses.asdict(cell.audit).items()},
        **{f"encoder.{k}": v for k, v in cell.encoder_params},
    }


def cell_slug(cell: Cell) -> str:
    s = f"{cell.dataset}_{cell.encoder_label}_{cell.backbone}_{cell.scenario}_s{cell.seed}"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in s)


class Tracker:
    def __init__(self, results_dir: Path, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.results_dir = Path(results_dir)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.uri = uri or default_uri(self.results_dir)
        self.client = MlflowClient(tracking_uri=self.uri)

    # --- experiments and parent runs -----------------------------------------
    def experiment_id(self, name: str, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        artifacts = (self.results_dir / "mlartifacts" / name).resolve()
        return self.client.create_experiment(name, artifact_location=artifacts.as_uri())

    def start_parent(self, exp_id: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(exp_id, tags={"bench.kind": "invocation", **tags},
                                     run_name=f"run {time.strftime('%Y-%m-%d %H:%M:%S')}")
        return run.info.run_id

    def end_parent(self, run_id: str, failed: bool) -> None:
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def tag_parent(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def invocations(self, experiment: str) -> list[dict[str, Any]]:
        """Parent runs (one per ``run`` invocation): id, tags, start time, status; oldest first."""
        exp_id = self.experiment_id(experiment, create=False)
        if exp_id is None:
            return []
        runs = self.client.search_runs([exp_id], filter_string="tags.`bench.kind` = 'invocation'",
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
        cell = result.cell
        slug = cell_slug(cell)
        if result.artifacts:
            with tempfile.TemporaryDirectory() as tmp:
                for name, blob in result.artifacts.items():
                    path = Path(tmp) / slug / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(blob)
                self.client.log_artifacts(parent_id, str(Path(tmp) / slug), artifact_path=slug)
        for row in result.rows:
            self.log_row(exp_id, parent_id, cell, row, figures=bool(result.artifacts))

    def log_row(self, exp_id: str, parent_id: str, cell: Cell, row: MethodResult, figures: bool) -> None:
        from mlflow.entities import Metric, Param, RunTag

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
        }
        if figures:
            tags["bench.figures_run"] = parent_id
        older = self._rows(exp_id, f"tags.`bench.config_hash` = '{row.config_hash}'")
        run = self.client.create_run(exp_id, tags=tags, run_name=f"{row.method} | {cell.label}")
        rid = run.info.run_id
        params = {**cell_params(cell), "method": row.method, "request": row.request,
                  **{f"hp.{k}": v for k, v in row.params.items()}}
        now = int(time.time() * 1000)
        self.client.log_batch(
            rid,
            metrics=[Metric(k, float(v), now, 0) for k, v in row.metrics.items()],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        )
        # the status tag last: a run without it was interrupted mid-write
        self.client.log_batch(rid, tags=[RunTag("bench.status", row.status)])
        self.client.set_terminated(rid, "FINISHED")
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
                        "parent_run": r.data.tags.get("mlflow.parentRunId", "")})
            records.append(rec)
        df = pd.DataFrame.from_records(records)
        if len(df):
            df["seed"] = df["seed"].astype(int)
            df["request"] = df["request"].astype(int)
        return df

    def artifact_dir(self, run_id: str) -> Path | None:
        uri = self.client.get_run(run_id).info.artifact_uri
        return Path(uri.removeprefix("file://")) if uri.startswith("file://") else None
