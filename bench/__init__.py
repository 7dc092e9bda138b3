"""unlearn-bench: does a machine-unlearning method really remove data from an encoder?

The public surface that methods, auditors and plugins import. Nothing else in
``bench`` is a stable API. Each name is imported on first use (PEP 562), so
``python -m bench --help`` and configuration errors answer without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.audit import AuditContext, Auditor, MetricSpec, register_auditor
    from bench.context import UnlearnContext
    from bench.data import Batch, DataView, ImageData
    from bench.encoders.base import DataInfo, Encoder
    from bench.features import ModelFeatures
    from bench.hparams import categorical, hp, integer, log_uniform, uniform
    from bench.method import Method, register_method
    from bench.registry import register_backbone, register_dataset, register_encoder

_WHERE = {  # public name -> the module that defines it
    "AuditContext": "bench.audit",
    "Auditor": "bench.audit",
    "MetricSpec": "bench.audit",
    "register_auditor": "bench.audit",
    "UnlearnContext": "bench.context",
    "Batch": "bench.data",
    "DataView": "bench.data",
    "ImageData": "bench.data",
    "DataInfo": "bench.encoders.base",
    "Encoder": "bench.encoders.base",
    "ModelFeatures": "bench.features",
    "categorical": "bench.hparams",
    "hp": "bench.hparams",
    "integer": "bench.hparams",
    "log_uniform": "bench.hparams",
    "uniform": "bench.hparams",
    "Method": "bench.method",
    "register_method": "bench.method",
    "register_backbone": "bench.registry",
    "register_dataset": "bench.registry",
    "register_encoder": "bench.registry",
}

__all__ = [
    "AuditContext",
    "Auditor",
    "Batch",
    "DataInfo",
    "DataView",
    "Encoder",
    "ImageData",
    "Method",
    "MetricSpec",
    "ModelFeatures",
    "UnlearnContext",
    "categorical",
    "hp",
    "integer",
    "log_uniform",
    "uniform",
    "register_auditor",
    "register_backbone",
    "register_dataset",
    "register_encoder",
    "register_method",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:  # also how `from bench import registry` falls through to the submodule
        raise AttributeError(f"module 'bench' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
