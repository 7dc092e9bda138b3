"""One driver per store, a store safe under concurrent writers, and an MLflow store a user can
browse: runs table by default, figures and compute time on each row, no RUNNING ghost, and a
`ui` that takes its server down with it. Real processes where the point is concurrency."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.entities import ViewType

from bench.cli import main
from bench.driver import ui_experiments
from bench.storelock import HOLDER, StoreBusyError, StoreLock
from bench.tracking import EXPERIMENT_KIND, ROW_KIND, Tracker
from tests.conftest import TINY

QUICK = {**TINY, "methods": ["retrain", {"finetune": {"epochs": 1}}],
         "data": {"n_val": 100, "n_train": 200, "n_test": 100},
         "audit": {"views": 4, "max_members": 100, "references": 1}}
ENV = {**os.environ, "TQDM_DISABLE": "1"}


def write(path: Path, name: str, **overrides) -> Path:
    path.write_text(yaml.safe_dump({**QUICK, "name": name, **overrides}))
    return path


def rows(tracker: Tracker, name: str) -> list:
    exp = tracker.experiment_id(name, create=False)
    return tracker.client.search_runs([exp], f"tags.`bench.kind` = '{ROW_KIND}'", ViewType.ACTIVE_ONLY, 1000)


def barrier_script(folder: Path, parties: int, body: str) -> str:
    """Python source that imports first, then waits until ``parties`` processes are ready, so
    the racing part (``body``) starts within milliseconds in all of them."""
    return textwrap.dedent(f"""
        import os, sys, time, pathlib
        from bench.cli import main
        from bench.tracking import Tracker
        gate = pathlib.Path({str(folder)!r})
        (gate / f"ready-{{os.getpid()}}").touch()
        deadline = time.time() + 300
        while len(list(gate.glob("ready-*"))) < {parties}:
            assert time.time() < deadline, "the other process never got ready"
            time.sleep(0.005)
    """) + textwrap.dedent(body)


# --------------------------------------------------------------------------- one driver per store


def test_second_driver_is_refused_naming_the_holder(tmp_path, capsys):
    results = tmp_path / "results"
    matrix = write(tmp_path / "held.yaml", "held")
    with StoreLock(results, "python -m bench run --matrix other"):
        before = sorted(p.name for p in results.iterdir())
        capsys.readouterr()
        assert main(["run", "--matrix", str(matrix), "--results-dir", str(results)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is in use by another driver" in err[0]
        assert f"pid {os.getpid()} on {socket.gethostname()}" in err[0]
        assert "python -m bench run --matrix other" in err[0]
        assert sorted(p.name for p in results.iterdir()) == before  # no mlflow.db, no cache, no board
    assert not (results / HOLDER).exists()  # released on exit, record removed


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    results = tmp_path / "results"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from bench.storelock import StoreLock
        with StoreLock({str(results)!r}, "holder"):
            print("held", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusyError, match=f"pid {holder.pid} .*: holder"):
            with StoreLock(results, "second"):
                pass
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock
        holder.wait(timeout=30)
        assert json.loads((results / HOLDER).read_text())["pid"] == holder.pid  # its stale record
        with StoreLock(results, "third"):
            assert json.loads((results / HOLDER).read_text())["command"] == "third"
    finally:
        holder.kill()
        holder.wait()


def test_two_real_drivers_on_one_fresh_store(tmp_path):
    """Started within milliseconds on a fresh store: one runs, the other is refused in one line
    naming it (or, if the first was already done, resumes everything); never a migration crash,
    never a row twice."""
    results, gate = tmp_path / "results", tmp_path / "gate"
    gate.mkdir()
    matrix = write(tmp_path / "twice.yaml", "twice")
    body = f"sys.exit(main(['run', '--matrix', {str(matrix)!r}, '--results-dir', {str(results)!r}]))\n"
    script = barrier_script(gate, 2, body)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) in ([0, 0], [0, 2]), [o[1][-2000:] for o in outs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert "already exists" not in err and "Traceback" not in err
        if p.returncode == 2:
            other = next(q for q in procs if q is not p)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and f"in use by another driver (pid {other.pid} " in lines[0]
    tracker = Tracker(results)
    logged = rows(tracker, "twice")
    hashes = [r.data.tags["bench.config_hash"] for r in logged]
    assert len(hashes) == len(set(hashes)) >= 3  # original, retrain, finetune: each once
    assert len(tracker.client.search_experiments(filter_string="name = 'twice'")) == 1


def test_concurrent_writers_are_safe_without_the_driver_lock(tmp_path):
    """Two processes opening one fresh sqlite store at once (the migration race), creating one
    experiment and logging the same six rows: one experiment, six rows, no crash."""
    results, gate = tmp_path / "results", tmp_path / "gate"
    gate.mkdir()
    body = f"""
        from bench.config import Cell
        from bench.runner import MethodResult
        t = Tracker({str(results)!r})
        exp = t.experiment_id("race")
        parent = t.start_parent(exp, {{}})
        cell = Cell("race", "digits", "simclr", "convnet-s", "random:0.1", 0)
        for i in range(6):
            t.log_row(exp, parent, cell, MethodResult(f"m{{i}}", "finished", f"hash{{i}}", metrics={{"TA": 1.0}}))
        t.end_parent(parent, False)
        print("ok")
    """
    script = barrier_script(gate, 2, body)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    tracker = Tracker(results)
    assert len(tracker.client.search_experiments(filter_string="name = 'race'")) == 1
    hashes = sorted(r.data.tags["bench.config_hash"] for r in rows(tracker, "race"))
    assert hashes == [f"hash{i}" for i in range(6)]


# --------------------------------------------------------------------------- what the store shows


@pytest.fixture(scope="module")
def browsed(tmp_path_factory):
    """A tiny run with figures, on a store where an earlier driver died with its parent RUNNING."""
    folder = tmp_path_factory.mktemp("browse")
    results = folder / "results"
    matrix = write(folder / "browse.yaml", "browse", auditors=["linear_probe", "alignment_gap"])
    tracker = Tracker(results)
    ghost = tracker.start_parent(tracker.experiment_id("browse"), {"bench.matrix": "browse"})
    assert main(["run", "--matrix", str(matrix), "--results-dir", str(results)]) == 0
    return Tracker(results), ghost


def test_a_dead_drivers_parent_run_is_marked_killed(browsed):
    tracker, ghost = browsed
    assert tracker.client.get_run(ghost).info.status == "KILLED"
    statuses = {i["status"] for i in tracker.invocations("browse") if i["run_id"] != ghost}
    assert statuses == {"FINISHED"}


def test_experiment_opens_as_a_training_experiment(browsed):
    tracker, _ = browsed
    exp = tracker.client.get_experiment_by_name("browse")
    assert exp.tags.get(EXPERIMENT_KIND[0]) == EXPERIMENT_KIND[1] == "custom_model_development"
    # MLflow 3.17 decides by the browser's mode, so `ui` prints each experiment's runs-table link
    assert [e.name for e in ui_experiments(tracker.results_dir, None)] == ["browse"]


def test_each_row_run_carries_its_figures_and_lasts_its_compute(browsed):
    tracker, _ = browsed
    logged = rows(tracker, "browse")
    assert len(logged) >= 3
    for r in logged:
        assert r.data.tags["bench.figures_run"] == r.info.run_id
        figs = tracker.figure_paths(r.info.run_id)
        assert figs and all(p.suffix == ".png" and p.stat().st_size > 0 for p in figs)
        assert all("figures" in p.parts for p in figs)
        assert r.info.end_time >= r.info.start_time
    fine = next(r for r in logged if r.data.tags["bench.method"] == "finetune")
    duration_s = (fine.info.end_time - fine.info.start_time) / 1000
    assert duration_s >= fine.data.metrics["rte_s"] - 0.002  # unlearning and audit, not the logging
    assert duration_s >= 0.2  # logging alone took 19-48 ms


# --------------------------------------------------------------------------- the UI


def group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process groups from /proc (Linux)")
def test_ui_stops_its_server_on_sigterm(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "bench", "ui", "--results-dir", str(tmp_path), "--port", str(port)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
    try:
        assert ui.stdout.readline().startswith(f"MLflow UI on http://127.0.0.1:{port} ")
        deadline = time.time() + 180
        while True:
            assert ui.poll() is None and time.time() < deadline, "the UI never answered"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        children = Path(f"/proc/{ui.pid}/task/{ui.pid}/children").read_text().split()
        pgid = os.getpgid(int(children[0]))
        assert pgid != os.getpgid(ui.pid) and group_members(pgid)  # the server leads its own group
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 128 + signal.SIGTERM
        assert group_members(pgid) == []  # every server process is gone
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        ui.kill()
        ui.wait()
