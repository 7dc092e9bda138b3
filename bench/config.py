"""Typed matrix configuration: YAML -> :class:`Matrix` -> validated list of pure-data :class:`Cell`.

Everything is checked before any work starts (:func:`validate`): a bad name, ratio,
hyperparameter or path raises :class:`ConfigError` with one line naming the fix,
which the CLI turns into exit code 2 with nothing written.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bench import hparams, registry
from bench.hparams import hp
from bench.splits import parse_scenario


class ConfigError(ValueError):
    """A configuration problem; the message is one line that says how to fix it."""


@dataclass(frozen=True)
class TrainBudget:
    """The recipe of the original model (and of retrain, which must match it)."""

    epochs: int = hp(20, ge=1)
    batch_size: int = hp(256, ge=2)
    lr: float = hp(1e-3, gt=0)
    optimizer: str = hp("adam", choices=("adam", "sgd", "adamw"))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(0.0, ge=0)
    schedule: str = hp("cosine", choices=("cosine", "constant"))


@dataclass(frozen=True)
class DataOptions:
    n_val: int = hp(500, ge=1, doc="D_v: never trained on, part of the protocol (MUC: 5,000 of CIFAR's 50,000)")
    n_train: int | None = hp(None, ge=1, doc="members (D \\ D_v); None = all")
    n_test: int | None = hp(None, ge=1, doc="D_t size; None = the whole test set")


@dataclass(frozen=True)
class AuditOptions:
    views: int = hp(30, ge=2, doc="augmentations per image for alignment / EMIA scores")
    max_members: int = hp(2000, ge=1, doc="D_r samples used as members by the attacks")
    references: int = hp(1, ge=1, doc="independent-seed retrains for the calibrated attack")
    batch_size: int = hp(512, ge=1)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Cell:
    """One unit of work, a run: one seed of a cell (the report's cell is encoder x dataset x scenario),
    with everything that determines it."""

    matrix: str
    dataset: str
    encoder: str
    backbone: str
    scenario: str
    seed: int
    encoder_params: tuple[tuple[str, Any], ...] = ()
    train: TrainBudget = field(default_factory=TrainBudget)
    train_overrides: tuple[tuple[str, Any], ...] = ()  # the encoder's own changes to the matrix's train
    data: DataOptions = field(default_factory=DataOptions)
    audit: AuditOptions = field(default_factory=AuditOptions)
    methods: tuple[MethodSpec, ...] = ()
    auditors: tuple[str, ...] = ()
    device: str = "auto"
    precision: str = "fp32"
    time_limit_s: float = 3600.0
    data_root: str = ""
    data_fingerprint: str = ""  # the data set's content (ImageData.fingerprint): edited data is a new cell
    compile: bool = False  # torch.compile the backbone: speed only, so not in identity() (recorded)

    @property
    def encoder_label(self) -> str:
        """The encoder with its non-default params and, in brackets, its own train overrides
        (e.g. ``moco_v2(memory_bank=512)[batch_size=64]``), so two variants never share a table."""
        params = ",".join(f"{k}={v}" for k, v in self.encoder_params)
        label = f"{self.encoder}({params})" if params else self.encoder
        train = ",".join(f"{k}={v}" for k, v in self.train_overrides)
        return f"{label}[{train}]" if train else label

    @property
    def label(self) -> str:
        return f"{self.encoder_label}/{self.backbone} {self.dataset} {self.scenario} seed={self.seed}"

    def identity(self) -> dict[str, Any]:
        """What determines the cell's models and splits (not which methods/auditors run)."""
        return {
            "dataset": self.dataset,
            "encoder": self.encoder,
            "backbone": self.backbone,
            "encoder_params": dict(self.encoder_params),
            "scenario": self.scenario,
            "seed": self.seed,
            "train": dataclasses.asdict(self.train),
            "data": dataclasses.asdict(self.data),
            "data_fingerprint": self.data_fingerprint,
            "precision": self.precision,
        }

    def method_hash(self, method: MethodSpec, code: dict[str, int] | None = None) -> str:
        """Config identity of one (cell, method) result: resume skips a finished match.
        ``code``: the versions of the code that computed it (method, encoder), so an edit
        that bumps one reruns its rows (bench/runner.py ``code_versions``)."""
        ident = self.identity() | {
            "audit": dataclasses.asdict(self.audit),
            "auditors": sorted(self.auditors),
            "method": method.name,
            "method_params": method.kwargs,
        }
        if code:
            ident["code"] = dict(sorted(code.items()))
        return stable_hash(ident)


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class EncoderSpec:
    name: str
    backbone: str = "convnet-s"
    params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # overrides of the matrix's TrainBudget


@dataclass
class Matrix:
    name: str
    datasets: list[str]
    encoders: list[EncoderSpec]
    scenarios: list[str]
    seeds: list[int]
    methods: list[MethodSpec]
    auditors: list[str]
    train: TrainBudget = field(default_factory=TrainBudget)
    data: DataOptions = field(default_factory=DataOptions)
    audit: AuditOptions = field(default_factory=AuditOptions)
    device: str = "auto"
    precision: str = "fp32"
    time_limit_s: float = 3600.0
    compile: bool = False  # torch.compile the backbone (`run --compile`); off: it was slower on CPU
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0})
    description: str = ""
    estimate: dict[str, Any] = field(default_factory=dict)
    executors: dict[str, dict[str, Any]] = field(default_factory=dict)  # executor -> default options
    source: str = ""
    tuned: str = ""  # a tuned.yaml (`run --tuned`): bench/tuned.py checks it and applies it to the cells

    def cells(self, data_root: str = "", fingerprints: dict[str, str] | None = None) -> list[Cell]:
        """Every cell; ``fingerprints`` (data set -> content hash, filled by the driver from the
        loaded data) enter each cell's identity, so resume never trusts rows of edited data."""
        out = []
        for ds in self.datasets:
            for enc in self.encoders:
                train = _build(TrainBudget, {**dataclasses.asdict(self.train), **enc.train}, "train")
                for sc in self.scenarios:
                    for seed in self.seeds:
                        out.append(
                            Cell(
                                matrix=self.name,
                                dataset=ds,
                                encoder=enc.name,
                                backbone=enc.backbone,
                                scenario=sc,
                                seed=int(seed),
                                encoder_params=tuple(sorted(enc.params.items())),
                                train=train,
                                train_overrides=tuple(sorted(enc.train.items())),
                                data=self.data,
                                audit=self.audit,
                                methods=tuple(self.methods),
                                auditors=tuple(self.auditors),
                                device=self.device,
                                precision=self.precision,
                                time_limit_s=self.time_limit_s,
                                data_root=data_root,
                                data_fingerprint=(fingerprints or {}).get(ds, ""),
                                compile=self.compile,
                            )
                        )
        return out


