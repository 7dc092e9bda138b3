"""``python -m bench tune``: every method gets the same search budget, on seeds the leaderboard never sees.

For each (dataset, encoder, scenario) of a matrix, S >= 2 *tuning cells* are built: the
matrix's cell at each tuning seed (default :data:`DEFAULT_SEEDS`), so each has its own split,
forget set, original, retrain and references; :func:`check_seeds` refuses a seed whose models
(training, reference and method seeds) would meet any evaluated cell's, and repeated seeds.
Their models are trained and cached by the normal runner and cache.

Each method with a search space (``hp(..., tune=...)``, :func:`bench.hparams.search_space`)
then gets one Optuna study of N trials with the seeded TPE sampler per (dataset, encoder,
scenario). A trial runs the method on every tuning cell; its objective is the mean over the
tuning cells of the method's Avg Gap to retrain exactly as the leaderboard computes it
(bench/objective.py passes the rows through the report's own analysis). One cell's Avg Gap is
as noisy as the differences between trials, so one cell would choose noise. A trial that, on
ANY tuning cell, diverges (a failed row), has an incomplete audit or no Avg Gap, or is flagged
as over-unlearning (bench/report/flags.py) is a FAILED trial, not a score (the remaining cells
are not run). One runner per tuning cell serves every trial, so original, retrain and
references are trained (or loaded), featurised and audited once.

Choices made here, and why:

- The first trial of every study is the method's defaults (when they lie inside its
  space): the published "default" objective comes from the same cells and seeds as the
  tuned one, and tuning never ends worse than the defaults on the tuning cells.
- Startup (random) trials: a third of the budget, at least 2 and at most Optuna's 10;
  Optuna's default of 10 would make any budget of 10 or fewer a random search.
- The sampler is re-created before every trial, seeded by (tuning seeds, study, number of
  counted trials). TPE is a function of its seed and the finished trials, so a tune killed
  and resumed proposes what an uninterrupted one would have.
- Values the matrix sets explicitly for a method are held fixed (they win at run time
  anyway), and a study's name carries the tuning cells (their seeds), those values and the
  space, so a changed recipe, seed set or space starts a new study instead of mixing trials.
- Storage is sqlite in ``<results>/<matrix>/tune.db`` (one study per cell group and method,
  loaded if it exists): a finished trial is never run again. A trial left RUNNING by a
  killed process is marked FAIL without a ``failure`` reason and is not counted; a study
  ends with exactly N counted (COMPLETE, or FAIL with a reason) trials, and only its
  first N count if an earlier tune ran more.
- MLflow (the matrix's experiment): one parent run per tune invocation (``bench.kind`` =
  ``tune``) with each trial a nested ``tune-trial`` run (params = the trial's values,
  metrics = the objective and each tuning seed's Avg Gap); never ``row``, so the leaderboard
  never reads them. Trials a killed tune finished but did not log are logged by the next one.

Output: ``<results>/<matrix>/tuned.yaml`` (bench/tuned.py), rewritten after every study.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import objective as scoring
from bench import registry, tuned
from bench.config import Cell, ConfigError, Matrix, MethodSpec, load_matrix, stable_hash, validate
from bench.data import load_dataset
from bench.driver import Folders
from bench.hparams import Space, params, search_space
from bench.runner import REFERENCE_SEED_STRIDE, CellRunner, MethodResult, row_hashes
from bench.splits import make_split, parse_scenario
from bench.storelock import StoreLock

log = logging.getLogger("bench.tune")

DEFAULT_SEEDS = (9_000_000, 9_000_001)  # far above any matrix's seeds and their reference offsets (checked anyway)
MIN_SEEDS = 2  # one tuning cell's Avg Gap is as noisy as the differences between trials
DEFAULT_TRIALS = 20
FAILURE = "failure"  # user attr of a trial the method failed (counted); absent on an interrupted one
GAPS = "gaps"  # user attr: tuning seed -> that cell's Avg Gap (the cells scored before a failure)
TRIAL_KIND = "tune-trial"
SEEDS_TAG, TRIALS_TAG = "bench.tune.seeds", "bench.tune.trials"  # a tune invocation's budget (the report reads them)
OBJECTIVE = ("mean over the tuning seeds' cells of the leaderboard's Avg Gap (lower is better); a trial that "
             "diverges, has an incomplete audit or no Avg Gap, or is flagged for retrain-level privacy bought by "
             "erasing the retain set's membership signal or the model's accuracy on any tuning cell fails")


@dataclass
class TuneOptions(Folders):
    matrix: str
    trials: int = DEFAULT_TRIALS
    methods: list[str] | None = None
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    results_dir: Path = Path("runs")
    data_root: Path | None = None
    cache_dir: Path | None = None
    tracking_uri: str | None = None
    device: str | None = None
    precision: str | None = None
    dry_run: bool = False
    download: bool = False


def group_label(cells: Sequence[Cell]) -> str:
    """The tuning cells of one (dataset, encoder, scenario), as one label: ``... seeds=a,b``."""
    c = cells[0]
    return (f"{c.encoder_label}/{c.backbone} {c.dataset} {c.scenario} "
            f"seeds={','.join(str(x.seed) for x in cells)}")


@dataclass
class Study:
    """One (tuning cells, method) study: the tuning cells of one (dataset, encoder, scenario),
    one per tuning seed, the spec with the matrix's fixed values, and the space."""

    cells: tuple[Cell, ...]
    spec: MethodSpec  # the matrix's explicit values only (held fixed)
    space: dict[str, Space]

    @property
    def name(self) -> str:
        key = stable_hash([[c.method_hash(self.spec) for c in self.cells],
                           {k: str(s) for k, s in sorted(self.space.items())}])
        return f"{self.spec.name} | {group_label(self.cells)} | {key[:10]}"

    @property
    def label(self) -> str:
        return group_label(self.cells)

    @property
    def key(self) -> str:  # MLflow filter value (the name has spaces and brackets)
        return stable_hash(self.name)

    def defaults(self) -> dict[str, Any] | None:
        """The method's defaults for the space, if every one lies inside it (the first trial)."""
        known = params(registry.methods.get(self.spec.name))
        values = {k: known[k].default for k in self.space}
        return values if all(s.contains(values[k]) for k, s in self.space.items()) else None

    def trial_spec(self, values: Mapping[str, Any]) -> MethodSpec:
        return MethodSpec(self.spec.name, tuple(sorted({**values, **self.spec.kwargs}.items())))


