"""unlearn-bench: does a machine-unlearning method really remove data from an encoder?

The public surface that methods, auditors and plugins import. Nothing else in
``bench`` is a stable API.
"""

from bench.audit import AuditContext, Auditor, MetricSpec, register_auditor
from bench.context import UnlearnContext
from bench.data import Batch, DataView, ImageData
from bench.encoders.base import DataInfo, Encoder
from bench.features import ModelFeatures
from bench.hparams import categorical, hp, integer, log_uniform, uniform
from bench.method import Method, register_method
from bench.registry import register_backbone, register_dataset, register_encoder

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