# --------------------------------------------------------------------------- loading


def shipped_matrices() -> dict[str, Path]:
    folder = resources.files("bench") / "matrices"
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def parse_seeds(text: str) -> list[int]:
    """A ``--seeds`` flag (run's evaluation seeds, tune's tuning seeds): ``0-3,7`` -> [0, 1, 2, 3, 7];
    one line naming the flag on a bad item, a negative or empty range, or a seed given twice."""
    seeds: list[int] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        lo, _, hi = item.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"--seeds: {item!r} is not a non-negative seed or a range: pass e.g. --seeds 4-7 "
                              "or --seeds 0,2,5") from None
        if b < a or a < 0:
            raise ConfigError(f"--seeds: range {item!r} is empty or negative: write low-high, e.g. 4-7")
        seeds += range(a, b + 1)
    if not seeds:
        raise ConfigError("--seeds is empty: pass e.g. --seeds 4-7")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ConfigError(f"--seeds names seed {twice[0]} twice: list each seed once")
    return seeds


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _build(cls: type, raw: Any, where: str) -> Any:
    """``cls`` (a dataclass of options) from a YAML mapping: known names, declared types and
    ranges (bench/hparams.py), each problem one line."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        names = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ConfigError(f"'{where}' must be a mapping ({names}), got {raw!r}")
    try:
        return cls(**hparams.check(cls, raw, where))
    except hparams.HParamError as e:
        raise ConfigError(str(e)) from None


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"'{key}' must be true or false, got {value!r}")
    return value


def _method_spec(item: Any) -> MethodSpec:
    if isinstance(item, str):
        return MethodSpec(item)
    if isinstance(item, dict) and len(item) == 1:
        (name, params), = item.items()
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"method {name}: its parameters must be a mapping, e.g. {{{name}: {{epochs: 5}}}}, "
                              f"got {params!r}")
        return MethodSpec(str(name), tuple(sorted((params or {}).items())))
    raise ConfigError(f"bad method entry {item!r}: use a name or {{name: {{param: value}}}}")


def _encoder_spec(item: Any) -> EncoderSpec:
    if isinstance(item, str):
        return EncoderSpec(item)
    if not isinstance(item, dict):
        raise ConfigError(f"bad encoder entry {item!r}: use a name or {{name: simclr, backbone: convnet-s}}")
    names = [f.name for f in dataclasses.fields(EncoderSpec)]
    for key in item:
        if key not in names:
            raise ConfigError(
                f"unknown key '{key}' in encoders{_did_you_mean(key, names)} (allowed: {', '.join(names)})"
            )
    if not isinstance(item.get("name"), str):
        raise ConfigError(f"encoder entry {item!r} needs a name: {{name: simclr, backbone: convnet-s}}")
    for key, kind in (("backbone", str), ("params", dict), ("train", dict)):
        if key in item and not isinstance(item[key], kind):
            what = "a name" if kind is str else "a mapping"
            raise ConfigError(f"encoder {item['name']}: '{key}' must be {what}, got {item[key]!r}")
    return EncoderSpec(**item)


EXAMPLES = {"datasets": "digits", "encoders": "simclr", "scenarios": "random:0.1", "seeds": "0, 1, 2",
            "methods": "retrain, finetune", "auditors": "linear_probe"}


def _nonempty_list(raw: dict[str, Any], key: str, matrix: str) -> list[Any]:
    value = raw.get(key)
    if isinstance(value, list) and value:
        return value
    if value is None or value == [] or value == "":
        raise ConfigError(f"matrix '{matrix}' needs a non-empty '{key}' list, e.g. {key}: [{EXAMPLES[key]}]")
    raise ConfigError(f"matrix '{matrix}': '{key}' must be a list, e.g. {key}: [{EXAMPLES[key]}]; got {value!r}")


def _distinct(raw: dict[str, Any], key: str, matrix: str, ok: Callable[[Any], bool], must: str,
              item: Callable[[Any], str]) -> list[Any]:
    """The non-empty ``key`` list, every entry passing ``ok`` (else: "<must>") and none twice."""
    out: list[Any] = []
    for v in _nonempty_list(raw, key, matrix):
        if not ok(v):
            raise ConfigError(f"matrix '{matrix}': {must}, e.g. {key}: [{EXAMPLES[key]}]; got {v!r}")
        if v in out:
            raise ConfigError(f"matrix '{matrix}': {item(v)} is listed twice in '{key}'")
        out.append(v)
    return out


def _names(raw: dict[str, Any], key: str, matrix: str) -> list[str]:
    return _distinct(raw, key, matrix, lambda v: isinstance(v, str), f"'{key}' entries are names",
                     lambda v: f"'{v}'")


def _seeds(raw: dict[str, Any], matrix: str) -> list[int]:
    return _distinct(raw, "seeds", matrix, lambda s: isinstance(s, int) and not isinstance(s, bool) and s >= 0,
                     "seeds must be non-negative integers", lambda s: f"seed {s}")


def _scalar(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, example: str) -> Any:
    value = raw.get(key, default)
    if value is None:
        return default
    wrong_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    if wrong_bool or not isinstance(value, kind):  # YAML's `yes` is a bool, and a bool an int: refused
        raise ConfigError(f"matrix key '{key}' must be {example}, got {value!r}")
    return value


def _mapping(raw: dict[str, Any], key: str, example: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"matrix key '{key}' must be a mapping, e.g. {example}; got {value!r}")
    return value


def yaml_problem(e: yaml.YAMLError) -> str:
    """The parser's message in one line, with the line and column where it stopped."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    what = ": ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x)
    what = what or str(e).splitlines()[0]
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else what