@dataclass
class Plan:
    matrix: Matrix
    seeds: tuple[int, ...]
    trials: int
    groups: list[tuple[Cell, ...]]  # per (dataset, encoder, scenario): its tuning cells, one per seed
    studies: list[Study]
    untuned: dict[str, str]  # method -> why it runs at its defaults


# --------------------------------------------------------------------------- seeds and cells


def cell_seeds(cell: Cell) -> set[int]:
    """Every seed a cell's split, models and methods use (bench/runner.py): the cell seed (split,
    original, retrain, audits), each reference's, and each request's method seed."""
    k = parse_scenario(cell.scenario).k
    return ({cell.seed} | {cell.seed + (j + 1) * REFERENCE_SEED_STRIDE for j in range(cell.audit.references)}
            | {cell.seed + 1 + r for r in range(k)})


def tuning_cells(matrix: Matrix, seeds: Sequence[int], data_root: str = "",
                 fingerprints: dict[str, str] | None = None) -> list[tuple[Cell, ...]]:
    """Per (dataset, encoder, scenario) of ``matrix``: its cell at each tuning seed, no methods;
    with ``fingerprints`` (data set -> content hash) their identity holds the data's content, as
    the driver's cells do, so a data set edited mid-tune is refused rather than mixed."""
    out: dict[tuple, Cell] = {}
    for c in matrix.cells(data_root, fingerprints):
        out.setdefault(tuned.cell_key(c), dataclasses.replace(c, methods=()))
    return [tuple(dataclasses.replace(c, seed=s) for s in seeds) for c in out.values()]


