"""Training primitives shared by the original/retrain recipe and every unlearning method.

Data sits on the device as uint8 tensors; a batch is an index lookup and the
encoder augments it on the device. Every random choice comes from one seeded
``torch.Generator`` so a CPU run with a fixed seed is bit-for-bit repeatable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import torch
from tqdm.auto import tqdm

from bench.config import TrainBudget
from bench.data import Batch, DataView
from bench.device import autocast
from bench.encoders.base import Encoder


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf: the method diverged."""


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
        order = order.to(view.x.device)
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
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """zero_grad, backward, NaN check, step, scheduler, momentum update; returns the loss value."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"loss became {value}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if scheduler is not None:
        scheduler.step()
    encoder.on_step_end()
    return value


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
    bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
    for batch in iterate_batches(view, budget.batch_size, budget.epochs, gen):
        with autocast(device, precision):
            loss = encoder.objective(batch, gen).mean()
        value = optimizer_step(encoder, opt, loss, sched)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    bar.close()
    encoder.eval()
    return time.perf_counter() - start