def load_matrix(name_or_path: str) -> Matrix:
    """A shipped matrix by name (``smoke``) or a YAML file by path."""
    shipped = shipped_matrices()
    path = Path(name_or_path)
    if name_or_path in shipped:
        path = shipped[name_or_path]
    elif not (path.suffix in {".yaml", ".yml"} and path.is_file()):
        raise ConfigError(
            f"unknown matrix '{name_or_path}'{_did_you_mean(name_or_path, list(shipped))}: "
            f"use a shipped name ({', '.join(sorted(shipped))}) or the path of a YAML file"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"matrix {path} is not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"matrix {path} must be a YAML mapping")
    return matrix_from_dict(raw, default_name=path.stem, source=str(path))


def matrix_from_dict(raw: dict[str, Any], default_name: str = "matrix", source: str = "") -> Matrix:
    """A :class:`Matrix` from parsed YAML: every key known and every value of its type, or one
    :class:`ConfigError` naming the fix (names and data are checked later, by :func:`validate`)."""
    raw = dict(raw)
    known = [f.name for f in dataclasses.fields(Matrix) if f.name != "source"]
    for key in raw:
        if key not in known:
            hint = _did_you_mean(str(key), known)
            raise ConfigError(f"unknown key '{key}'{hint}" if hint else
                              f"unknown key '{key}' in the matrix: use one of {', '.join(known)}")
    name = str(raw.get("name", default_name))
    executors = _mapping(raw, "executors", "executors: {local: {workers: 2}}")
    for k, v in executors.items():
        if v is not None and not isinstance(v, dict):
            raise ConfigError(f"executors.{k} must be a mapping of options, e.g. {{workers: 2}}; got {v!r}")
    resources = _mapping(raw, "resources", "resources: {num_cpus: 1, num_gpus: 0}") or {"num_cpus": 1, "num_gpus": 0}
    for k, v in resources.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"resources.{k} must be a non-negative number, got {v!r}")
    time_limit = _scalar(raw, "time_limit_s", (int, float), 3600.0, "a number of seconds > 0")
    if not time_limit > 0:
        raise ConfigError(f"time_limit_s must be > 0 seconds, got {time_limit!r}")
    return Matrix(
        name=name,
        datasets=_names(raw, "datasets", name),
        encoders=[_encoder_spec(e) for e in _nonempty_list(raw, "encoders", name)],
        scenarios=_names(raw, "scenarios", name),
        seeds=_seeds(raw, name),
        methods=[_method_spec(m) for m in _nonempty_list(raw, "methods", name)],
        auditors=_names(raw, "auditors", name),
        train=_build(TrainBudget, raw.get("train"), "train"),
        data=_build(DataOptions, raw.get("data"), "data"),
        audit=_build(AuditOptions, raw.get("audit"), "audit"),
        device=_scalar(raw, "device", str, "auto", "auto, cpu or cuda[:N]"),
        precision=_scalar(raw, "precision", str, "fp32", "fp32 or bf16"),
        time_limit_s=float(time_limit),
        compile=_flag(raw.get("compile", False), "compile"),
        resources=dict(resources),
        description=str(raw.get("description") or ""),
        estimate=dict(_mapping(raw, "estimate", "estimate: {train_img_s: 1000, basis: ...}")),
        executors={str(k): dict(v or {}) for k, v in executors.items()},
        tuned=str(raw.get("tuned") or ""),
        source=source,
    )