def check_seeds(matrix: Matrix, seeds: Sequence[int]) -> None:
    """Refuse fewer than :data:`MIN_SEEDS` distinct non-negative tuning seeds, and a tuning cell
    whose model seeds meet an evaluated cell's (ConfigError)."""
    default = ",".join(map(str, DEFAULT_SEEDS))
    if len(set(seeds)) != len(seeds) or len(seeds) < MIN_SEEDS or min(seeds) < 0:
        raise ConfigError(f"--seeds needs at least {MIN_SEEDS} distinct non-negative tuning seeds "
                          f"(default {default}), got {','.join(map(str, seeds))}")
    evaluated = set().union(*(cell_seeds(c) for c in matrix.cells()))
    for group in tuning_cells(matrix, seeds):
        for c in group:
            shared = sorted(cell_seeds(c) & evaluated)
            if shared:
                raise ConfigError(f"tuning seed {c.seed} shares model seeds {shared} with the matrix's evaluated "
                                  f"cells (seeds {sorted(matrix.seeds)}): choose other --seeds (default {default})")


def plan(opts: TuneOptions) -> Plan:
    """Load and validate the matrix and choose the studies; ConfigError before any work."""
    if opts.trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {opts.trials}")
    seeds = tuple(opts.seeds)
    matrix = load_matrix(opts.matrix)
    if matrix.tuned:
        log.info("tune ignores the matrix's tuned: key (%s): tuning starts from the defaults", matrix.tuned)
    matrix.tuned = ""
    if opts.device:
        matrix.device = opts.device
    if opts.precision:
        matrix.precision = opts.precision
    for w in validate(matrix, opts.root, check_data=not opts.dry_run, download=opts.download, cache=opts.cache):
        log.warning("%s", w)
    listed = [m.name for m in matrix.methods]
    chosen = listed if opts.methods is None else list(opts.methods)
    for name in chosen:
        if name not in listed:
            raise ConfigError(f"--methods: '{name}' is not a method of matrix {matrix.name} ({', '.join(listed)})")
    check_seeds(matrix, seeds)
    fingerprints = (None if opts.dry_run else
                    {ds: load_dataset(ds, opts.root, download=opts.download, cache=opts.cache).fingerprint
                     for ds in matrix.datasets})
    groups = tuning_cells(matrix, seeds, str(opts.root), fingerprints)
    studies, untuned = [], {}
    for spec in (m for m in matrix.methods if m.name in chosen):
        cls = registry.methods.get(spec.name)
        space = {k: s for k, s in search_space(cls).items() if k not in spec.kwargs}
        if not space:
            untuned[spec.name] = "the matrix fixes its whole space" if search_space(cls) else "no search space"
            continue
        for group in groups:
            reason = cls.unsupported_reason(registry.encoders.get(group[0].encoder))
            if reason:
                untuned[f"{spec.name} on {group[0].encoder_label}"] = reason
                continue
            studies.append(Study(group, spec, space))
    return Plan(matrix, seeds, opts.trials, groups, studies, untuned)


