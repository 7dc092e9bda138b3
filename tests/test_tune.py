"""Fair tuning: the search finds a known optimum; the objective is the mean over the tuning cells
of the leaderboard's own Avg Gap and a trial failing on any cell fails; a real tune on digits uses
only its own seeds and feeds `run --tuned`; a SIGKILLed two-seed tune resumes to exactly N trials;
tuned vs default is a paired test with known outcomes; tuned.yaml round-trips (format 1 still
loads) and is refused (exit 2) when it names what the methods do not accept."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from bench import Method, UnlearnContext, hp, integer, log_uniform, register_method, uniform
from bench.cache import ModelCache
from bench.cli import main
from bench.config import ConfigError, MethodSpec, load_matrix, validate
from bench.context import UnlearnContext as Ctx
from bench.driver import cells_of
from bench.hparams import search_space
from bench.objective import failure, frame, objective
from bench.report import tuning as report
from bench.runner import REFERENCE_SEED_STRIDE, CellRunner, MethodResult
from bench.tracking import Tracker
from bench.tune import (
    DEFAULT_SEEDS,
    FAILURE,
    GAPS,
    TRIAL_KIND,
    Study,
    cell_seeds,
    counted,
    evaluate_on,
    optimise,
    tuning_cells,
)
from bench.tuned import CellTuning, MethodTuning, Tuned, dump, load
from bench.tuned import check as check_tuned
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[1]
SEEDS_TEXT = ", ".join(map(str, DEFAULT_SEEDS))


@register_method("_tune_toy", needs=("forget",))
@dataclass
class TuneToy(Method):
    """Test-only: ``steps`` batches of gradient ascent on D_f at ``lr``; ``pause`` makes a trial
    last long enough to be killed in the middle."""

    lr: float = hp(1e-3, gt=0, tune=log_uniform(1e-4, 1e-2))
    steps: int = hp(1, ge=1, tune=integer(1, 3))
    pause: float = hp(0.0, ge=0)

    def unlearn(self, ctx: UnlearnContext) -> None:
        time.sleep(self.pause)
        opt = ctx.optimizer("sgd", lr=self.lr)
        for i, batch in enumerate(ctx.batches(ctx.forget)):
            if i >= self.steps:
                break
            ctx.step(opt, -ctx.objective(batch).mean())


@register_method("_tune_quadratic", needs=("forget",))
@dataclass
class Quadratic(Method):
    """Test-only: a space whose objective (given by the test) has its optimum at x=0.3, k=4."""

    x: float = hp(0.8, tune=uniform(0.0, 1.0))
    k: int = hp(1, tune=integer(1, 8))

    def unlearn(self, ctx: UnlearnContext) -> None:  # never run: the test evaluates the objective
        raise AssertionError


SMALL = {**TINY, "methods": ["retrain", {"_tune_toy": {"pause": 0.0}}],
         "data": {"n_val": 100, "n_train": 300, "n_test": 200},
         "audit": {"views": 2, "max_members": 100, "references": 1}}


def write(tmp_path: Path, name: str, **overrides) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "name": name, **overrides}))
    return path


# --------------------------------------------------------------------------- the search


def test_tpe_finds_a_known_optimum_and_fails_what_diverges(tmp_path):
    space = search_space(Quadratic)
    calls = []

    def evaluate(v):
        calls.append(v)
        if v["x"] > 0.9:  # "diverges": a failed trial, never a score
            return None, "diverged", {}, {}
        return (v["x"] - 0.3) ** 2 + 0.1 * (v["k"] - 4) ** 2, "", {}, {1: 0.0, 2: 1.0}

    group = tuning_cells(load_matrix(str(write(tmp_path, "quad", methods=["retrain", "_tune_quadratic"]))),
                         DEFAULT_SEEDS)[0]
    study = Study(group, MethodSpec("_tune_quadratic"), space)
    trials = optimise("quad", f"sqlite:///{tmp_path / 'q.db'}", space, evaluate, 20, seeds=(3, 4),
                      defaults=study.defaults())
    assert len(trials) == 20 == len(calls)
    assert calls[0] == {"x": 0.8, "k": 1}  # the defaults first
    best = min((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert abs(best.params["x"] - 0.3) < 0.08 and best.params["k"] == 4
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.params["x"] > 0.9 and t.user_attrs[FAILURE] == "diverged" for t in failed)
    assert best.user_attrs[GAPS] == {"1": 0.0, "2": 1.0}  # each tuning seed's Avg Gap, kept with the trial
    # a finished study is not run again: asking for the same budget evaluates nothing
    again = optimise("quad", f"sqlite:///{tmp_path / 'q.db'}", space, evaluate, 20, seeds=(3, 4))
    assert len(calls) == 20 and [t.number for t in again] == [t.number for t in trials]


def row(status="finished", gap=1.0, flags=(), reason="", request=0, method="m") -> MethodResult:
    return MethodResult(method, status, "h", metrics={} if gap is None else {"avg_gap": gap}, reason=reason,
                        request=request, info={"flags": list(flags)})


def test_failures_are_not_scores():
    assert failure([row(gap=2.5)]) == ""
    assert failure([row("failed", reason="NonFiniteLossError: loss became nan")]).startswith("failed")
    assert failure([row(flags=["over-unlearning: retrain-level privacy (...) only with TA 12 vs 80"])]).startswith(
        "over-unlearning")
    assert failure([row(flags=["erased the retain set's membership signal: MIA-AUC_Dr 0.6 -> 0.5"])]).startswith(
        "erased the retain set's membership signal")  # over-unlearning, named by what was measured
    assert failure([row(flags=["utility loss: TA 70 vs retrain 80"])]) == ""  # a finding, still a score
    assert failure([row(reason="auditor knn: boom")]).startswith("incomplete audit")
    assert failure([row(gap=None)]) == failure([row(gap=float("nan"))]) == "no Avg Gap"
    assert failure([]) == "the method produced no row"


def two_cells(tmp_path, scenario="random:0.1"):
    m = load_matrix(str(write(tmp_path, "obj", scenarios=[scenario])))
    return tuning_cells(m, DEFAULT_SEEDS)[0]


YARDSTICKS = [MethodResult("original", "reference", "o", metrics={"avg_gap": 9.0}),
              MethodResult("retrain (seed')", "reference", "f", metrics={"avg_gap": 1.0})]


def test_objective_is_the_mean_over_tuning_cells_of_the_leaderboards_avg_gap(tmp_path):
    from bench.audit import metric_specs
    from bench.report.analysis import analyse, cell_values

    a, b = two_cells(tmp_path)
    value, why, gaps = objective([(a, YARDSTICKS, [row(gap=2.0)]), (b, YARDSTICKS, [row(gap=5.0)])], "m")
    assert (value, why, gaps) == (3.5, "", {DEFAULT_SEEDS[0]: 2.0, DEFAULT_SEEDS[1]: 5.0})
    # a sequential cell: the leaderboard averages its requests, and so does each cell's term
    sa, sb = two_cells(tmp_path, "sequential:2x0.05")
    rows_a = [row(gap=1.0), row(gap=3.0, request=1)]
    rows_b = [row(gap=4.0), row(gap=8.0, request=1)]
    value, _, gaps = objective([(sa, YARDSTICKS, rows_a), (sb, YARDSTICKS, rows_b)], "m")
    assert gaps == {DEFAULT_SEEDS[0]: 2.0, DEFAULT_SEEDS[1]: 6.0} and value == 4.0
    # ...which is the report's own per-cell value of the same frame
    board = cell_values(analyse(frame(sb, [*YARDSTICKS, *rows_b]), metric_specs(), "x").tables)
    assert float(board["m"].iloc[0]) == 6.0


def test_a_trial_that_over_unlearns_on_one_of_two_cells_fails(tmp_path):
    a, b = two_cells(tmp_path)
    over = row(gap=0.5, flags=["over-unlearning: retrain-level privacy only with TA 12 vs 80"])
    value, why, gaps = objective([(a, YARDSTICKS, [row(gap=2.0)]), (b, YARDSTICKS, [over])], "m")
    assert value is None and why.startswith(f"tuning seed {DEFAULT_SEEDS[1]}: over-unlearning")
    assert gaps == {DEFAULT_SEEDS[0]: 2.0}  # the better mean (1.25) is never a score

    class Fake:  # a tuning cell's interface to evaluate_on
        def __init__(self, cell, result):
            self.cell, self.result, self.yardstick_rows, self.calls = cell, result, YARDSTICKS, 0

        def rows(self, spec):
            self.calls += 1
            return [self.result]

    first, second = Fake(a, row("failed", reason="diverged")), Fake(b, row(gap=1.0))
    value, why, metrics, gaps = evaluate_on([first, second], MethodSpec("m"))
    assert value is None and why == (f"tuning seed {DEFAULT_SEEDS[0]}: failed: diverged "
                                     "(the other 1 tuning cell(s) not run)")
    assert (first.calls, second.calls, gaps) == (1, 0, {})  # the first failure ends the trial
    value, why, metrics, gaps = evaluate_on([Fake(a, row(gap=2.0)), Fake(b, row(gap=4.0))], MethodSpec("m"))
    assert (value, why, metrics["avg_gap"]) == (3.0, "", 3.0)


# --------------------------------------------------------------------------- seeds


def test_no_tuning_seed_is_an_evaluation_seed_and_collisions_exit_2(tmp_path, capsys):
    m = load_matrix(str(write(tmp_path, "seeds", seeds=[0, 1, 2])))
    evaluated = set().union(*(cell_seeds(c) for c in m.cells()))
    assert evaluated == {0, 1, 2, 3, REFERENCE_SEED_STRIDE, 1 + REFERENCE_SEED_STRIDE, 2 + REFERENCE_SEED_STRIDE}
    (group,) = tuning_cells(m, DEFAULT_SEEDS)
    assert [c.seed for c in group] == list(DEFAULT_SEEDS) and len(set(DEFAULT_SEEDS)) >= 2
    assert not set().union(*(cell_seeds(c) for c in group)) & evaluated
    path = str(tmp_path / "seeds.yaml")
    for bad in (3, 2 + REFERENCE_SEED_STRIDE, REFERENCE_SEED_STRIDE - 1):  # a method's, a reference's seed
        assert main(["tune", "--matrix", path, "--seeds", f"{DEFAULT_SEEDS[0]},{bad}", "--dry-run"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"tuning seed {bad} shares model seeds" in err
        assert "choose other --seeds" in err
    for bad, expected in (("9000000", "at least 2 distinct"), ("9000000,9000000", "names seed 9000000 twice"),
                          ("9000000,-5", "non-negative seed or a range"), ("9000000,x", "not a non-negative seed")):
        assert main(["tune", "--matrix", path, "--seeds", bad, "--dry-run"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err


def test_dry_run_lists_cells_seeds_and_budget(tmp_path, capsys):
    path = write(tmp_path, "dry")
    assert main(["tune", "--matrix", str(path), "--trials", "3", "--dry-run", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 cell(s) x 2 tuning seeds x 1 method(s) x 3 trials = 3 trials of 2 runs each" in out
    assert "objective: mean over the 2 tuning cells of the leaderboard's Avg Gap" in out
    assert f"tuning seeds {SEEDS_TEXT}; evaluated cells use seeds [0]" in out
    assert f"simclr/convnet-s digits random:0.1 seeds={','.join(map(str, DEFAULT_SEEDS))}" in out
    assert "_tune_toy: lr log-uniform [0.0001, 0.01], steps int uniform [1, 3]; fixed {'pause': 0.0}" in out
    assert "retrain: not tuned (no search space)" in out
    assert not (tmp_path / "dry").exists()  # nothing written
    assert main(["tune", "--matrix", str(path), "--methods", "finetune", "--dry-run"]) == 2
    assert "'finetune' is not a method of matrix dry" in capsys.readouterr().err
    assert main(["tune", "--matrix", str(path), "--methods", "retrain", "--results-dir", str(tmp_path)]) == 2
    assert "nothing to tune in dry: retrain: no search space" in capsys.readouterr().err
    assert main(["tune", "--matrix", "cpu", "--trials", "8", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cifar10" in out and "seeds=9000000,9000001" in out and "x 8 trials" in out
    assert "evaluated cells use seeds [0, 1, 2, 3]" in out
    tuned_methods = [m.name for m in load_matrix("cpu").methods if m.name != "retrain"]
    assert len(tuned_methods) == 9
    for name in tuned_methods:  # every method, the same budget
        assert f"    {name}: " in out
    assert "not tuned" in out and out.count("not tuned") == 1  # retrain only


def test_every_methods_defaults_lie_in_its_space_so_trial_0_is_the_default():
    from bench import registry
    from bench.hparams import params

    checked = 0
    for name in registry.methods.names():
        cls = registry.methods.get(name)
        if not cls.__module__.startswith("methods."):
            continue  # test-only methods
        space, known = search_space(cls), params(cls)
        assert space or name == "retrain", f"{name} has no search space"
        for k, s in space.items():
            assert s.contains(known[k].default), f"{name}.{k} = {known[k].default!r} lies outside {s}"
        checked += bool(space)
    assert checked >= 12
    from methods.neggrad_plus import NegGradPlus

    assert search_space(NegGradPlus)["alpha"].contains(None)  # its data-dependent default


# --------------------------------------------------------------------------- a real tune, then run --tuned


class Spy:
    """Seeds and cache keys of every runner, training, cache lookup, audit and unlearning context."""

    def __init__(self, monkeypatch):
        self.seeds: set[int] = set()
        self.keys: set[str] = set()
        spy = self

        def wrap(cls, name, record):
            original = getattr(cls, name)

            def wrapped(self, *a, **kw):
                record(self, *a, **kw)
                return original(self, *a, **kw)

            monkeypatch.setattr(cls, name, wrapped)

        wrap(CellRunner, "__init__", lambda self, cell, *a, **kw: spy.seeds.add(cell.seed))
        wrap(CellRunner, "trained", lambda self, idx, seed, role: spy.seeds.add(seed))
        wrap(CellRunner, "audit", lambda self, mf, actx: spy.seeds.add(actx.seed))
        wrap(ModelCache, "get_or_build", lambda self, key, build: spy.keys.add(key))
        wrap(Ctx, "__init__", lambda self, enc, **kw: spy.seeds.add(kw["seed"]))

    def reset(self) -> tuple[set[int], set[str]]:
        out = (set(self.seeds), set(self.keys))
        self.seeds.clear()
        self.keys.clear()
        return out


@pytest.fixture(scope="module")
def tuned_run(results_dir: Path, tmp_path_factory):
    """A tune of the small matrix (2 trials x the 2 default tuning seeds), then `run --tuned` on it,
    each phase spied on."""
    mp = pytest.MonkeyPatch()
    spy = Spy(mp)
    path = write(tmp_path_factory.mktemp("t"), "tune-e2e")
    try:
        code = main(["tune", "--matrix", str(path), "--trials", "2", "--results-dir", str(results_dir)])
        tune_seeds, tune_keys = spy.reset()
        after_tune = Tracker(results_dir).results_frame("tune-e2e")
        tuned_file = results_dir / "tune-e2e" / "tuned.yaml"
        run_code = main(["run", "--matrix", str(path), "--tuned", str(tuned_file), "--results-dir", str(results_dir)])
        run_seeds, run_keys = spy.reset()
    finally:
        mp.undo()
    return dict(path=path, code=code, run_code=run_code, tuned=tuned_file, results=results_dir,
                tune_seeds=tune_seeds, tune_keys=tune_keys, run_seeds=run_seeds, run_keys=run_keys,
                after_tune=after_tune)


def test_tuning_never_touches_an_evaluation_seed(tuned_run):
    m = load_matrix(str(tuned_run["path"]))
    evaluated = set().union(*(cell_seeds(c) for c in m.cells()))
    tuning = set().union(*(cell_seeds(c) for c in tuning_cells(m, DEFAULT_SEEDS)[0]))
    assert tuned_run["tune_seeds"] and tuned_run["tune_seeds"] <= tuning
    assert set(DEFAULT_SEEDS) <= tuned_run["tune_seeds"]  # both tuning cells ran
    assert not tuned_run["tune_seeds"] & evaluated
    assert tuned_run["run_seeds"] <= evaluated  # the spy sees the evaluation's seeds when they are used
    assert len(tuned_run["tune_keys"]) == 6  # per tuning cell original, retrain, reference, once each...
    assert not tuned_run["tune_keys"] & tuned_run["run_keys"]  # ...and none is an evaluated cell's model


def test_tune_writes_tuned_yaml_and_nested_trial_runs(tuned_run):
    assert tuned_run["code"] == 0
    t = load(tuned_run["tuned"])
    assert (t.seeds, t.trials, len(t.cells)) == (list(DEFAULT_SEEDS), 2, 1)
    assert "mean over the tuning seeds' cells of the leaderboard's Avg Gap" in t.objective
    cell = t.cells[0]
    assert (cell.dataset, cell.encoder, cell.scenario, cell.seeds) == ("digits", "simclr", "random:0.1",
                                                                       list(DEFAULT_SEEDS))
    assert cell.models_s > 0 and set(cell.methods) == {"_tune_toy"}  # retrain has no space
    toy = cell.methods["_tune_toy"]
    assert toy.trials == 2 == toy.complete + toy.failed and toy.fixed == {"pause": 0.0} and toy.wall_s > 0
    space = search_space(TuneToy)
    assert set(toy.values) == {"lr", "steps"} and all(space[k].contains(v) for k, v in toy.values.items())
    assert toy.best is not None and toy.objective["min"] == toy.best <= toy.objective["max"]
    assert toy.default is not None and toy.best <= toy.default  # the defaults were trial 0
    assert set(toy.best_gaps) == set(DEFAULT_SEEDS)  # the objective is the mean of the two cells' Avg Gaps
    assert toy.best == pytest.approx(sum(toy.best_gaps.values()) / 2)
    assert tuned_run["after_tune"].empty  # tuning writes no leaderboard row
    tracker = Tracker(tuned_run["results"])
    exp = tracker.experiment_id("tune-e2e", create=False)
    parents = tracker.client.search_runs([exp], "tags.`bench.kind` = 'tune'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trials = tracker.client.search_runs([exp], f"tags.`bench.kind` = '{TRIAL_KIND}'")
    assert len(trials) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parents[0].info.run_id}
    assert all({"hp.lr", "hp.steps"} <= set(r.data.params) for r in trials)
    assert all({"objective", *(f"gap.{s}" for s in DEFAULT_SEEDS)} <= set(r.data.metrics)
               for r in trials if r.data.tags["bench.trial_state"] == "COMPLETE")


def test_run_tuned_uses_the_values_and_the_report_says_so(tuned_run):
    assert tuned_run["run_code"] == 0
    toy = load(tuned_run["tuned"]).cells[0].methods["_tune_toy"]
    df = Tracker(tuned_run["results"]).results_frame("tune-e2e")
    rows = df[df.method == "_tune_toy"]
    assert len(rows) == 1
    assert float(rows["hp.lr"].iloc[0]) == pytest.approx(toy.values["lr"])
    assert int(rows["hp.steps"].iloc[0]) == toy.values["steps"]
    n = report.note(rows.tuned.iloc[0])
    assert n["values"] == toy.values and n["trials"] == 2 and n["seeds"] == list(DEFAULT_SEEDS)
    assert n["overridden"] == {}
    assert not report.is_tuned(df[df.method != "_tune_toy"]).any()  # retrain and original: untuned
    assert report.header(df) == f"tuned: 2 trials x 2 tuning seeds ({SEEDS_TEXT}) per method"
    lines = report.method_lines(df)
    gap = rows["m.avg_gap"].iloc[0]
    assert len(lines) == 2 and lines[1].startswith(
        f"- _tune_toy: Avg Gap tuned {gap:.2f} (1 seed) vs default not run on these cells")
    assert f"seeds {SEEDS_TEXT}; 2 trials" in lines[1]
    invocation = Tracker(tuned_run["results"]).invocations("tune-e2e")[-1]["tags"]
    assert invocation["bench.tuned.trials"] == "2"
    assert invocation["bench.tuned.seeds"] == ",".join(map(str, DEFAULT_SEEDS))


def test_published_provenance_names_the_tune_and_both_runs(tuned_run, tmp_path):
    from bench import driver

    bench_md = tmp_path / "BENCHMARKS.md"
    bench_md.write_text("<!-- leaderboard:tune-e2e:start -->\n<!-- leaderboard:tune-e2e:end -->\n")
    driver.report("tune-e2e", tuned_run["results"], benchmarks=bench_md)
    block = bench_md.read_text()
    rows = [line for line in block.splitlines() if line.startswith("| 20")]  # (in-process: the command is pytest's)
    assert len(rows) == 2 and rows[0].endswith("| – |") and rows[1].endswith("| 3 / 1 |")  # the tune, then the run
    assert "Hyperparameters: tuned: 2 trials x 2 tuning seeds" in block


def test_explicit_matrix_values_win_over_tuned_ones_and_are_reported(tuned_run, tmp_path):
    toy = load(tuned_run["tuned"]).cells[0].methods["_tune_toy"]
    path = write(tmp_path, "tune-e2e", methods=["retrain", {"_tune_toy": {"steps": 3}}], tuned=str(tuned_run["tuned"]))
    m = load_matrix(str(path))
    warnings = validate(m, Path("."), check_data=False) + check_tuned(m)  # as driver.prepare
    assert any("the matrix sets steps explicitly" in w for w in warnings)
    assert any("tuned with {'pause': 0.0} held fixed, but the matrix sets nothing" in w for w in warnings)
    spec = next(s for s in cells_of(m, Path("."))[0].methods if s.name == "_tune_toy")
    assert spec.kwargs == {"lr": toy.values["lr"], "steps": 3}
    from bench.tuned import notes

    (note,) = notes(m, load(tuned_run["tuned"])).values()
    assert note["values"] == {"lr": toy.values["lr"]} and note["overridden"] == {"steps": toy.values["steps"]}
    other = write(tmp_path, "other", datasets=["digits"], scenarios=["random:0.2"], tuned=str(tuned_run["tuned"]))
    assert any("no tuning cell" in w for w in check_tuned(load_matrix(str(other))))


def test_report_compares_default_and_tuned_rows_of_the_same_cells():
    import json

    import pandas as pd

    assert report.header(pd.DataFrame()) == "defaults, untuned"
    df = pd.DataFrame({"method": ["retrain", "finetune"], "seed": [0, 0], "tuned": ["", ""], "start_time": [1, 2]})
    assert report.header(df) == "defaults, untuned" and report.method_lines(df) == []
    # a note as rows tuned on one seed carry it ("seed"), and one as multi-seed tunes write it ("seeds")
    old = {"values": {"lr": 0.02}, "overridden": {"epochs": 3}, "trials": 8, "seed": 7, "best": 1.0,
           "default": 3.0, "failed": 2, "wall_s": 600.0,
           "objective": {"min": 1.0, "q25": 1.5, "median": 2.0, "q75": 2.5, "max": 9.0}}
    n = json.dumps(old)
    rows = [("retrain", 0, "", 0.0, 1), ("finetune", 0, "", 4.0, 2), ("finetune", 1, "", 6.0, 3),
            ("finetune", 0, n, 2.0, 4), ("finetune", 1, n, 3.0, 5), ("finetune", 1, n, 3.5, 6),  # a rerun: newest
            ("ssd", 0, "", 5.0, 7)]
    df = pd.DataFrame(rows, columns=["method", "seed", "tuned", "m.avg_gap", "start_time"]).assign(status="finished")
    assert report.header(df) == "tuned: 8 trials x 1 tuning seed (7) per method; at defaults: ssd"
    runs, budgets = report.sources(df.assign(parent_run=["a", "b", "c", "d", "e", "f", "g"]))
    assert runs == {"b", "c", "d", "f"} and budgets == {((7,), 8)}  # newest default and tuned finetune rows
    assert report.tune_budget({"bench.tune.seed": "7", "bench.tune.trials": "8"}) == ((7,), 8)  # an older tune
    (_, line), = [report.method_lines(df)]
    # d = tuned - default = (-2.0, -2.5): t = -9 with 1 df, two-sided p = 1 - 2 atan(9) / pi = 0.0704
    assert report.summary_lines(df) == [
        "Tuned vs default Avg Gap ↓ (paired t over evaluation seeds, two-sided, Holm over the tuned methods, α 0.05; "
        "the details page has the tuning): finetune 2.75 vs 5.00, no difference (tuning did not transfer to the "
        "evaluation seeds)."]
    assert line == ("- finetune: Avg Gap tuned 2.75 (2 seeds) vs default 5.00 (2 seeds): no difference (tuned - "
                    "default -2.25 over 2 paired seeds, paired t p 0.0704, Holm 0.0704); tuning did not transfer to "
                    "the evaluation seeds; values lr=0.02 (the matrix overrides tuned epochs=3). Tuning cells (seed 7; "
                    "8 trials, 2 failed; objective: mean Avg Gap over the tuning cells): defaults 3.00, best 1.00; "
                    "objective over trials min 1.00, IQR 1.50-2.50, max 9.00; tuning took 10.0 min")
    new = json.dumps({**{k: v for k, v in old.items() if k != "seed"}, "seeds": [7, 8],
                      "best_gaps": {"7": 0.9, "8": 1.1}})
    df2 = df.assign(tuned=df.tuned.replace(n, new))
    assert report.header(df2) == "tuned: 8 trials x 2 tuning seeds (7, 8) per method; at defaults: ssd"
    # finetune tuned on one encoder but shown at its defaults on another: named with that encoder
    other = pd.DataFrame([("finetune", 0, "", 4.0, 9)], columns=["method", "seed", "tuned", "m.avg_gap", "start_time"])
    df3 = pd.concat([df2.assign(encoder="simclr"), other.assign(encoder="moco", status="finished")])
    assert report.header(df3) == ("tuned: 8 trials x 2 tuning seeds (7, 8) per method; "
                                  "at defaults: ssd, finetune on moco")
    assert report.sources(df2.assign(parent_run=list("abcdefg")))[1] == {((7, 8), 8)}
    assert report.tune_budget({"bench.tune.seeds": "7,8", "bench.tune.trials": "8"}) == ((7, 8), 8)
    assert "Tuning cells (seeds 7, 8; 8 trials" in report.method_lines(df2)[1]
    assert "best 1.00 (seed 7 0.90, seed 8 1.10)" in report.method_lines(df2)[1]
    failed = df.assign(tuned=df.tuned.replace(n, json.dumps({**old, "default": None})))  # trial 0 failed
    assert "defaults failed, best 1.00" in report.method_lines(failed)[1]


def test_tuned_vs_default_paired_outcomes_on_known_rows():
    """Three methods on three seeds, each tuned row against the default row of the same seed:
    clearly better (d = -1.0, -1.1, -0.9), identical (d = 0), clearly worse (d = +1.0, +1.1, +0.9).
    Paired t: t = -/+17.3 with 2 df, two-sided p = 0.00332 each, identical rows p 1; Holm over
    the three methods: 3 x 0.00332 = 0.00995 for both, below 0.05."""
    import json

    import pandas as pd
    from scipy import stats

    note = json.dumps({"values": {"lr": 0.02}, "trials": 4, "seeds": [7, 8], "best": 1.0, "default": 2.0})
    kept = json.dumps({"values": {"lr": 0.01}, "trials": 4, "seeds": [7, 8], "best": 2.0, "default": 2.0})
    base = {0: 5.0, 1: 6.0, 2: 7.0}
    shift = {"better": (-1.0, -1.1, -0.9), "same": (0.0, 0.0, 0.0), "worse": (1.0, 1.1, 0.9)}
    rows, t = [], 0
    for method, ds in shift.items():
        for (seed, gap), d in zip(base.items(), ds):
            rows.append((method, seed, "", gap, t := t + 1, "ck"))
            rows.append((method, seed, kept if method == "same" else note, gap + d, t := t + 1, "ck"))
    df = pd.DataFrame(rows, columns=["method", "seed", "tuned", "m.avg_gap", "start_time", "checkpoints"]
                      ).assign(status="finished")
    got = {c.method: c for c in report.compare(df)}
    assert {m: c.outcome for m, c in got.items()} == {"better": "tuned better", "same": "no difference",
                                                       "worse": "tuned worse"}
    p = stats.ttest_1samp([-1.0, -1.1, -0.9], 0.0).pvalue
    assert got["better"].p == pytest.approx(p) and got["worse"].p == pytest.approx(p)
    assert got["better"].p_holm == got["worse"].p_holm == pytest.approx(3 * p) and got["same"].p == 1.0
    assert got["better"].diff == pytest.approx(-1.0) and got["better"].paired == (0, 1, 2)
    assert got["worse"].transfer == "tuning did not transfer to the evaluation seeds"
    assert got["same"].transfer == "the defaults were the best trial on the tuning cells"
    (summary,) = report.summary_lines(df)
    assert ("better 5.00 vs 6.00, tuned better;" in summary
            and "same 6.00 vs 6.00, no difference (the defaults were the best trial on the tuning cells)" in summary
            and "worse 7.00 vs 6.00, tuned worse (tuning did not transfer to the evaluation seeds)." in summary)
    # a study whose every trial failed chose nothing: the method ran at its defaults, and says so
    failed = json.dumps({"values": {}, "trials": 4, "seeds": [7, 8], "best": None, "default": None,
                         "complete": 0, "failed": 4})
    none = report.compare(df.assign(tuned=df.tuned.replace(kept, failed)))
    (same,) = [c for c in none if c.method == "same"]
    assert same.none_passed and same.kept_defaults and not got["better"].kept_defaults
    assert same.transfer == "every trial failed on the tuning cells, so it ran at its defaults"
    assert same.outcome == "ran at its defaults"
    # rows computed from other checkpoints are not paired: one seed left, no test
    df.loc[(df.method == "better") & (df.seed > 0) & (df.tuned != ""), "checkpoints"] = "other"
    assert {c.method: c.outcome for c in report.compare(df)}["better"] == "no test (1 paired seed)"


# --------------------------------------------------------------------------- tuned.yaml


def sample(values: dict) -> Tuned:
    m = MethodTuning(values=values, trials=4, complete=3, failed=1, best=1.5, default=2.0,
                     objective={"min": 1.5, "q25": 1.6, "median": 1.8, "q75": 2.0, "max": 3.0}, wall_s=12.0,
                     fixed={"pause": 0.0}, study="s", best_gaps={DEFAULT_SEEDS[0]: 1.25, DEFAULT_SEEDS[1]: 1.75})
    return Tuned("x", list(DEFAULT_SEEDS), 4, "tpe",
                 [CellTuning("digits", "simclr", "convnet-s", "random:0.1", list(DEFAULT_SEEDS), 3.0,
                             {"_tune_toy": m})], objective="mean")


def test_a_study_that_chose_nothing_still_notes_its_rows(tmp_path):
    """Every trial failed: no values, the rows run at the defaults and carry a note that says so."""
    from bench.tuned import apply, notes

    path = write(tmp_path, "empty-study", methods=["retrain", "_tune_toy"])
    t = sample({})
    m = load_matrix(str(path))
    (note,) = notes(m, t).values()
    assert note["values"] == {} and note["complete"] == 3
    (cell,) = cells_of(m, Path("."))
    assert apply([cell], t)[0].methods == cell.methods  # the defaults, unchanged


def test_tuned_yaml_round_trips_and_a_single_seed_file_still_loads(tmp_path):
    t = sample({"lr": 0.002, "steps": 2})
    path = dump(t, tmp_path / "tuned.yaml")
    assert dataclasses.replace(load(path), source="") == t
    raw = yaml.safe_load(path.read_text())
    assert raw["format"] == 2 and raw["seeds"] == raw["cells"][0]["seeds"] == list(DEFAULT_SEEDS)
    # format 1 (written by a tune on one seed): `seed:` where format 2 has `seeds:`
    old = {**{k: v for k, v in raw.items() if k != "seeds"}, "format": 1, "seed": 5,
           "cells": [{**{k: v for k, v in raw["cells"][0].items() if k != "seeds"}, "seed": 5}]}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    back = load(tmp_path / "old.yaml")
    assert back.seeds == back.cells[0].seeds == [5] and back.cells[0].methods == t.cells[0].methods
    for bad in ([], [1, 1], ["a"]):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**raw, "seeds": bad}))
        with pytest.raises(ConfigError, match="'seeds' must be a list of distinct integers"):
            load(tmp_path / "bad.yaml")


@pytest.mark.parametrize("entry, expected", [
    ({"_tune_toy": {"lr": 0.5, "steps": 2}}, "outside its search space"),
    ({"_tune_toy": {"lr": 0.002, "steps": 9}}, "outside its search space"),
    ({"_tune_toy": {"pause": 1.0}}, "'pause' is not in _tune_toy's search space"),
    ({"_tune_toy": {"steps": 1.5}}, "outside its search space"),
    ({"_tune_tpy": {"lr": 0.002}}, "unknown method '_tune_tpy'; did you mean '_tune_toy'?"),
])
def test_bad_tuned_yaml_exits_2_before_any_work(entry, expected, tmp_path, capsys):
    (name, values), = entry.items()
    t = sample({})
    t.cells[0].methods = {name: dataclasses.replace(t.cells[0].methods["_tune_toy"], values=values)}
    bad = dump(t, tmp_path / "tuned.yaml")
    results = tmp_path / "results"
    assert main(["run", "--matrix", str(write(tmp_path, "bad")), "--tuned", str(bad),
                 "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not results.exists()  # nothing written
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- SIGKILL, then resume


def trial_states(db: Path) -> list[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return [s for (s,) in con.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:  # not created yet, or locked by the writer
        return []


def test_sigkill_mid_two_seed_tune_then_resume_finishes_exactly_n(results_dir: Path, tmp_path: Path):
    name, n = "tune-kill", 3
    path = write(tmp_path, name, methods=["retrain", {"_tune_toy": {"pause": 1.0}}])
    argv = ["tune", "--matrix", str(path), "--trials", str(n), "--results-dir", str(results_dir),
            "--seeds", ",".join(map(str, DEFAULT_SEEDS))]
    code = "import sys, tests.test_tune; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    db = results_dir / name / "tune.db"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO, env={**os.environ, "TQDM_DISABLE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while trial_states(db).count("COMPLETE") + trial_states(db).count("FAIL") == 0:
            assert proc.poll() is None and time.time() < deadline, "tune ended before its first trial finished"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    storage = f"sqlite:///{db.resolve()}"
    (summary,) = optuna.get_all_study_summaries(storage)
    before = {t.number: t for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials}
    finished = {k: t for k, t in before.items() if t.state.is_finished()}
    assert 0 < len(counted(list(before.values()))) < n  # killed mid-tune

    assert main(argv) == 0
    after = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    done = counted(after)
    assert len(done) == n  # exactly the budget
    by_number = {t.number: t for t in after}
    for k, t in finished.items():  # finished before the kill: kept as they were, not run again
        assert (by_number[k].state, by_number[k].params, by_number[k].values, by_number[k].datetime_complete) == (
            t.state, t.params, t.values, t.datetime_complete)
    for k, t in before.items():  # left running by the kill: closed, not counted
        if t.state == TrialState.RUNNING:
            assert by_number[k].state == TrialState.FAIL and FAILURE not in by_number[k].user_attrs
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == n  # no trial repeated
    for t in done:  # every trial scored on both tuning cells (or failed on one)
        if t.state == TrialState.COMPLETE:
            assert set(t.user_attrs[GAPS]) == {str(s) for s in DEFAULT_SEEDS}
            assert t.value == pytest.approx(sum(t.user_attrs[GAPS].values()) / 2)
    tracker = Tracker(results_dir)
    exp = tracker.experiment_id(name, create=False)
    logged = [int(r.data.tags["bench.trial"]) for r in
              tracker.client.search_runs([exp], f"tags.`bench.kind` = '{TRIAL_KIND}'")]
    assert sorted(logged) == sorted(t.number for t in done)  # each counted trial in MLflow exactly once
    assert load(results_dir / name / "tuned.yaml").cells[0].methods["_tune_toy"].trials == n
