"""The one interface every method and auditor uses to talk to an encoder.

An encoder owns its backbone f, its head g, its augmentation and its training
objective. Methods never branch on the encoder's name: they use ``objective``
(per-sample losses, reduction none), ``pair_loss`` on views they build with
``augment``, ``embed`` / ``target_embed`` for normalised head outputs and
``features`` for the backbone; the runner calls ``on_step_end`` after every
optimiser step (momentum updates). What an encoder can do beyond that is
declared in ``capabilities`` so methods can declare what they require:

- ``views``: ``pair_loss(v1, v2)`` is a two-image-view SSL objective
- ``labels``: the objective uses class labels (supervised, CLIP captions)
- ``logits``: ``logits(v)`` gives class logits (a classifier head)
- ``text``: image-text model (CLIP)
- ``momentum``: has a momentum target network (``target_embed`` differs from ``embed``)
- ``one_view``: the objective takes one image view (supervised CE, CLIP's image-text
  loss), so ``objective(batch, augment=False)`` evaluates it on the prepared,
  un-augmented image, as reference code that trains without augmentation does
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bench.augment import AugmentConfig, BatchAugment
from bench.data import Batch, ImageData
from bench.registry import backbones, encoders


@dataclass(frozen=True)
class DataInfo:
    """What an encoder may know about its data: shapes, classes and normalisation."""

    num_classes: int
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, data: ImageData) -> DataInfo:
        mean, std = data.channel_stats()
        return cls(data.num_classes, tuple(data.classes), data.image_shape, tuple(mean), tuple(std))


class Encoder(nn.Module):
    capabilities: ClassVar[frozenset[str]] = frozenset({"views"})
    augment_preset: ClassVar[str] = "simclr"
    version: ClassVar[int] = 1  # bump when a change alters trained weights: cached models retrain

    def __init__(self, backbone: nn.Module, info: DataInfo, image_size: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.info = info
        self.image_size = image_size or info.image_shape[1]
        cfg = getattr(AugmentConfig, self.augment_preset)(self.image_size)
        self.augmenter = BatchAugment(cfg, list(info.mean), list(info.std))

    @property
    def feat_dim(self) -> int:
        return int(self.backbone.out_dim)

    # --- views ---------------------------------------------------------------
    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One random view per image of a uint8 batch (per-sample parameters); always fp32,
        outside any autocast region, so views are identical whatever the training precision."""
        with torch.autocast(x.device.type, enabled=False):
            return self.augmenter(x, generator)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The un-augmented, normalised input for feature extraction (fp32, like ``augment``)."""
        with torch.autocast(x.device.type, enabled=False):
            return self.augmenter.prepare(x)

    def view(self, x: torch.Tensor, generator: torch.Generator | None = None, augment: bool = True) -> torch.Tensor:
        """One view per image of a uint8 batch: a random augmentation, or the prepared image
        (``augment=False``, deterministic: ``generator`` is not consumed)."""
        return self.augment(x, generator) if augment else self.prepare(x)

    # --- representations -----------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features f(x) of a uint8 batch (no augmentation)."""
        return self.backbone(self.prepare(x))

    def project(self, f: torch.Tensor) -> torch.Tensor:
        """Head g on backbone features (unnormalised): ``self.head`` unless overridden."""
        return self.head(f)

    def project_pair(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head outputs of two view batches from one backbone pass (one 2B BN batch, as in
        lightly's SimCLR / Barlow Twins / VICReg examples)."""
        z = self.project(self.backbone(torch.cat([v1, v2])))
        return z[: v1.shape[0]], z[v1.shape[0] :]

    def embed(self, v: torch.Tensor) -> torch.Tensor:
        """Normalised head output z = g(f(v)) of an already augmented view."""
        return normalize(self.project(self.backbone(v)))

    def class_scores(self, x: torch.Tensor) -> torch.Tensor | None:
        """Class scores [B, C] the model itself gives a uint8 batch (classifier logits,
        CLIP zero-shot similarities); None for label-free encoders."""
        return None

    def target_embed(self, v: torch.Tensor) -> torch.Tensor:
        """z' of the target/momentum network; the online network where there is none."""
        return self.embed(v)

    # --- objective -----------------------------------------------------------
    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The training objective on given views, one loss per sample (shape [B])."""
        raise NotImplementedError

    def objective(
        self, batch: Batch, generator: torch.Generator | None = None, augment: bool = True
    ) -> torch.Tensor:
        """Per-sample training loss on fresh views; its mean is the framework's batch loss.

        ``augment=False`` asks for the loss on the un-augmented images. Encoders with the
        ``one_view`` capability honour it; a two-view objective (this default, used by
        SimCLR, MoCo, BYOL, Barlow Twins, VICReg) always augments: it is defined by the
        agreement of two *different* views; with two identical prepared images its
        invariance term is trivial (SimCLR's positive cosine is 1, VICReg's invariance 0),
        so it would be another loss, not the encoder's objective without augmentation."""
        return self.pair_loss(self.augment(batch.x, generator), self.augment(batch.x, generator), batch)

    def on_step_end(self) -> None:
        """Called by the runner after each optimiser step (momentum updates)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def normalize(z: torch.Tensor) -> torch.Tensor:
    return F.normalize(z.float(), dim=-1)


def full_precision(t: torch.Tensor):
    """Autocast off on ``t``'s device, so a loss on ``.float()`` inputs really runs in float32
    (under bf16 autocast matmuls and einsums would drop back to bf16)."""
    return torch.autocast(t.device.type, enabled=False)


def build_encoder(name: str, backbone: str, info: DataInfo, params: dict | None = None) -> Encoder:
    """Instantiate a registered encoder on a registered backbone."""
    cls = encoders.get(name)
    c, h, _ = info.image_shape
    size = (params or {}).get("image_size") or h
    net = backbones.get(backbone)(in_channels=c, image_size=size)
    return cls(net, info, **(params or {}))