def startup_trials(trials: int) -> int:
    return min(10, max(2, trials // 3))


def describe(p: Plan, storage: Path | None = None) -> str:
    """The dry run: tuning cells, their seeds, each study's space and the trial budget."""
    n, k = p.trials, len(p.seeds)
    tuned_methods = sorted({s.spec.name for s in p.studies})
    first = set().union(*(cell_seeds(c) for c in p.groups[0])) if p.groups else set()
    lines = [f"tune {p.matrix.name}: {len(p.groups)} cell(s) x {k} tuning seeds x {len(tuned_methods)} method(s) "
             f"x {n} trials = {len(p.studies) * n} trials of {k} runs each (Optuna TPE, {startup_trials(n)} "
             "startup trials, defaults first)",
             f"objective: mean over the {k} tuning cells of the leaderboard's Avg Gap; a trial that diverges, "
             "has an incomplete audit or over-unlearns on any of them fails",
             f"tuning seeds {', '.join(map(str, p.seeds))}; evaluated cells use seeds {sorted(p.matrix.seeds)}; "
             f"model seeds disjoint (tuning {sorted(first)})"]
    done = _progress(storage) if storage is not None and storage.is_file() else {}
    for group in p.groups:
        lines.append(f"  {group_label(group)}")
        for s in (s for s in p.studies if s.cells == group):
            space = ", ".join(f"{k} {v}" for k, v in sorted(s.space.items()))
            fixed = f"; fixed {s.spec.kwargs}" if s.spec.params else ""
            start = f"; {done[s.name]}/{n} done" if s.name in done else ""
            lines.append(f"    {s.spec.name}: {space}{fixed}{start}")
    for name, why in sorted(p.untuned.items()):
        lines.append(f"  {name}: not tuned ({why}); runs at its defaults")
    cost = estimate(p)
    return "\n".join(lines + ([f"estimate: {cost}"] if cost else []))


def estimate(p: Plan) -> str:
    """The tune's time at the matrix's stated throughputs (bench/estimate.py): the tuning cells'
    models and yardstick audits, then every trial (one unlearning and one audit per tuning cell,
    with ``epochs`` at the middle of its space where it is searched); empty without throughputs."""
    from bench.estimate import count_work

    train_s, infer_s = (float(p.matrix.estimate.get(k) or 0) for k in ("train_img_s", "infer_views_s"))
    if not (train_s and infer_s):
        return ""
    base = dataclasses.replace(p.matrix, seeds=list(p.seeds), methods=[MethodSpec("retrain")], tuned="")
    models = count_work(base).seconds(train_s, infer_s)
    trials = 0.0
    for s in p.studies:
        space = s.space.get("epochs")
        mid = {"epochs": round((space.low + space.high) / 2)} if space is not None and space.kind == "int" else {}
        spec = MethodSpec(s.spec.name, tuple(sorted({**s.spec.kwargs, **mid}.items())))
        one = count_work(dataclasses.replace(base, methods=[MethodSpec("retrain"), spec])).seconds(train_s, infer_s)
        trials += p.trials * (one - models) / len(p.groups)
    return (f"~{(models + trials) / 60:.0f} min ({models / 60:.0f} min of models, {trials / 60:.0f} min of trials) "
            f"at {train_s:g} train img/s, {infer_s:g} audit views/s (the matrix's estimate)")


# --------------------------------------------------------------------------- the objective


class TuningCell:
    """One tuning cell's runner, kept for all its studies' trials."""

    def __init__(self, cell: Cell, cache_root: Path, eval_seeds: list[int]):
        self.runner = CellRunner(cell, cache_root)
        self.done = frozenset(row_hashes(cell))  # a method-less cell's rows: the yardsticks, not re-emitted
        self.yardsticks: frozenset[str] | None = None  # their memoised features (after prepare)
        self.yardstick_rows: list[MethodResult] = []  # original and floor: the report's table around a trial
        self._check_forget_sets(eval_seeds)

    @property
    def cell(self) -> Cell:
        return self.runner.cell

    def _check_forget_sets(self, eval_seeds: list[int]) -> None:
        """The tuning cell's forget set is its own draw: never equal to an evaluated seed's. (The
        member pool is shared, so indices overlap by chance, as between any two seeds.)"""
        r, d = self.runner, self.runner.cell.data
        for s in eval_seeds:
            other = make_split(r.data.train_y.numpy(), r.data.test_y.numpy(), r.scenario, s, d.n_val, d.n_train,
                               d.n_test).forget
            if np.array_equal(other, r.split.forget):
                raise ConfigError(f"tuning seed {r.cell.seed} draws the same forget set as seed {s}: "
                                  "choose other --seeds")
            log.info("tuning forget set shares %.1f %% of its samples with seed %d's",
                     100 * len(np.intersect1d(other, r.split.forget)) / len(r.split.forget), s)

    def prepare(self) -> float:
        """Train (or load) and audit the original, retrain and references; seconds taken."""
        t0 = time.perf_counter()
        self.yardstick_rows = list(self.runner.run(frozenset(), methods=()).rows)
        self.yardsticks = self.runner.keep_features()
        return time.perf_counter() - t0

    def rows(self, spec: MethodSpec) -> list[MethodResult]:
        """One trial's rows of ``spec`` on this cell (one per request)."""
        rows = [r for r in self.runner.run(self.done, methods=(spec,)).rows if r.method == spec.name]
        self.runner.keep_features(self.yardsticks)  # a trial's features are never read again
        return rows


Outcome = tuple[float | None, str, dict[str, float], dict[int, float]]  # objective, failure, metrics, gaps


def evaluate_on(cells: Sequence[TuningCell], spec: MethodSpec) -> Outcome:
    """One trial on every tuning cell, in order, stopping at the first that fails it: (the
    objective or None, the failure, the mean over the cells run of their last request's
    metrics, tuning seed -> Avg Gap of the cells scored)."""
    done: list[tuple[Cell, list[MethodResult], list[MethodResult]]] = []
    last: list[dict[str, float]] = []
    for tc in cells:
        rows = tc.rows(spec)
        done.append((tc.cell, tc.yardstick_rows, rows))
        if rows:
            last.append(rows[-1].metrics)
        if scoring.failure(rows):
            break
    value, reason, gaps = scoring.objective(done, spec.name)
    if value is None and len(done) < len(cells):
        reason += f" (the other {len(cells) - len(done)} tuning cell(s) not run)"
    metrics = {k: float(np.mean([m[k] for m in last])) for k in set().union(*last) if all(k in m for m in last)}
    return value, reason, metrics, gaps


# --------------------------------------------------------------------------- studies


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # this module logs each trial itself
    return optuna


def counted(trials: list[Any]) -> list[Any]:
    """Trials that count toward the budget, by number: complete, or failed by the method."""
    from optuna.trial import TrialState

    return sorted((t for t in trials if t.state == TrialState.COMPLETE
                   or (t.state == TrialState.FAIL and FAILURE in t.user_attrs)), key=lambda t: t.number)


def _progress(storage: Path) -> dict[str, int]:
    optuna = _optuna()
    url = f"sqlite:///{storage.resolve()}"
    return {s.study_name: len(counted(optuna.load_study(study_name=s.study_name, storage=url).trials))
            for s in optuna.get_all_study_summaries(url)}


Evaluate = Callable[[dict[str, Any]], Outcome]
OnTrial = Callable[[Any], None]


def optimise(name: str, storage: str, space: Mapping[str, Space], evaluate: Evaluate, trials: int,
             seeds: Sequence[int], defaults: Mapping[str, Any] | None = None, on_trial: OnTrial | None = None,
             desc: str = "") -> list[Any]:
    """Run ``name``'s study (created or resumed in ``storage``) until it has ``trials`` counted
    trials; returns the first ``trials`` of them. ``evaluate(values)`` -> (objective or None,
    failure reason, metrics, tuning seed -> Avg Gap); an exception in it is not the method's
    failure: the trial is closed uncounted and the exception propagates."""
    optuna = _optuna()
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    from bench.progress import interval

    store = optuna.storages.RDBStorage(storage)  # one engine for every reload below
    study = optuna.create_study(study_name=name, storage=store, direction="minimize", load_if_exists=True)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log.warning("study %s: trial %d was left running by an interrupted tune; closed uncounted", name, t.number)
        study.tell(t.number, state=TrialState.FAIL)
    every = interval()
    base = int(stable_hash([list(seeds), name]), 16) % 2**31
    with tqdm(total=trials, desc=desc or name, mininterval=every, maxinterval=max(every, 10.0),
              dynamic_ncols=True) as bar:
        while True:
            done = counted(study.get_trials(deepcopy=False))
            best = min((t.value for t in done if t.state == TrialState.COMPLETE), default=None)
            bar.n = min(len(done), trials)
            bar.set_postfix_str("best -" if best is None else f"best {best:.3f}", refresh=True)
            if len(done) >= trials:
                return done[:trials]
            sampler = optuna.samplers.TPESampler(seed=(base + len(done)) % 2**32,
                                                 n_startup_trials=startup_trials(trials))
            study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
            waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not done and not waiting and defaults is not None:
                study.enqueue_trial(dict(defaults), user_attrs={"defaults": True})
            trial = study.ask()
            values = {k: s.suggest(trial, k) for k, s in space.items()}
            t0 = time.perf_counter()
            try:
                value, reason, metrics, gaps = evaluate(values)
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
            trial.set_user_attr("wall_s", time.perf_counter() - t0)
            trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if math.isfinite(v)})
            trial.set_user_attr(GAPS, {str(k): v for k, v in gaps.items()})
            if value is None:
                trial.set_user_attr(FAILURE, reason[:1000])
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
            frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
            shown = f"{value:.3f}" if value is not None else f"FAILED ({reason[:200]})"
            log.info("%s trial %d/%d %s: %s", desc or name, len(done) + 1, trials, values, shown)
            if on_trial is not None:
                on_trial(frozen)


