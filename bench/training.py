"""Training primitives shared by the original/retrain recipe and every unlearning method.

Data sits on the device as uint8 tensors; a batch is an index lookup and the
encoder augments it on the device. Every random choice comes from one seeded
``torch.Generator`` so a CPU run with a fixed seed is bit-for-bit repeatable.

Nothing here reads a device value on the host once per step: that would make the CPU
wait for the GPU to finish each step before it may queue the next one. The non-finite
loss check (:class:`LossWatch`) keeps the losses on the device and reads them every
``CHECK_EVERY`` steps and when a loop ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch

from bench.config import TrainBudget
from bench.data import Batch, DataView
from bench.device import autocast, synchronize, to_device
from bench.encoders.base import Encoder
from bench.progress import bar

CHECK_EVERY = 16  # steps between host reads of the losses: one GPU sync per 16 steps


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf: the method diverged. ``step``: the first such step (0-based)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


class LossWatch:
    """Fail fast on a non-finite loss without a host-device sync per step.

    ``add`` keeps each step's detached loss on its device; every ``every`` steps (and on
    ``check``, which each training loop calls when it ends) the held losses are read in
    one transfer and the first non-finite one raises :class:`NonFiniteLossError`. A
    diverged run therefore stops at most ``every - 1`` steps after the bad step; those
    steps only touch a model that is discarded as failed. ``last`` is the mean loss of the
    last read window, a host value for progress bars."""

    def __init__(self, every: int = CHECK_EVERY):
        if every < 1:
            raise ValueError(f"LossWatch needs every >= 1, got {every}")
        self.every = every
        self.steps = 0  # losses added so far
        self.reads = 0  # host reads so far (syncs)
        self.last: float | None = None
        self._held: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor) -> bool:
        """Hold one step's loss; True when this call read the window (``last`` is fresh)."""
        self._held.append(loss.detach().reshape(()))
        self.steps += 1
        if len(self._held) >= self.every:
            self.check()
            return True
        return False

    def check(self) -> float | None:
        """Read the held losses (one sync); raise on the first non-finite one."""
        if not self._held:
            return self.last
        held, self._held = self._held, []
        values = torch.stack([v.float() for v in held]).cpu()
        self.reads += 1
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            i = int(bad[0, 0])
            raise NonFiniteLossError(f"loss became {values[i].item()}", step=self.steps - len(held) + i)
        self.last = float(values.mean())
        return self.last


def iterate_batches(
    view: DataView,
    batch_size: int,
    epochs: int,
    generator: torch.Generator,
    shuffle: bool = True,
) -> Iterator[Batch]:
    """Shuffled batches of a view for ``epochs`` passes; batches smaller than 2 are dropped
    (BatchNorm and contrastive losses need at least a pair)."""
    n = len(view)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = to_device(order, view.x.device)  # once per epoch, without a sync
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            if len(rows) < 2:
                continue
            yield Batch(view.x[rows], view.y[rows], view.idx[rows])


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)


def make_optimizer(
    name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}': use sgd, adam or adamw")


def optimizer_step(
    encoder: Encoder,
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    watch: LossWatch,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> torch.Tensor:
    """zero_grad, backward, step, scheduler, momentum update; the loss goes to ``watch``
    (the non-finite check, every few steps). Returns the detached loss, still on its
    device: ``float()`` of it is a host-device sync, so read it off the hot path."""
    watch.add(loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if scheduler is not None:
        scheduler.step()
    encoder.on_step_end()
    return loss.detach()


def train_encoder(
    encoder: Encoder,
    view: DataView,
    budget: TrainBudget,
    device: torch.device,
    precision: str,
    seed: int,
    desc: str = "train",
) -> float:
    """Train ``encoder`` in place with its own objective on ``view``; returns wall seconds."""
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    encoder.train()
    opt = make_optimizer(
        budget.optimizer, encoder.trainable_parameters(), budget.lr, budget.momentum, budget.weight_decay
    )
    total = budget.epochs * steps_per_epoch(len(view), budget.batch_size)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
        if budget.schedule == "cosine"
        else None
    )
    watch = LossWatch()
    progress = bar(total, desc)
    shown = 0
    try:
        for batch in iterate_batches(view, budget.batch_size, budget.epochs, gen):
            with autocast(device, precision):
                loss = encoder.objective(batch, gen).mean()
            optimizer_step(encoder, opt, loss, watch, sched)
            progress.update(1)
            if watch.reads > shown:  # the watch has just read the losses: a host value to show
                shown = watch.reads
                progress.set_postfix(loss=f"{watch.last:.3f}", refresh=False)
        watch.check()
        synchronize(device)  # the wall time includes the steps still queued on the GPU
    finally:
        progress.close()
    encoder.eval()
    return time.perf_counter() - start
