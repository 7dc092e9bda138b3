"""Alignment calibration (AC; MUC, Wang et al., code read in EhanW/Alignment-Calibration).

Batches come from the shuffled union of D_r and D_f. Each sample yields the triad
(t1(x), x~, t3(x)): x~ = t2(x) for a retain sample and t2(x') for a forget sample,
x' a uniformly random *other* forget image. With l_i the encoder's per-sample
InfoNCE of (t1(x_i), x~_i):

    L = [sum_{B_r} l_i + alpha * sum_{B_f} l_i] / (|B_r| + alpha |B_f|)
        + beta * (|D_f| / |D|) * mean_{B_f} s(z(t1 x_i), z'(t3 x_i))

Descending the forget rows pulls each forget sample toward another forget sample
(negative alignment calibration); the beta term lowers positive-pair alignment on
D_f, the signal the encoder-level attack reads. z' is ``target_embed`` (MoCo's key
encoder, the online network elsewhere).

Row weighting: the published SimCLR code weights the 2N NT-Xent rows [view0; view1]
with ``np.repeat(mask, 2)`` (a,a,b,b), which marks the wrong rows; :func:`weight_rows`
tiles the mask (a,b,a,b), and through ``pair_loss`` (one loss per sample, rows i and
N+i already averaged) the bug cannot occur at all.

Against the code read (``algs.py``, ``main.py`` @ 8b95a75):

- Forget partner: always another image; the code draws from all of D_f, the sample
  itself included (chance 1/|D_f|).
- The beta term, as the code: z is the query of the loss forward and z' the target
  network on the *whole* t3 batch, the forget rows picked afterwards, so no forward ever
  sees a forget-only batch (BatchNorm statistics and running statistics as the code's).
  The query is recomputed on the whole batch with the model's buffers put back, so the
  loss forward alone updates the running statistics of t1, as in the code.
- SimCLR BatchNorm: one forward per view batch (B rows each), as the code; the encoder
  trains the same way (``bench/encoders/simclr.py``).
- MoCo key encoder: the code applies the EMA before each step, the suite after
  (``on_step_end``). Over original training plus unlearning both give the key encoder
  the same weights at every step (the suite's original already carries the EMA that the
  code applies at the first unlearning step); the saved models differ by that one EMA.
- MoCo memory bank: unlearning starts from the original's queue; the code starts from a
  fresh random bank (lightly 1.5.3's queue is a non-persistent buffer, absent from its
  checkpoints). Chosen: the queue is part of the trained model (every other method and
  every auditor scores the original against it); a random bank is a checkpointing
  artefact. It matters only until the queue has turned over once (bank / batch steps).
- Partial batch: kept (the code's loader drops it, ``drop_last``), as every other method
  and the training recipe here: each epoch sees every sample; at MUC's scale (45,000
  samples, batch 512) that is one more step of 456 samples per epoch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from bench import Batch, DataView, Encoder, Method, UnlearnContext, hp, integer, log_uniform, register_method, uniform

OPTIMIZERS = ("sgd", "adam", "adamw")


def weight_rows(losses: torch.Tensor, is_forget: torch.Tensor, alpha: float) -> torch.Tensor:
    """sum_r l + alpha sum_f l over (sum of the weights), for per-sample losses [N] or for
    k stacked views' row losses [k*N] ordered [view0; view1; ...]: the per-sample mask is
    *tiled* k times, so row j*N + i carries sample i's weight."""
    k, rest = divmod(losses.numel(), is_forget.numel())
    if rest:
        raise ValueError(f"{losses.numel()} row losses for {is_forget.numel()} samples")
    w = torch.where(is_forget.repeat(k), alpha, 1.0).to(losses)
    total = w.sum()
    if total == 0:  # alpha 0 and a forget-only batch: nothing to weight
        return (losses * 0).sum()
    return (w * losses).sum() / total


def forget_partners(pos: torch.Tensor, n_forget: int, generator: torch.Generator) -> torch.Tensor:
    """For forget samples at positions ``pos`` in D_f, a uniformly random *other* position."""
    if n_forget < 2:
        raise ValueError("alignment_calibration needs at least 2 forget samples")
    draw = torch.randint(0, n_forget - 1, (len(pos),), generator=generator).to(pos.device)
    return draw + (draw >= pos).long()  # skip the sample itself


@contextlib.contextmanager
def buffers_kept(encoder: Encoder) -> Iterator[None]:
    """A forward whose outputs are wanted but whose buffer updates are not: it repeats a
    forward the loss already made (same batch), which already counted once. The forward
    updates copies; the original tensors are put back untouched (an in-place restore would
    invalidate the loss graph, which saved the running statistics)."""
    owned = [(m, n, b) for m in encoder.modules() for n, b in m.named_buffers(recurse=False)]
    for m, n, b in owned:
        setattr(m, n, b.clone())
    try:
        yield
    finally:
        for m, n, b in owned:
            setattr(m, n, b)