def summarise(trials: list[Any], study: Study, storage_name: str) -> tuned.MethodTuning:
    """A study's counted trials as its tuned.yaml entry."""
    from optuna.trial import TrialState

    ok = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(ok, key=lambda t: (t.value, t.number)) if ok else None
    default = next((float(t.value) for t in ok if t.user_attrs.get("defaults")), None)
    values = np.array([t.value for t in ok], dtype=float)
    spread = ({k: float(v) for k, v in zip(("min", "q25", "median", "q75", "max"),
                                          np.percentile(values, [0, 25, 50, 75, 100]))} if ok else {})
    return tuned.MethodTuning(
        values=dict(best.params) if best else {}, trials=len(trials), complete=len(ok),
        failed=len(trials) - len(ok), best=float(best.value) if best else None, default=default, objective=spread,
        wall_s=float(sum(t.user_attrs.get("wall_s", 0.0) for t in trials)), fixed=study.spec.kwargs,
        study=storage_name, best_gaps={int(k): float(v) for k, v in best.user_attrs.get(GAPS, {}).items()}
        if best else {})


# --------------------------------------------------------------------------- MLflow


class TrialLog:
    """Each counted trial as an MLflow run nested under this tune's parent run (this process only)."""

    def __init__(self, results_dir: Path, uri: str | None, matrix: Matrix, tags: dict[str, str]):
        from bench.report.publish import provenance_tags
        from bench.tracking import Tracker

        self.tracker = Tracker(results_dir, uri)
        self.exp_id = self.tracker.experiment_id(matrix.name)
        self.parent = self.tracker.start_parent(
            self.exp_id, {"bench.kind": "tune", "bench.matrix": matrix.name, "bench.argv": " ".join(sys.argv),
                          **provenance_tags(matrix.device), **tags})

    def logged(self, study: Study) -> set[int]:
        runs = self.tracker.client.search_runs(
            [self.exp_id], f"tags.`bench.kind` = '{TRIAL_KIND}' and tags.`bench.study_key` = '{study.key}'",
            max_results=10000)
        return {int(r.data.tags["bench.trial"]) for r in runs}

    def trial(self, study: Study, t: Any) -> None:
        from mlflow.entities import Metric, Param
        from optuna.trial import TrialState

        ok = t.state == TrialState.COMPLETE
        tags = {"mlflow.parentRunId": self.parent, "bench.kind": TRIAL_KIND, "bench.study": study.name,
                "bench.study_key": study.key, "bench.method": study.spec.name, "bench.cell": study.label,
                "bench.trial": str(t.number), "bench.trial_state": t.state.name,
                "bench.reason": str(t.user_attrs.get(FAILURE, "")), "bench.defaults": str(bool(t.user_attrs.get(
                    "defaults")))}
        run = self.tracker.client.create_run(self.exp_id, tags=tags,
                                             run_name=f"trial {t.number} {study.spec.name} | {study.label}")
        now = int(time.time() * 1000)
        metrics = {f"m.{k}": v for k, v in t.user_attrs.get("metrics", {}).items()}
        if ok:
            metrics["objective"] = t.value
        metrics.update({f"gap.{k}": v for k, v in t.user_attrs.get(GAPS, {}).items()})  # per tuning seed
        metrics["wall_s"] = t.user_attrs.get("wall_s", 0.0)
        self.tracker.client.log_batch(
            run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(f"hp.{k}", str(v)) for k, v in {**study.spec.kwargs, **t.params}.items()],
        )
        self.tracker.client.set_terminated(run.info.run_id, "FINISHED" if ok else "FAILED")

    def backfill(self, study: Study, trials: list[Any]) -> None:
        """Counted trials a killed tune finished in Optuna but did not log here."""
        have = self.logged(study)
        for t in trials:
            if t.number not in have:
                self.trial(study, t)

    def end(self, tags: dict[str, str], failed: bool) -> None:
        self.tracker.tag_parent(self.parent, tags)
        self.tracker.end_parent(self.parent, failed)


