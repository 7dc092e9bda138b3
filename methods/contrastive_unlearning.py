"""Contrastive unlearning (CU; Lee et al. 2024, code read in Hongkyu-Lee/Contrastive-Unlearning).

For a forget batch (x_u, y_u) of size B and a retain batch truncated to B, with
s_ij = z_i^u . z_j^r / tau minus the detached row max:

    L_UL = -(1/B) sum_i (1/|P(i)|) sum_{j in P(i)} [ s_ij - log sum_{k in N(i)} exp(s_ik) ]
    L    = lambda_UL * L_UL + lambda_CE * CE(logits(x_r), y_r)

Supervised (encoders with ``logits``): P(i) = retain samples of another class (pulled
toward), N(i) = retain samples of the same class (pushed away); the log term is
dropped where N(i) is empty (class unlearning). Label-free encoders (this benchmark's
self-supervised adaptation): P(i) = all retain samples, N(i) = the other augmented views of x_i itself,
and the CE term becomes the encoder's own objective on the retain batch. The variant is
chosen by capability, never by encoder name. Each forget batch is used for
``retain_batches`` (4) steps, each with a fresh retain batch, as in the paper's code.

Stop rules (checked after every epoch, as the code does), where the model gives class
scores and labels are visible: sample unlearning stops once accuracy on D_f <= the
accuracy a method may measure on unseen data, which is D_v here (a method never sees
D_t); class unlearning stops once the forgotten class's accuracy on D_v <= 1/C.

Against the code read (``core/trainer/unlearn/unlearn.py`` @ 33ce9a6):

- Views: the supervised variant uses the un-augmented images (``prepare``), as the code,
  whose transforms have the augmentations commented out; so a forget batch is the same
  input at each of its 4 steps. The label-free variant augments: its N(i) *are* views of
  x_i, and its retain term is the encoder's own (two-view) objective; each step draws
  fresh views.
- Embedding: z = ``embed(v)``, for the supervised encoder the normalised backbone feature,
  i.e. the representation its classifier reads. The code's model puts a 128-d MLP head
  under its classifier (``logit = fc(normalize(head(f)))``); our supervised encoder has
  no projection head, and one that the cross-entropy never trained would make L_UL move
  a random projection.
- Retain logits come from a second forward of the retain rows (the code takes them from
  its one forward of the 2B batch); D_v replaces D_t in the stop rule; no weight decay
  (the code declares 1e-3 but never passes it to its optimiser).
- Reference bugs avoided: the code's log term is broadcast over all B columns (weight
  B/|P(i)| instead of 1); an empty P(i) divides by zero; an empty N(i) in sample mode
  gives log 0 = -inf. Its loaders are not shuffled and ``iter(retain)`` is re-created
  for every forget batch, so only the first 4B retain samples are ever used; here the
  retain stream is shuffled and continues across forget batches, so every retain sample
  takes part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench import Batch, DataView, Method, UnlearnContext, hp, integer, log_uniform, register_method

MODES = ("auto", "sample", "class")
OPTIMIZERS = ("sgd", "adam", "adamw")


def contrastive_unlearning_loss(
    z_anchor: torch.Tensor, z_cols: torch.Tensor, pull: torch.Tensor, push: torch.Tensor, tau: float
) -> torch.Tensor:
    """L_UL for anchors [B, D] against columns [M, D]; ``pull`` = P(i), ``push`` = N(i) as
    boolean masks [B, M]. Logits are stabilised by the detached max over P(i) and N(i);
    rows with an empty P(i) have nothing to pull toward and are left out of the mean."""
    s = z_anchor @ z_cols.T / tau
    used = pull | push
    row_max = s.masked_fill(~used, float("-inf")).max(dim=1, keepdim=True).values
    s = s - row_max.detach()
    n_pull = pull.sum(1)
    pull_mean = (s * pull).sum(1) / n_pull.clamp_min(1)
    log_push = torch.logsumexp(s.masked_fill(~push, float("-inf")), dim=1)
    log_push = torch.where(push.any(1), log_push, torch.zeros_like(log_push))  # N(i) empty
    per_anchor = -(pull_mean - log_push)
    has_pull = n_pull > 0
    if not bool(has_pull.any()):
        return (s * 0).sum()
    return per_anchor[has_pull].mean()


@torch.no_grad()
def class_accuracy(ctx: UnlearnContext, view: DataView, cls: int | None = None) -> float | None:
    """The model's own top-1 accuracy on ``view`` (only class ``cls`` if given); None if
    the encoder has no class scores or there is nothing to score."""
    rows = view if cls is None else view.subset(torch.nonzero(view.y == cls).flatten())
    if len(rows) == 0:
        return None
    ctx.encoder.eval()
    correct = 0
    try:
        bs = ctx.budget.batch_size
        for start in range(0, len(rows), bs):
            x, y = rows.x[start : start + bs], rows.y[start : start + bs]
            with ctx.autocast():
                scores = ctx.encoder.class_scores(x)
            if scores is None:
                return None
            correct += int((scores.argmax(1) == y).sum())
    finally:
        ctx.encoder.train()
    return correct / len(rows)


@register_method(
    "contrastive_unlearning",
    needs=("forget", "retain", "val"),
    source="Lee et al. 2024 (CU), Hongkyu-Lee/Contrastive-Unlearning",
    description="CU: push D_f from same-class (or own-view) embeddings, pull toward D_r",
)
@dataclass
class ContrastiveUnlearning(Method):
    """Defaults from the paper's code: tau 0.7, lambda_UL 3, lambda_CE 1, SGD lr 1e-3
    momentum 0.9 (no weight decay reaches its optimiser), 4 retain batches per forget
    batch, at most 3 epochs over D_f (its ``unlearn_epoch``) before the stop rule.

    Search space (ours: neither paper nor code publishes a sweep): epochs 1-30 on a log
    scale (the code's README runs 1 epoch for class and 30 for random-sample unlearning;
    the stop rule usually ends earlier), lr log-uniform 1e-4-1e-2 and lambda_UL
    log-uniform 0.3-30 (a decade either side of the defaults). tau and lambda_CE stay at
    the code's values."""

    epochs: int = hp(3, ge=1, tune=integer(1, 30, log=True))
    lr: float = hp(1e-3, gt=0, tune=log_uniform(1e-4, 1e-2))
    tau: float = hp(0.7, gt=0)
    lambda_ul: float = hp(3.0, ge=0, tune=log_uniform(0.3, 30.0))
    lambda_ce: float = hp(1.0, ge=0)
    retain_batches: int = hp(4, ge=1, doc="steps (each with a fresh retain batch) per forget batch")
    other_views: int = hp(1, ge=1, doc="label-free variant: views of x_i forming N(i)")
    mode: str = hp("auto", choices=MODES, doc="auto: class if D_f is exactly one class absent from D_r")
    stop_rule: bool = hp(True)
    optimizer: str = hp("sgd", choices=OPTIMIZERS)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"contrastive_unlearning mode must be in {MODES}, got '{self.mode}'")

    # --- the two variants ------------------------------------------------------------
    def supervised_loss(self, ctx: UnlearnContext, fb: Batch, rb: Batch) -> torch.Tensor:
        b = len(fb)
        v = ctx.encoder.prepare(torch.cat([fb.x, rb.x]))  # un-augmented, as the code
        with ctx.autocast():
            z = ctx.encoder.embed(v)  # forget and retain rows share one BatchNorm batch, as the code's
            logits = ctx.encoder.logits(v[b:]).float()  # a second forward, of the retain rows only
        same = fb.y[:, None] == rb.y[None, :]
        ul = contrastive_unlearning_loss(z[:b], z[b:], ~same, same, self.tau)
        return self.lambda_ul * ul + self.lambda_ce * F.cross_entropy(logits, rb.y)

    def self_supervised_loss(self, ctx: UnlearnContext, fb: Batch, rb: Batch) -> torch.Tensor:
        b, k = len(fb), self.other_views
        v = ctx.augment(torch.cat([fb.x.repeat(k + 1, 1, 1, 1), rb.x]))
        with ctx.autocast():
            z = ctx.encoder.embed(v)
        z_anchor, z_views, z_retain = z[:b], z[b : (k + 1) * b], z[(k + 1) * b :]
        cols = torch.cat([z_retain, z_views])
        pull = torch.zeros(b, len(cols), dtype=torch.bool, device=z.device)
        pull[:, : len(z_retain)] = True
        push = torch.zeros_like(pull)
        own = torch.arange(b, device=z.device)
        for j in range(k):  # column of view j of sample i
            push[own, len(z_retain) + j * b + own] = True
        ul = contrastive_unlearning_loss(z_anchor, cols, pull, push, self.tau)
        return self.lambda_ul * ul + self.lambda_ce * ctx.objective(rb).mean()

    # --- stop rule -------------------------------------------------------------------
    def forgotten_class(self, ctx: UnlearnContext) -> int | None:
        """The class being unlearned in class mode (None in sample mode)."""
        y_f = ctx.forget.y
        classes = torch.unique(y_f)
        if self.mode == "sample" or len(classes) != 1:
            return None
        c = int(classes[0])
        if self.mode == "class" or not bool((ctx.retain.y == c).any()):
            return c
        return None

    def should_stop(self, ctx: UnlearnContext, cls: int | None) -> bool:
        if cls is not None:
            acc = class_accuracy(ctx, ctx.val, cls)
            ctx.info.setdefault("val_class_acc", []).append(acc)
            return acc is not None and acc <= 1.0 / ctx.num_classes
        acc_f, acc_v = class_accuracy(ctx, ctx.forget), class_accuracy(ctx, ctx.val)
        ctx.info.setdefault("forget_acc", []).append(acc_f)
        ctx.info.setdefault("val_acc", []).append(acc_v)
        return acc_f is not None and acc_v is not None and acc_f <= acc_v

    def unlearn(self, ctx: UnlearnContext) -> None:
        supervised = "logits" in ctx.encoder.capabilities
        loss_fn = self.supervised_loss if supervised else self.self_supervised_loss
        labelled = bool((ctx.forget.y >= 0).all()) and bool((ctx.val.y >= 0).all())
        use_stop = self.stop_rule and labelled
        cls = self.forgotten_class(ctx) if labelled else None
        ctx.info.update(variant="supervised" if supervised else "self-supervised",
                        mode="class" if cls is not None else "sample")
        opt = ctx.optimizer(self.optimizer, lr=self.lr)
        retain = ctx.cycle(ctx.retain)
        for epoch in range(self.epochs):
            for fb in ctx.batches(ctx.forget, epochs=1):
                for _ in range(self.retain_batches):
                    rb = next(retain)
                    rb = Batch(rb.x[: len(fb)], rb.y[: len(fb)], rb.idx[: len(fb)])
                    ctx.step(opt, loss_fn(ctx, fb, rb))
            if ctx.out_of_time:
                break
            if use_stop and self.should_stop(ctx, cls):
                ctx.info["stopped"] = f"stop rule after epoch {epoch + 1}"
                break