class ForgetLookup:
    """Which rows of a union batch are forget samples, and where they sit in D_f."""

    def __init__(self, forget: DataView):
        self.sorted_idx, self.order = forget.idx.sort()
        self.n = len(forget)

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        at = torch.searchsorted(self.sorted_idx, idx).clamp(max=self.n - 1)
        return self.sorted_idx[at] == idx, self.order[at]


@register_method(
    "alignment_calibration",
    needs=("forget", "retain"),
    requires=("views",),
    source="MUC (Wang et al. 2024), EhanW/Alignment-Calibration",
    description="MUC: alpha-weighted InfoNCE, each forget sample paired with another one",
)
@dataclass
class AlignmentCalibration(Method):
    """MUC's released runs (``scrips/template/ac_*.sh``): MoCo, 10 epochs, SGD lr 0.006
    constant (momentum 0.9, weight decay 5e-4 as its pretraining), beta 0, alpha 0.8-1.8
    (10 % forget) or 0.4-0.9 (50 %), widened here to 0.8-2.0 / 0.4-1.0. alpha 1.0 is the one
    value inside both.

    Search space: alpha uniform 0.4-2.0 (the two ranges joined: one space serves
    every scenario); lr log-uniform 0.003-0.03 (our choice: MUC fixes 0.006, inside it;
    it is MUC's finetune sweep); epochs up to MUC's 10. beta stays 0, as every released
    run (the code's ``--beta``)."""

    epochs: int = hp(10, ge=1, tune=integer(1, 10))
    lr: float = hp(0.006, gt=0, tune=log_uniform(3e-3, 3e-2))
    alpha: float = hp(1.0, ge=0, tune=uniform(0.4, 2.0), doc="weight of the forget rows' (descended) InfoNCE")
    beta: float = hp(0.0, ge=0, doc="weight of the positive-alignment calibration on D_f")
    optimizer: str = hp("sgd", choices=OPTIMIZERS)
    weight_decay: float = hp(5e-4, ge=0)

    @classmethod
    def unsupported_reason(cls, encoder: type[Encoder] | Encoder) -> str | None:
        """A classifier's objective (capability ``logits``) scores one view against a label:
        there is no positive pair whose alignment could be calibrated, and descending it on
        the forget rows would only reinforce them."""
        if "logits" in encoder.capabilities:
            return "alignment_calibration needs a two-view contrastive objective (not a classifier)"
        return super().unsupported_reason(encoder)

    def loss(
        self,
        ctx: UnlearnContext,
        batch: Batch,
        is_forget: torch.Tensor,
        views: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
        forget_frac: float,
    ) -> torch.Tensor:
        """The AC loss of one union batch given its triad views (t1 x, x~, t3 x)."""
        v1, v_tilde, v3 = views
        with ctx.autocast():
            per_sample = ctx.encoder.pair_loss(v1, v_tilde, batch).float()
            loss = weight_rows(per_sample, is_forget, self.alpha)
            if self.beta != 0 and v3 is not None and bool(is_forget.any()):
                with buffers_kept(ctx.encoder):  # the loss forward of t1 already counted
                    z = ctx.encoder.embed(v1)
                z_target = ctx.encoder.target_embed(v3)  # whole batch, as the code's
                cos = (z[is_forget] * z_target[is_forget]).sum(1)
                loss = loss + self.beta * forget_frac * cos.mean()
        return loss

    def triad(
        self, ctx: UnlearnContext, batch: Batch, forget: DataView, lookup: ForgetLookup
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        is_forget, pos = lookup(batch.idx)
        partner_x = batch.x.clone()
        if bool(is_forget.any()):
            partners = forget_partners(pos[is_forget], len(forget), ctx.generator)
            partner_x[is_forget] = forget.x[partners]
        v1, v_tilde = ctx.augment(batch.x), ctx.augment(partner_x)
        v3 = ctx.augment(batch.x) if self.beta != 0 else None
        return is_forget, (v1, v_tilde, v3)

    def unlearn(self, ctx: UnlearnContext) -> None:
        forget, retain = ctx.forget, ctx.retain
        union = DataView.concat([retain, forget], "retain+forget")
        lookup = ForgetLookup(forget)
        forget_frac = len(forget) / len(union)
        opt = ctx.optimizer(self.optimizer, lr=self.lr, weight_decay=self.weight_decay)
        for batch in ctx.batches(union, epochs=self.epochs):
            is_forget, views = self.triad(ctx, batch, forget, lookup)
            ctx.step(opt, self.loss(ctx, batch, is_forget, views, forget_frac))
