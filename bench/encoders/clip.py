"""CLIP (Radford et al. 2021) through open_clip: image-text contrastive training on captions.

Class-labelled image sets have no captions, so each image gets a prompt-template caption of
its class ("a photo of a {c}.", ...; the template is drawn per sample from the run's
generator); an optional CSV gives real captions. open_clip's ``SimpleTokenizer`` ships its
BPE vocabulary, so tokenisation is offline. open_clip is imported lazily: listing the
registry must stay cheap.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.augment import AugmentConfig, BatchAugment
from bench.data import Batch
from bench.encoders.base import DataInfo, Encoder, full_precision, normalize
from bench.registry import register_encoder

TINY = "unlearn-bench-tiny"
# CPU scale: a 2-layer ViT (patch 4, width 128) and a 2-layer text transformer (width 64,
# 16 tokens), 64-d joint space. The vocabulary is CLIP's BPE (49,408 tokens), which
# dominates the parameter count (3.2M of ~3.7M) but costs only an embedding lookup.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "head_width": 32, "patch_size": 4},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
# A subset of CLIP's ImageNet prompt templates.
TEMPLATES = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a low resolution photo of a {}.",
    "an image of a {}.",
)


def register_tiny_config() -> str:
    """Register :data:`TINY_CONFIG` with open_clip through its public ``add_model_config``
    (which takes a JSON file; the file can go once open_clip has read it)."""
    import open_clip

    if TINY not in open_clip.list_models():
        with tempfile.TemporaryDirectory(prefix="unlearn-bench-openclip-") as d:
            path = Path(d) / f"{TINY}.json"
            path.write_text(json.dumps(TINY_CONFIG))
            open_clip.add_model_config(path)
    return TINY


def read_captions(path: str | os.PathLike) -> dict[int, str]:
    """A CSV with columns ``index,caption`` (index = row of the training set)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.DictReader(f)
        if rows.fieldnames is None or not {"index", "caption"} <= set(rows.fieldnames):
            raise ValueError(f"{path}: expected a CSV with header 'index,caption'")
        return {int(r["index"]): r["caption"] for r in rows}


def _check_offline(model: str, pretrained: str | None) -> None:
    """Fail fast instead of letting open_clip start a download."""
    if model.startswith("hf-hub:"):
        raise ValueError(
            f"clip model '{model}' would be downloaded from the Hugging Face hub; download it "
            "yourself and pass model='local-dir:/path/to/it'"
        )
    if pretrained and not os.path.isfile(pretrained):
        raise ValueError(
            f"clip pretrained='{pretrained}' is not a local file. unlearn-bench never downloads "
            "weights: fetch the checkpoint (e.g. open_clip's tag via its hub URL) and pass its path"
        )