# --------------------------------------------------------------------------- the command


@dataclass
class TuneSummary:
    path: Path | None = None
    studies: dict[str, tuned.MethodTuning] = field(default_factory=dict)
    seconds: float = 0.0


def tune(opts: TuneOptions) -> TuneSummary:
    """``python -m bench tune``: plan (ConfigError before any work), then every study, resumably;
    one tune of a matrix at a time (a lock beside its tune.db)."""
    t0 = time.perf_counter()
    p = plan(opts)
    folder = Path(opts.results_dir) / p.matrix.name
    db = folder / "tune.db"
    if opts.dry_run:
        print(describe(p, db))
        return TuneSummary()
    if not p.studies:
        why = "; ".join(f"{m}: {r}" for m, r in sorted(p.untuned.items()))
        raise ConfigError(f"nothing to tune in {p.matrix.name}: {why or 'no methods chosen'}")
    log.info("%s", describe(p, db))
    if opts.download:  # fetch once here, as the driver does, so the tuning cells find the files
        for ds in p.matrix.datasets:
            load_dataset(ds, opts.root, download=True, cache=opts.cache)
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / "tune.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(f"another tune of {p.matrix.name} holds {folder / 'tune.lock'}: wait for it") from None
    try:
        with StoreLock(opts.results_dir):  # the MLflow store is shared with `run`: one driver at a time
            return _run(p, opts, folder / tuned.FILE, f"sqlite:///{db.resolve()}", t0)
    finally:
        lock.release()


