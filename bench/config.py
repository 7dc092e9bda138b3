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
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bench import registry
from bench.splits import parse_scenario


class ConfigError(ValueError):
    """A configuration problem; the message is one line that says how to fix it."""


@dataclass(frozen=True)
class TrainBudget:
    """The recipe of the original model (and of retrain, which must match it)."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | sgd | adamw
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | constant


@dataclass(frozen=True)
class DataOptions:
    n_val: int = 500  # D_v: never trained on (MUC: 5,000 of CIFAR's 50,000)
    n_train: int | None = None  # members (D \ D_v); None = all
    n_test: int | None = None  # D_t size; None = the whole test set


@dataclass(frozen=True)
class AuditOptions:
    views: int = 30  # augmentations per image for alignment / EMIA scores
    max_members: int = 2000  # D_r samples used as members by the attacks
    references: int = 1  # independent-seed retrains for the calibrated attack
    batch_size: int = 512


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Cell:
    """One unit of work: encoder x dataset x scenario x seed, with everything that determines it."""

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
            "precision": self.precision,
        }

    def method_hash(self, method: MethodSpec) -> str:
        """Config identity of one (cell, method) result: resume skips a finished match."""
        ident = self.identity() | {
            "audit": dataclasses.asdict(self.audit),
            "auditors": sorted(self.auditors),
            "method": method.name,
            "method_params": method.kwargs,
        }
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
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0})
    description: str = ""
    estimate: dict[str, Any] = field(default_factory=dict)
    executors: dict[str, dict[str, Any]] = field(default_factory=dict)  # executor -> default options
    source: str = ""

    def cells(self, data_root: str = "") -> list[Cell]:
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
                            )
                        )
        return out


# --------------------------------------------------------------------------- loading


def shipped_matrices() -> dict[str, Path]:
    folder = resources.files("bench") / "matrices"
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(
                f"unknown key '{key}' in {where}{_did_you_mean(key, names)} (allowed: {', '.join(names)})"
            )
    return cls(**raw)


def _method_spec(item: Any) -> MethodSpec:
    if isinstance(item, str):
        return MethodSpec(item)
    if isinstance(item, dict) and len(item) == 1:
        (name, params), = item.items()
        return MethodSpec(str(name), tuple(sorted((params or {}).items())))
    raise ConfigError(f"bad method entry {item!r}: use a name or {{name: {{param: value}}}}")


def _encoder_spec(item: Any) -> EncoderSpec:
    if isinstance(item, str):
        return EncoderSpec(item)
    if isinstance(item, dict):
        return _build(EncoderSpec, item, "encoders")
    raise ConfigError(f"bad encoder entry {item!r}: use a name or {{name: simclr, backbone: convnet-s}}")


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
        raise ConfigError(f"matrix {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"matrix {path} must be a YAML mapping")
    return matrix_from_dict(raw, default_name=path.stem, source=str(path))


def matrix_from_dict(raw: dict[str, Any], default_name: str = "matrix", source: str = "") -> Matrix:
    raw = dict(raw)
    required = ["datasets", "encoders", "scenarios", "seeds", "methods", "auditors"]
    for key in required:
        if not raw.get(key):
            raise ConfigError(f"matrix '{raw.get('name', default_name)}' needs a non-empty '{key}' list")
    known = [f.name for f in dataclasses.fields(Matrix)]
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown matrix key '{key}'{_did_you_mean(key, known)}")
    return Matrix(
        name=str(raw.get("name", default_name)),
        datasets=[str(d) for d in raw["datasets"]],
        encoders=[_encoder_spec(e) for e in raw["encoders"]],
        scenarios=[str(s) for s in raw["scenarios"]],
        seeds=[int(s) for s in raw["seeds"]],
        methods=[_method_spec(m) for m in raw["methods"]],
        auditors=[str(a) for a in raw["auditors"]],
        train=_build(TrainBudget, raw.get("train") or {}, "train"),
        data=_build(DataOptions, raw.get("data") or {}, "data"),
        audit=_build(AuditOptions, raw.get("audit") or {}, "audit"),
        device=str(raw.get("device", "auto")),
        precision=str(raw.get("precision", "fp32")),
        time_limit_s=float(raw.get("time_limit_s", 3600.0)),
        resources=dict(raw.get("resources") or {"num_cpus": 1, "num_gpus": 0}),
        description=str(raw.get("description", "")),
        estimate=dict(raw.get("estimate") or {}),
        executors={str(k): dict(v or {}) for k, v in (raw.get("executors") or {}).items()},
        source=source,
    )


# --------------------------------------------------------------------------- validation


def _check_name(reg: registry.Registry, name: str) -> None:
    if name not in reg:
        raise ConfigError(reg.unknown_message(name))


def validate(matrix: Matrix, data_root: Path, check_data: bool = True, download: bool = False) -> list[str]:
    """Raise :class:`ConfigError` on the first problem; return warnings (data absent when not checked)."""
    from bench.data import check_dataset, parse_dataset

    warnings: list[str] = []
    for ds in matrix.datasets:
        _check_name(registry.datasets, parse_dataset(ds)[0])
        problem = check_dataset(ds, data_root, download)
        if problem and check_data:
            raise ConfigError(problem)
        if problem:
            warnings.append(problem)
    for enc in matrix.encoders:
        _check_name(registry.encoders, enc.name)
        _check_name(registry.backbones, enc.backbone)
        _build(TrainBudget, {**dataclasses.asdict(matrix.train), **enc.train}, f"encoder {enc.name} train")
    for sc in matrix.scenarios:
        try:
            parse_scenario(sc)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    for spec in matrix.methods:
        _check_name(registry.methods, spec.name)
        cls = registry.methods.get(spec.name)
        _build(cls, spec.kwargs, f"method {spec.name}")
    for name in matrix.auditors:
        _check_name(registry.auditors, name)
    t = matrix.train
    if t.epochs < 1 or t.batch_size < 2 or t.lr <= 0:
        raise ConfigError("train needs epochs >= 1, batch_size >= 2 and lr > 0")
    if t.optimizer not in {"adam", "adamw", "sgd"}:
        raise ConfigError(f"train.optimizer '{t.optimizer}' unknown: use adam, adamw or sgd")
    if t.schedule not in {"cosine", "constant"}:
        raise ConfigError(f"train.schedule '{t.schedule}' unknown: use cosine or constant")
    if matrix.precision not in {"fp32", "bf16"}:
        raise ConfigError(f"precision '{matrix.precision}' unknown: use fp32 or bf16")
    if matrix.device != "auto" and not matrix.device.startswith(("cpu", "cuda")):
        raise ConfigError(f"device '{matrix.device}' unknown: use auto, cpu or cuda[:N]")
    if matrix.data.n_val < 1:
        raise ConfigError("data.n_val must be >= 1: the validation split D_v is part of the protocol")
    if matrix.audit.views < 2 or matrix.audit.references < 1:
        raise ConfigError("audit needs views >= 2 and references >= 1")
    if not any(m.name == "retrain" for m in matrix.methods):
        raise ConfigError("every matrix must list 'retrain' among its methods: it is the reference")
    return warnings