@register_encoder("clip", framework="open_clip", description="CLIP: image-text InfoNCE, template captions")
class CLIP(Encoder):
    """Image tower, text tower and temperature of an open_clip model.

    ``vision="backbone"`` (default): the image tower is the cell's registered backbone
    followed by a bias-free linear projection to the joint space (as open_clip's timm
    towers), so CLIP compares with the other encoders on the same backbone and
    ``features`` are that backbone's. ``vision="open_clip"``: the open_clip model's own
    image tower (the tiny ViT, or a named model's, needed for pretrained checkpoints);
    ``features`` are its pooled output before ``proj`` where the tower has one (ViTs),
    else the image embedding. The text tower, token embedding and ``logit_scale`` always
    come from open_clip (``model``: the tiny config, any ``open_clip.list_models()``
    name, or ``local-dir:``; ``pretrained``: a local checkpoint file only).

    Per-sample loss: the symmetric InfoNCE of pair i within its batch,
    ``0.5 * (CE(logits_i, i) + CE(logits^T_i, i))`` with ``logits = exp(t) img @ txt^T``;
    its batch mean is open_clip's ``ClipLoss``. Captions of two samples can coincide
    (same class and template): they are then each other's false negatives, as in any
    CLIP trained on class prompts. ``logit_scale`` is clamped to ln 100 after each step,
    as open_clip's training loop does. Augmentation: open_clip's training crop
    (RandomResizedCrop scale 0.9-1, no flip or colour). ``pair_loss(v1, v2, batch)``
    uses ``v1`` only (v2 is unused: CLIP's pair is image-text), with templates drawn
    from torch's global RNG; CSV captions are used in training mode only (in eval mode,
    e.g. audits of test images whose indices are not training rows, templates are used).
    """

    capabilities = frozenset({"labels", "text", "one_view"})

    def __init__(
        self,
        backbone: nn.Module,
        info: DataInfo,
        model: str = TINY,
        pretrained: str | None = None,
        vision: str = "backbone",
        templates: list[str] | tuple[str, ...] | None = None,
        captions: str | None = None,
        image_size: int | None = None,
    ):
        import open_clip

        if vision not in ("backbone", "open_clip"):
            raise ValueError(f"clip vision must be 'backbone' or 'open_clip', got '{vision}'")
        _check_offline(model, pretrained)
        if model == TINY:
            register_tiny_config()
        if vision == "open_clip" and image_size is None and model != TINY:
            cfg = open_clip.get_model_config(model) or {}
            image_size = cfg.get("vision_cfg", {}).get("image_size")
        super().__init__(backbone, info, image_size)
        force_size = self.image_size if model == TINY or vision == "backbone" else None
        # open_clip logs every lookup at INFO, and "initialized randomly" (the intent here)
        # as a WARNING, on the root logger.
        with _quiet_logging(logging.WARNING if pretrained is None else logging.INFO):
            clip = open_clip.create_model(
                model,
                pretrained=pretrained,
                force_image_size=force_size,
                pretrained_image=False,
                pretrained_text=False,
            )
        visual = clip.visual
        clip.visual = nn.Identity()  # the image tower lives in self.backbone / self.proj
        self.clip = clip
        with _quiet_logging(logging.INFO):
            self.tokenizer = open_clip.get_tokenizer(model)
        embed_dim = int(open_clip.get_model_config(model)["embed_dim"])
        if vision == "backbone":
            self.proj: nn.Module = nn.Linear(self.feat_dim, embed_dim, bias=False)
        else:
            self.backbone, self.proj = _split_tower(visual, embed_dim)
        mean, std = list(info.mean), list(info.std)
        if pretrained:  # pretrained towers expect their own normalisation
            pp = open_clip.get_model_preprocess_cfg(_Holder(visual))
            mean, std = list(pp["mean"]), list(pp["std"])
            if len(mean) != info.image_shape[0]:
                raise ValueError(f"{model} expects {len(mean)}-channel images")
        crop = AugmentConfig(self.image_size, crop_scale=(0.9, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)
        self.augmenter = BatchAugment(crop, mean, std)

        self.templates = tuple(templates or TEMPLATES)
        prompts = [t.format(c) for t in self.templates for c in info.classes]
        tok = self.tokenizer(prompts).view(len(self.templates), len(info.classes), -1)
        self.register_buffer("class_tokens", tok, persistent=False)  # [T, C, L]
        self.caption_rows: dict[int, int] = {}
        cap_tok = torch.zeros(0, tok.shape[-1], dtype=tok.dtype)
        if captions:
            table = read_captions(captions)
            self.caption_rows = {i: r for r, i in enumerate(table)}
            cap_tok = self.tokenizer(list(table.values()))
        self.register_buffer("caption_tokens", cap_tok, persistent=False)

    # --- representations -----------------------------------------------------
    def project(self, f: torch.Tensor) -> torch.Tensor:
        return self.proj(f)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings; identical captions are encoded once (exact: the text
        tower has no batch-dependent layers)."""
        uniq, inv = torch.unique(tokens, dim=0, return_inverse=True)
        return normalize(self.clip.encode_text(uniq))[inv]

    def class_text_embeddings(self) -> torch.Tensor:
        """[C, D]: per class, the renormalised mean of its template embeddings (CLIP's
        zero-shot classifier)."""
        t, c, ell = self.class_tokens.shape
        z = self.encode_text(self.class_tokens.reshape(t * c, ell)).view(t, c, -1)
        return normalize(z.mean(0))

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-shot cosine similarity of each image to each class's text embedding."""
        return self.embed(self.prepare(x)) @ self.class_text_embeddings().T

    # --- objective -----------------------------------------------------------
    def captions(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Token ids [B, L]: a random template of the sample's class, or its CSV caption."""
        b = len(batch)
        pick = torch.randint(len(self.templates), (b,), generator=generator)
        y = batch.y.to(self.class_tokens.device)
        if (y < 0).any():
            raise ValueError("clip needs class labels (or CSV captions) to build captions")
        tokens = self.class_tokens[pick.to(y.device), y]
        if self.training and self.caption_rows:
            rows = [self.caption_rows.get(int(i), -1) for i in batch.idx.tolist()]
            have = torch.tensor([r >= 0 for r in rows], device=y.device)
            if have.any():
                src = torch.tensor([max(r, 0) for r in rows], device=y.device)
                tokens = torch.where(have[:, None], self.caption_tokens[src], tokens)
        return tokens

    def image_text_loss(self, v: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Per-pair symmetric InfoNCE [B] (mean = open_clip's ClipLoss)."""
        img = self.embed(v)
        txt = self.encode_text(tokens)
        labels = torch.arange(len(img), device=img.device)
        with full_precision(img):
            logits = self.clip.logit_scale.exp().float() * img @ txt.T
            return 0.5 * (
                F.cross_entropy(logits, labels, reduction="none") + F.cross_entropy(logits.T, labels, reduction="none")
            )

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.image_text_loss(v1, self.captions(batch))

    def objective(
        self, batch: Batch, generator: torch.Generator | None = None, augment: bool = True
    ) -> torch.Tensor:
        v = self.view(batch.x, generator, augment)  # one image view: augment=False honoured
        return self.image_text_loss(v, self.captions(batch, generator))

    @torch.no_grad()
    def on_step_end(self) -> None:
        self.clip.logit_scale.clamp_(0, math.log(100))


@contextlib.contextmanager
def _quiet_logging(level: int) -> Iterator[None]:
    """Silence log records up to ``level`` for the duration of a block."""
    previous = logging.root.manager.disable
    logging.disable(max(level, previous))
    try:
        yield
    finally:
        logging.disable(previous)


class _Holder:
    """Lets ``open_clip.get_model_preprocess_cfg`` read a tower detached from its model."""

    def __init__(self, visual: nn.Module):
        self.visual = visual


class _Proj(nn.Module):
    """open_clip's ``pooled @ proj`` as a module, holding the tower's own parameter."""

    def __init__(self, proj: nn.Parameter):
        super().__init__()
        self.proj = proj

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.proj


def _split_tower(visual: nn.Module, embed_dim: int) -> tuple[nn.Module, nn.Module]:
    """(pooled features before the projection, the projection) of an open_clip image tower;
    towers without a separable ``proj`` give (the embedding, identity)."""
    proj = getattr(visual, "proj", None)
    if isinstance(proj, nn.Parameter) and proj.dim() == 2:
        visual.proj = None  # open_clip's own pruning does this (prune_intermediate_layers)
        visual.out_dim = int(proj.shape[0])
        return visual, _Proj(proj)
    visual.out_dim = embed_dim
    return visual, nn.Identity()