def _run(p: Plan, opts: TuneOptions, path: Path, storage: str, t0: float) -> TuneSummary:
    """Every study of the plan, one (dataset, encoder, scenario) at a time with its tuning cells'
    runners alive; tuned.yaml rewritten after each study."""
    from threadpoolctl import threadpool_limits

    summary = TuneSummary(path=path)
    out = _start_file(path, p)
    trial_log = TrialLog(opts.results_dir, opts.tracking_uri, p.matrix,
                         {SEEDS_TAG: ",".join(map(str, p.seeds)), TRIALS_TAG: str(p.trials),
                          "bench.tune.methods": ",".join(sorted({s.spec.name for s in p.studies}))})
    failed = True
    try:
        with threadpool_limits(limits=1, user_api="blas"):  # as run_cell: BLAS threads only spin on audits
            for group in p.groups:
                studies = [s for s in p.studies if s.cells == group]
                if not studies:
                    continue
                tcs = [TuningCell(cell, opts.cache, sorted(p.matrix.seeds)) for cell in group]
                models_s = sum(tc.prepare() for tc in tcs)
                log.info("tuning cells %s ready in %.0fs", group_label(group), models_s)
                c = group[0]
                entry = tuned.CellTuning(c.dataset, c.encoder_label, c.backbone, c.scenario,
                                         [x.seed for x in group], models_s)
                for s in studies:
                    trial_log.backfill(s, _existing(storage, s.name))

                    def evaluate(values: dict[str, Any], s: Study = s, tcs: list[TuningCell] = tcs) -> Outcome:
                        return evaluate_on(tcs, s.trial_spec(values))

                    trials = optimise(s.name, storage, s.space, evaluate, p.trials, p.seeds, s.defaults(),
                                      on_trial=lambda t, s=s: trial_log.trial(s, t),
                                      desc=f"tune {s.spec.name} {c.encoder_label} {c.scenario}")
                    entry.methods[s.spec.name] = summary.studies[s.name] = summarise(trials, s, s.name)
                    out.merge(entry)
                    tuned.dump(out, path)
                del tcs  # their models and features before the next group's
        failed = False
    finally:
        summary.seconds = time.perf_counter() - t0
        trial_log.end({"bench.wall_s": f"{summary.seconds:.1f}", "bench.tuned_file": str(path)}, failed)
    return summary


def _existing(storage: str, name: str) -> list[Any]:
    """Counted trials already in ``name``'s study (none if it does not exist yet)."""
    optuna = _optuna()
    try:
        return counted(optuna.load_study(study_name=name, storage=storage).trials)
    except KeyError:
        return []


def _start_file(path: Path, p: Plan) -> tuned.Tuned:
    """The tuned.yaml to merge into: the existing one if it has these seeds and budget
    (``--methods`` adds to it), else a fresh one."""
    fresh = tuned.Tuned(p.matrix.name, list(p.seeds), p.trials,
                        f"optuna TPESampler, {startup_trials(p.trials)} startup trials, defaults first",
                        objective=OBJECTIVE)
    if not path.is_file():
        return fresh
    try:
        old = tuned.load(path)
    except ConfigError as e:
        log.warning("replacing %s: %s", path, e)
        return fresh
    return old if (list(old.seeds), old.trials) == (list(p.seeds), p.trials) else fresh