# --------------------------------------------------------------------------- validation


def _check_name(reg: registry.Registry, name: str) -> None:
    if name not in reg:
        raise ConfigError(reg.unknown_message(name))


def _check_encoder_params(enc: EncoderSpec) -> None:
    """The encoder's params are keyword arguments of its constructor (after backbone and info)."""
    import inspect

    sig = inspect.signature(registry.encoders.get(enc.name))
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    names = list(sig.parameters)[2:]
    for key in enc.params:
        if key not in names:
            raise ConfigError(f"unknown key '{key}' in encoder {enc.name} params{_did_you_mean(key, names)} "
                              f"(allowed: {', '.join(names)})")


def _check_device(device: str) -> None:
    """A CUDA device this process can see (for executors that run cells here)."""
    import torch

    from bench.device import resolve_device

    try:
        dev = resolve_device(device)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device} asked for, but torch sees {torch.cuda.device_count()} CUDA "
                          f"device(s): use cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def _precision_warnings(matrix: Matrix) -> list[str]:
    """bf16 where this device only emulates it: valid, but several times slower than fp32 and
    slower than any estimate measured on hardware that has it, so the user hears it first."""
    from bench.device import native_bf16, resolve_device

    dev = resolve_device(matrix.device)
    if matrix.precision != "bf16" or native_bf16(dev):
        return []
    what, hardware = ("CPU", "AVX-512 (AVX512-BF16 or AMX)") if dev.type == "cpu" else ("GPU", "an Ampere or later GPU")
    return [f"precision bf16 on {dev}: this {what} has no bf16 kernels, so bf16 is emulated "
            f"(about 9x slower than fp32 on a CPU without AVX-512) and the matrix's estimate does not "
            f"hold: run where there is {hardware}, or pass --precision fp32 (a different result)"]


def check_data_content(matrix: Matrix, spec: str, data: Any) -> None:
    """What only the loaded data can tell: every ``class:<c>`` exists, and every (scenario,
    seed) split can be drawn with the matrix's data sizes (the runner's own ``make_split``)."""
    from bench.splits import make_split

    _check_classes(matrix, spec, data.num_classes)
    train_y, test_y = data.train_y.numpy(), data.test_y.numpy()
    d = matrix.data
    for sc in matrix.scenarios:
        scenario = parse_scenario(sc)
        for seed in matrix.seeds:
            try:
                make_split(train_y, test_y, scenario, seed, d.n_val, d.n_train, d.n_test)
            except ValueError as e:
                raise ConfigError(f"{spec}, scenario {sc}, seed {seed}: {e} "
                                  f"(data.n_val / data.n_train must leave members)") from None


