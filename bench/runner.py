"""Run one cell: split -> original -> retrain -> each method -> every auditor -> plain results.

The runner names no method, encoder or auditor: registries dispatch. It returns
plain data (:class:`CellResult`) and writes nothing but the model cache, so any
executor can run it in a worker and hand the result to the driver, which alone
writes MLflow and the leaderboard.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import registry
from bench.audit import AuditContext, metric_specs
from bench.auditcache import AuditCache
from bench.cache import ModelCache
from bench.config import Cell, MethodSpec, stable_hash
from bench.context import UnlearnContext
from bench.data import DataView, ImageData, load_dataset
from bench.device import PeakMemory, compile_backbone, place, resolve_device
from bench.encoders.base import DataInfo, Encoder, build_encoder
from bench.features import READS, ModelFeatures, extract, state_hash
from bench.features import VERSION as FEATURES_VERSION
from bench.report.flags import cell_flags, noisy_metrics
from bench.report.roles import FLOOR
from bench.report.summary import avg_gap
from bench.splits import Split, make_split, parse_scenario
from bench.training import train_encoder

log = logging.getLogger("bench.runner")

REFERENCE_SEED_STRIDE = 10007  # reference retrain k trains with seed + (k + 1) * stride


@dataclass
class MethodResult:
    method: str
    status: str  # finished | failed | skipped | reference
    config_hash: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    request: int = 0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class CellResult:
    cell: Cell
    rows: list[MethodResult] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # cache hits / trainings, for the log
    error: str = ""  # a failure of the cell itself (data, original model)
    scenario_name: str = ""  # the scenario as shown, class by name: "class:2 (delta)" (CellRunner)


def _short_error(e: BaseException) -> str:
    last = traceback.format_exception_only(type(e), e)[-1].strip()
    return last[:500]


class CellRunner:
    """State of one cell while it runs (data on device, cache, feature memo)."""

    ORIGINAL = "original"

    def __init__(self, cell: Cell, cache_root: Path):
        self.cell = cell
        self.cache = ModelCache(cache_root)
        self.stored = AuditCache(cache_root)  # the yardsticks' features and audits (bench/auditcache.py)
        self.device = resolve_device(cell.device)
        self.data: ImageData = load_dataset(cell.dataset, Path(cell.data_root) if cell.data_root else None,
                                            cache=cache_root)
        if cell.data_fingerprint and cell.data_fingerprint != self.data.fingerprint:  # edited mid-run
            raise RuntimeError(f"{cell.dataset} changed on disk since the run was validated (content "
                               f"{self.data.fingerprint}, validated {cell.data_fingerprint}): run again")
        self.info = DataInfo.of(self.data)
        self.scenario = parse_scenario(cell.scenario)
        d = cell.data
        self.split: Split = make_split(
            self.data.train_y.numpy(), self.data.test_y.numpy(), self.scenario, cell.seed,
            d.n_val, d.n_train, d.n_test,
        )
        self.events: list[str] = []
        self._features: dict[str, ModelFeatures] = {}
        self._yardsticks: dict[tuple[int, str], tuple[dict[str, float], list[str]]] = {}  # yardstick()
        self.checkpoints: dict[str, str] = {}  # role -> sha256 of the cached checkpoint (trained())
        self.encoder_cls = registry.encoders.get(cell.encoder)

    # --- data ----------------------------------------------------------------
    def train_view(self, idx: np.ndarray, name: str) -> DataView:
        t = torch.as_tensor(idx, dtype=torch.long)
        labels = self.data.train_y[t]
        return DataView(self.data.train_x[t], labels, t, name).to(self.device)

    def test_view(self) -> DataView:
        t = torch.as_tensor(self.split.test, dtype=torch.long)
        return DataView(self.data.test_x[t], self.data.test_y[t], t, "test").to(self.device)

    def audit_members(self, retain: np.ndarray) -> np.ndarray:
        """The retain members the auditors score: a fixed sample of at most ``max_members``."""
        rng = np.random.default_rng([self.cell.seed, 101])
        return np.sort(rng.permutation(retain)[: self.cell.audit.max_members])

    def audit_views(self, forgotten: np.ndarray, retain: np.ndarray) -> dict[str, DataView]:
        """What the auditors score. ``val`` (D_v, never trained on) only joins D_r in fitting the
        probe and the kNN bank (bench/probe.py), so they know every class: the attacks take
        their members from ``retain`` alone."""
        return {
            "forget": self.train_view(forgotten, "forget"),
            "retain": self.train_view(self.audit_members(retain), "retain"),
            "test": self.test_view(),
            "val": self.train_view(self.split.val, "val"),
        }

    @property
    def forgotten_classes(self) -> tuple[int, ...]:
        """Classes with no sample left in D_r: the auditors' only hint of the scenario (TA_rest)."""
        return (self.scenario.cls,) if self.scenario.kind == "class" else ()

    @property
    def scenario_name(self) -> str:
        """The scenario as the leaderboard and MLflow show it: a class by its name too."""
        if self.scenario.kind != "class":
            return self.cell.scenario
        return f"{self.cell.scenario} ({self.data.classes[self.scenario.cls]})"

    def audit_sizes(self, r: int) -> dict[str, int]:
        """Sizes of request ``r``'s audit views, without building them (bench/report/sanity.py)."""
        forgotten, retain = self.split.after_request(r)
        return {"forget": len(forgotten), "retain": len(self.audit_members(retain)),
                "test": len(self.split.test), "val": len(self.split.val)}

    # --- models --------------------------------------------------------------
    def new_encoder(self, seed: int) -> Encoder:
        torch.manual_seed(seed)
        enc = build_encoder(self.cell.encoder, self.cell.backbone, self.info, dict(self.cell.encoder_params))
        enc = place(enc, self.device)  # channels_last on CUDA
        return compile_backbone(enc) if self.cell.compile else enc

    def trained(self, idx: np.ndarray, seed: int, role: str) -> tuple[Encoder, float]:
        """A model trained from scratch on ``idx`` with the cell's recipe; cached by content."""
        key = stable_hash(
            {
                "model": {k: v for k, v in self.cell.identity().items()
                          if k not in ("scenario", "seed", "data_fingerprint")},
                "content": self.data.fingerprint,  # the pixels trained on, not the data set's name
                "indices": stable_hash(np.sort(idx).tolist()),
                "seed": seed,
                "code": self.encoder_cls.version,
            }
        )
        enc = self.new_encoder(seed)

        def build() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
            view = self.train_view(idx, role)
            secs = train_encoder(enc, view, self.cell.train, self.device, self.cell.precision, seed,
                                 desc=f"train {role}")
            self.events.append(f"trained {role} in {secs:.1f}s (cached as {key})")
            log.info("trained %s of %s in %.1fs", role, self.cell.label, secs)
            return enc.state_dict(), {"seconds": secs, "role": role, "cell": self.cell.label}

        state, meta, hit = self.cache.get_or_build(key, build)
        self.checkpoints[role] = str(meta.get("sha256", ""))  # what every row of the cell was computed from
        if hit:
            enc.load_state_dict(state)
            self.events.append(f"cache hit: {role} ({key})")
            log.info("cache hit: %s of %s (%s)", role, self.cell.label, key)
        enc.eval()
        return enc, float(meta["seconds"])

    @property
    def reads(self) -> frozenset[str]:
        """What the cell's auditors read of a model (bench.features.READS): all that is extracted."""
        out: set[str] = set()
        for name in self.cell.auditors:
            cls = registry.auditors.get(name)
            if cls.requires <= self.encoder_cls.capabilities:  # as audit() skips the others
                out |= getattr(cls, "reads", READS)  # an auditor that does not say reads everything
        return frozenset(out)

    def features(self, enc: Encoder, name: str, views: dict[str, DataView], request: int,
                 role: str = "") -> ModelFeatures:
        """``role``: the model is the cached checkpoint of that role (original, retrain, reference-k),
        so its features are kept on disk too and a later invocation extracts nothing."""
        key = f"{request}:{state_hash(enc)}"
        if key not in self._features:
            def build() -> ModelFeatures:
                return extract(enc, name, views, self.cell.audit, self.device, self.cell.precision,
                               self.cell.seed, self.reads)

            stored = self.yardstick_key("features", role, views) if role else None
            if stored is None:
                self._features[key] = build()
            else:
                self._features[key], hit = self.stored.features(stored, name, build)
                if hit:
                    self.events.append(f"reused features of {role} ({stored})")
        mf = self._features[key]
        return dataclasses.replace(mf, name=name) if mf.name != name else mf

    # --- auditing ------------------------------------------------------------
    def audit(self, mf: ModelFeatures, actx: AuditContext) -> tuple[dict[str, float], list[str]]:
        metrics: dict[str, float] = {}
        problems: list[str] = []
        for name in self.cell.auditors:
            auditor = registry.auditors.get(name)()
            if not auditor.requires <= mf.capabilities:
                continue
            try:
                metrics.update({k: float(v) for k, v in auditor.audit(mf, actx).items()})
            except Exception as e:  # an auditor bug must not hide the other metrics
                log.exception("auditor %s failed on %s", name, mf.name)
                problems.append(f"auditor {name}: {_short_error(e)}")
        return metrics, problems

    def yardstick_key(self, kind: str, role: str, views: dict[str, DataView]) -> str | None:
        """Content key of a yardstick's stored features (``kind`` "features": ``role`` is a checkpoint's)
        or audit ("audit": ``role`` original, retrain or the floor, audited against every checkpoint of
        the cell); None when a checkpoint's sha256 is unknown."""
        shas = dict(sorted(self.checkpoints.items()))
        models = shas if kind == "audit" else {role: shas.get(role, "")}
        if not models or not all(models.values()):
            return None
        ident: dict[str, Any] = {
            "kind": kind, "role": role, "checkpoints": models, "data": self.data.fingerprint,
            "views": {k: stable_hash(v.idx.cpu().tolist()) for k, v in sorted(views.items())},
            "audit": dataclasses.asdict(self.cell.audit), "reads": sorted(self.reads), "seed": self.cell.seed,
            "precision": self.cell.precision, "device": self.device.type,
            "threads": torch.get_num_threads() if self.device.type == "cpu" else 0,  # bitwise equal at one count
            "code": {"features": FEATURES_VERSION, "encoder": self.encoder_cls.version},
        }
        if kind == "audit":
            versions = {n: getattr(registry.auditors.get(n), "version", 1) for n in sorted(self.cell.auditors)}
            ident |= {"auditors": versions,
                      "num_classes": self.data.num_classes, "forgotten": list(self.forgotten_classes)}
        return stable_hash(ident)

    def yardstick(self, mf: ModelFeatures, actx: AuditContext, r: int,
                  views: dict[str, DataView] | None = None) -> tuple[dict[str, float], list[str]]:
        """The audit of request ``r``'s original, retrain or floor, once per runner and, given the audit
        ``views``, stored for later invocations (copies: callers add to them)."""
        if (r, mf.name) not in self._yardsticks:
            stored = self.yardstick_key("audit", mf.name, views) if views is not None else None
            if stored is None:
                self._yardsticks[(r, mf.name)] = self.audit(mf, actx)
            else:
                metrics, problems, hit = self.stored.audit(stored, lambda: self.audit(mf, actx))
                self._yardsticks[(r, mf.name)] = metrics, problems
                if hit:
                    self.events.append(f"reused audit of {mf.name} ({stored})")
        metrics, problems = self._yardsticks[(r, mf.name)]
        return dict(metrics), list(problems)

    def keep_features(self, keys: frozenset[str] | None = None) -> frozenset[str]:
        """Drop the memoised features not in ``keys``; return the keys kept (all of them when None).
        Tuning keeps the yardsticks' and drops each trial's model, which is audited once."""
        for key in set(self._features) - (set(self._features) if keys is None else keys):
            del self._features[key]
        return frozenset(self._features)

    # --- the cell ------------------------------------------------------------
    def run(self, done: frozenset[str] = frozenset(), methods: tuple[MethodSpec, ...] | None = None) -> CellResult:
        """The cell's rows not in ``done``. ``methods`` (default: the cell's) and no figures: tuning
        (bench/tune.py) runs one trial per call on one runner, reusing its models and yardsticks."""
        cell = self.cell
        result = CellResult(cell, scenario_name=self.scenario_name)
        specs = metric_specs()
        members = self.split.members
        original, orig_secs = self.trained(members, cell.seed, "original")
        current: dict[str, Encoder] = {}
        for r in range(len(self.split.requests)):
            forgotten, retain = self.split.after_request(r)
            views = self.audit_views(forgotten, retain)
            retrain, retrain_secs = self.trained(retain, cell.seed, "retrain")
            refs = [  # (model, training seconds)
                self.trained(retain, cell.seed + (k + 1) * REFERENCE_SEED_STRIDE, f"reference-{k}")
                for k in range(cell.audit.references)
            ]
            actx = AuditContext(
                original=self.features(original, "original", views, r, role="original"),
                retrain=self.features(retrain, "retrain", views, r, role="retrain"),
                references=[self.features(m, f"reference-{i}", views, r, role=f"reference-{i}")
                            for i, (m, _) in enumerate(refs)],
                num_classes=self.data.num_classes,
                options=cell.audit,
                seed=cell.seed,
                forgotten_classes=self.forgotten_classes,
            )
            retrain_metrics, _ = self.yardstick(actx.retrain, actx, r, views)
            models = {"original": actx.original, "retrain": actx.retrain}
            h = self.row_hash(MethodSpec(self.ORIGINAL), r)
            orig_metrics, problems = self.yardstick(actx.original, actx, r, views)  # flags need it even on resume
            noisy = noisy_metrics(orig_metrics, {k: len(v) for k, v in views.items()})
            if h not in done:  # doing nothing, with its Avg Gap like a method's
                result.rows.append(
                    MethodResult(self.ORIGINAL, "reference", h, metrics=with_gaps(orig_metrics, retrain_metrics,
                                                                                   specs, noisy),
                                 request=r, info={"train_seconds": orig_secs, "avg_gap_excludes": sorted(noisy)},
                                 reason="; ".join(problems))
                )
            h = self.row_hash(MethodSpec(FLOOR), r)
            if h not in done:  # the noise floor: the first reference audited like a method
                # calibrated metrics swap roles: the retrain calibrates (neither saw D_f); gaps stay to retrain
                floor_ctx = dataclasses.replace(actx, references=[actx.retrain, *actx.references[1:]])
                ref_secs = refs[0][1]
                fm, problems = self.yardstick(dataclasses.replace(actx.references[0], name=FLOOR), floor_ctx, r, views)
                fm.update({"rte_s": ref_secs, "rte_frac": ref_secs / max(retrain_secs, 1e-9)})
                result.rows.append(
                    MethodResult(FLOOR, "reference", h, metrics=with_gaps(fm, retrain_metrics, specs, noisy),
                                 request=r, reason="; ".join(problems),
                                 info={"train_seconds": ref_secs, "train_seed": cell.seed + REFERENCE_SEED_STRIDE,
                                       "avg_gap_excludes": sorted(noisy)})
                )
            request = {
                "forget": self.train_view(self.split.requests[r], "forget"),
                "retain": self.train_view(retain, "retain"),
                "val": self.train_view(self.split.val, "val"),
            }

            def scratch(view: DataView) -> tuple[Encoder, float]:
                return self.trained(view.idx.cpu().numpy(), cell.seed, "retrain")

            last = len(self.split.requests) - 1
            for spec in cell.methods if methods is None else methods:
                h = self.row_hash(spec, r)
                if all(self.row_hash(spec, q) in done for q in range(r, last + 1)):
                    continue  # finished earlier and no later request builds on it
                start = original if r == 0 else current.get(spec.name)
                row = self.run_method(spec, h, r, start, current, request, scratch, views, actx, models)
                if h in done:
                    continue  # ran only to feed the next request
                if row.status == "finished":
                    row.metrics["rte_frac"] = row.metrics["rte_s"] / max(retrain_secs, 1e-9)
                    row.metrics = with_gaps(row.metrics, retrain_metrics, specs, noisy)
                    row.info["avg_gap_excludes"] = sorted(noisy)
                result.rows.append(row)
            self.flag(result.rows, r, orig_metrics, retrain_metrics, views)
            for row in result.rows:  # a method pairs with the floor only where these agree (bench/report)
                if row.request == r:
                    row.info["checkpoints"] = dict(sorted(self.checkpoints.items()))
                    row.info["code"] = code_versions(cell, MethodSpec(row.method))
            for name in cell.auditors if methods is None else ():
                auditor = registry.auditors.get(name)()
                try:
                    for fname, blob in auditor.figures(models, actx).items():
                        result.artifacts[f"r{r}/{fname}" if r else fname] = blob
                except Exception as e:
                    log.exception("figures of auditor %s failed", name)
                    result.events.append(f"figures of {name} failed: {_short_error(e)}")
        result.events.extend(self.events)
        return result

    def flag(self, rows: list[MethodResult], r: int, orig: dict[str, float],
             retrain: dict[str, float], views: dict[str, DataView]) -> None:
        """The sanity flags of request ``r`` into each row's info (bench/report/flags.py)."""
        mine = [row for row in rows if row.request == r]
        sizes = {k: len(v) for k, v in views.items()}
        flags = cell_flags({row.method: row.metrics for row in mine if row.status == "finished" or row.method == FLOOR},
                           orig, retrain, sizes, class_forgetting=self.scenario.kind == "class",
                           unchanged={row.method for row in mine if row.info.get("weights_unchanged")})
        for row in mine:
            row.info["sizes"] = sizes
            row.info["cell_flags"] = flags.cell
            row.info["flags"] = flags.methods.get(row.method, [])

    def row_hash(self, spec: MethodSpec, r: int) -> str:
        return row_hash(self.cell, spec, r)

    def run_method(
        self, spec: MethodSpec, h: str, r: int, start_from: Encoder | None, current: dict[str, Encoder],
        request: dict[str, DataView], scratch, views: dict[str, DataView], actx: AuditContext,
        models: dict[str, ModelFeatures],
    ) -> MethodResult:
        """Unlearn request ``r`` starting from ``start_from`` (the original, or this method's
        output after the previous request) and audit the result."""
        cls = registry.methods.get(spec.name)
        method = cls(**spec.kwargs)
        params = method.hparams()
        reason = cls.unsupported_reason(self.encoder_cls)
        if reason:
            log.warning("skipping %s on %s: %s", spec.name, self.cell.label, reason)
            return MethodResult(spec.name, "skipped", h, params, reason=reason, request=r)
        if start_from is None:  # the previous request of this method failed
            return MethodResult(spec.name, "failed", h, params, request=r,
                                reason="no model from the previous request")
        enc = copy.deepcopy(start_from)
        labels_visible = "labels" in cls.needs or "labels" in self.encoder_cls.capabilities
        data = {k: (v if labels_visible else dataclasses.replace(v, y=torch.full_like(v.y, -1)))
                for k, v in request.items()}
        teacher = None
        if "original" in cls.needs:  # the model before this request, frozen
            teacher = copy.deepcopy(start_from).eval().requires_grad_(False)
        ctx = UnlearnContext(
            enc, needs=cls.needs, data=data, original=teacher,
            device=self.device, precision=self.cell.precision, seed=self.cell.seed + 1 + r,
            budget=self.cell.train, time_limit_s=self.cell.time_limit_s,
            num_classes=self.data.num_classes, train_from_scratch=scratch, desc=spec.name,
        )
        torch.manual_seed(self.cell.seed + 1 + r)
        enc.train()
        started = time.perf_counter()
        try:
            with PeakMemory(self.device) as mem:
                t0 = time.perf_counter()
                method.unlearn(ctx)
                ctx.finish()  # the last steps' loss check; waits for the method's queued GPU work
                wall = time.perf_counter() - t0
            bad = [n for n, p in enc.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
            if bad:
                raise FloatingPointError(f"non-finite weights after unlearning ({bad[0]}, ...)")
        except Exception as e:
            log.warning("method %s failed on %s: %s", spec.name, self.cell.label, _short_error(e))
            current.pop(spec.name, None)
            return MethodResult(spec.name, "failed", h, params, reason=_short_error(e), request=r,
                                info={**ctx.info, "seconds": time.perf_counter() - started})
        enc.eval()
        current[spec.name] = enc
        mf = self.features(enc, spec.name, views, r)
        models[spec.name] = mf
        metrics, problems = self.audit(mf, actx)
        rte = wall - ctx.excluded_seconds + ctx.charged_seconds
        metrics.update({"rte_s": rte, "peak_mem_mb": mem.peak_mb})
        info = {**ctx.info, "seconds": time.perf_counter() - started}  # unlearning + audit: the MLflow duration
        info["weights_unchanged"] = same_state(enc, start_from)  # flagged "did nothing" (bench/report/flags.py)
        if ctx.out_of_time:
            info["stopped"] = "time budget"
        nonfinite = [k for k, v in metrics.items() if not math.isfinite(v)]
        reason = "; ".join(problems + ([f"non-finite metrics {nonfinite}"] if nonfinite else []))
        return MethodResult(spec.name, "finished", h, params, metrics, reason=reason, request=r, info=info)


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Every tensor of ``a``'s state dict equal to ``b``'s (same names, shapes and values)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def with_gaps(metrics: dict[str, float], retrain: dict[str, float], specs: dict, noisy: set[str]) -> dict[str, float]:
    """``metrics`` plus Avg Gap to retrain (without the cell's noisy privacy metrics) and over all."""
    out = dict(metrics)
    for key, skip in (("avg_gap", noisy), ("avg_gap_all", ())):
        gap = avg_gap(out, retrain, specs, skip)
        if gap is not None:
            out[key] = gap
    return out


def code_versions(cell: Cell, spec: MethodSpec) -> dict[str, int]:
    """The versions of the code a row depends on: its encoder's and (for a method, not a
    yardstick) the method's. Part of the row's identity, so bumping one reruns its rows."""
    out = {"encoder": int(registry.encoders.get(cell.encoder).version)}
    if spec.name not in (CellRunner.ORIGINAL, FLOOR):
        out["method"] = int(getattr(registry.methods.get(spec.name), "version", 1))
    return out


def row_hash(cell: Cell, spec: MethodSpec, r: int) -> str:
    """Config hash of one row: (cell, method, code versions) and, after the first, the deletion request."""
    return cell.method_hash(spec, code_versions(cell, spec)) + (f"-r{r}" if r else "")


def row_hashes(cell: Cell) -> list[str]:
    """Config hashes of every row the cell produces (original, the floor and each method, per request)."""
    k = parse_scenario(cell.scenario).k
    specs = [MethodSpec(CellRunner.ORIGINAL), MethodSpec(FLOOR), *cell.methods]
    return [row_hash(cell, s, r) for r in range(k) for s in specs]


def pending(cell: Cell, done: frozenset[str]) -> bool:
    """Whether any row of the cell is still to be computed (resume skips the cell otherwise)."""
    return not set(row_hashes(cell)) <= done


def run_cell(cell: Cell, cache_root: Path, done: frozenset[str] = frozenset()) -> CellResult:
    """Run every method of ``cell`` not in ``done`` (config hashes); never raises.

    numpy/scipy BLAS runs single-threaded inside a cell: the auditors' problems (probe,
    kNN, CKA) are small, and OpenBLAS threads on them only spin; on a shared 2-core
    machine they made one probe fit take 4-7 s instead of 0.1 s. torch's threads are
    not affected."""
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(limits=1, user_api="blas"):
            return CellRunner(cell, cache_root).run(done)
    except Exception as e:
        log.exception("cell %s failed", cell.label)
        return CellResult(cell, error=_short_error(e))