def _check_classes(matrix: Matrix, spec: str, num_classes: int) -> None:
    """``class:<c>`` against a class count known without loading (a loader's ``shape``)."""
    for sc in matrix.scenarios:
        scenario = parse_scenario(sc)
        if scenario.kind == "class" and not 0 <= scenario.cls < num_classes:
            raise ConfigError(f"scenario '{sc}': {spec} has {num_classes} classes, numbered 0 to "
                              f"{num_classes - 1}: use class:<c> with 0 <= c <= {num_classes - 1}")


def validate(matrix: Matrix, data_root: Path, check_data: bool = True, download: bool = False,
             executor: str = "local", cache: Path | None = None) -> list[str]:
    """Raise :class:`ConfigError` on the first problem; return warnings (data absent when not checked).

    Cheap checks first (names, types, ranges), the data last: with ``check_data`` each data set
    present on disk is loaded here (memoised for the run: bench.data.load_dataset), so a corrupt
    image, a class the data set lacks or a split its sizes cannot draw is refused before any work.
    ``executor``: a CUDA device is checked here only for the local executor (others run cells on
    other machines). ``cache``: the model cache folder, where decoded images are kept (bench.data).
    Method parameters come back coerced to their declared types."""
    from bench.dataspec import DataUnavailableError, parse_dataset

    warnings: list[str] = []
    # names first: the registries read them from source, so a misspelt one imports nothing
    for reg, names in ((registry.datasets, [parse_dataset(ds)[0] for ds in matrix.datasets]),
                       (registry.encoders, [e.name for e in matrix.encoders]),
                       (registry.backbones, [e.backbone for e in matrix.encoders]),
                       (registry.methods, [m.name for m in matrix.methods]), (registry.auditors, matrix.auditors)):
        for name in names:
            _check_name(reg, name)
    for sc in matrix.scenarios:
        try:
            parse_scenario(sc)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    for enc in matrix.encoders:
        _build(TrainBudget, {**dataclasses.asdict(matrix.train), **enc.train}, f"encoder {enc.name} train")
    if matrix.precision not in {"fp32", "bf16"}:
        raise ConfigError(f"precision '{matrix.precision}' unknown: use fp32 or bf16")
    if matrix.device != "auto" and not matrix.device.startswith(("cpu", "cuda")):
        raise ConfigError(f"device '{matrix.device}' unknown: use auto, cpu or cuda[:N]")
    if not any(m.name == "retrain" for m in matrix.methods):
        raise ConfigError("every matrix must list 'retrain' among its methods: it is the reference")
    # then what needs the components' code (torch): every module the matrix uses is imported
    # here, so one that fails to import is refused before any work (registry.BrokenComponentError)
    for enc in matrix.encoders:
        registry.backbones.get(enc.backbone)
    for name in matrix.auditors:
        registry.auditors.get(name)
    from bench.data import check_dataset, load_dataset

    for enc in matrix.encoders:
        _check_encoder_params(enc)
    checked = []
    for spec in matrix.methods:
        try:
            values = hparams.check(registry.methods.get(spec.name), spec.kwargs, f"method {spec.name}")
        except hparams.HParamError as e:
            raise ConfigError(str(e)) from None
        checked.append(MethodSpec(spec.name, tuple(sorted(values.items()))))
    matrix.methods = checked
    if executor == "local":  # a dry run only lists the cells: there, a missing GPU is a warning
        try:
            _check_device(matrix.device)
        except ConfigError as e:
            if check_data:
                raise
            warnings.append(str(e))
        else:
            warnings += _precision_warnings(matrix)
    for ds in matrix.datasets:
        problem = check_dataset(ds, data_root, download)
        if problem and check_data:
            raise ConfigError(problem)
        if problem:
            warnings.append(problem)
            continue
        if check_data and check_dataset(ds, data_root, False) is None:  # on disk: decode it once now
            try:
                data = load_dataset(ds, data_root, reload=True, cache=cache)
            except DataUnavailableError as e:
                raise ConfigError(str(e)) from None
            except Exception as e:  # a loader's own failure, in one line
                first = (str(e).strip().splitlines() or [""])[0]
                raise ConfigError(f"dataset {ds} could not be loaded ({type(e).__name__}: {first})") from None
            check_data_content(matrix, ds, data)
        else:  # absent (a dry run) or still to download: what its declared shape tells
            shape = getattr(registry.datasets.get(parse_dataset(ds)[0]), "shape", None)
            if shape:
                _check_classes(matrix, ds, int(shape[3]))
    return warnings
