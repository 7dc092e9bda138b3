"""What a method sees while it unlearns: its declared data, the encoder, and the training verbs.

The runner owns devices, seeding, autocast, progress, the wall-clock budget, NaN
checks and momentum updates; a method owns only its loss and its data needs. The NaN
check reads the losses every few steps (``bench.training.LossWatch``), at the end of each
``batches`` loop and in :meth:`UnlearnContext.finish`, never once per step.
Asking for data the method did not declare raises, so ``needs`` cannot lie.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from bench.config import TrainBudget
from bench.data import Batch, DataView
from bench.device import autocast, synchronize
from bench.encoders.base import Encoder
from bench.progress import bar
from bench.training import (
    LossWatch,
    NonFiniteLossError,
    iterate_batches,
    make_optimizer,
    optimizer_step,
    steps_per_epoch,
)


class UndeclaredNeedError(AttributeError):
    pass


class UnlearnContext:
    def __init__(
        self,
        encoder: Encoder,
        *,
        needs: tuple[str, ...],
        data: dict[str, DataView],
        original: Encoder | None,
        device: torch.device,
        precision: str,
        seed: int,
        budget: TrainBudget,
        time_limit_s: float,
        num_classes: int,
        train_from_scratch: Callable[[DataView], tuple[Encoder, float]] | None = None,
        desc: str = "unlearn",
    ):
        self.encoder = encoder
        self.needs = needs
        self._data = data
        self._original = original
        self.device = device
        self.precision = precision
        self.seed = seed
        self.budget = budget  # the original model's recipe (retrain reuses it)
        self.time_limit_s = time_limit_s
        self.num_classes = num_classes
        self.generator = torch.Generator().manual_seed(seed)
        self._scratch = train_from_scratch
        self.desc = desc
        self.started = time.perf_counter()
        self.out_of_time = False
        self.charged_seconds = 0.0  # compute done elsewhere (a cached retrain's training time)
        self.excluded_seconds = 0.0  # wall time spent fetching that compute from the cache
        self.info: dict[str, Any] = {}  # diagnostics a method wants recorded (steps, stop reason)
        self.watch = LossWatch()  # the non-finite loss check of every step

    # --- declared data -------------------------------------------------------
    def _need(self, name: str) -> Any:
        if name not in self.needs:
            raise UndeclaredNeedError(
                f"method uses '{name}' but does not declare it: add it to needs=(...) "
                "in its @register_method"
            )
        return self._data[name] if name != "original" else self._original

    @property
    def forget(self) -> DataView:
        return self._need("forget")

    @property
    def retain(self) -> DataView:
        return self._need("retain")

    @property
    def val(self) -> DataView:
        return self._need("val")

    @property
    def original(self) -> Encoder:
        return self._need("original")

    # --- verbs ---------------------------------------------------------------
    def autocast(self):
        return autocast(self.device, self.precision)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def batches(
        self, view: DataView, epochs: int = 1, batch_size: int | None = None, shuffle: bool = True
    ) -> Iterator[Batch]:
        """Batches of ``view`` with a progress bar; stops early when the time budget is spent.
        When the loop ends (or runs out of time) the steps' losses are checked (:meth:`check`)."""
        bs = batch_size or self.budget.batch_size
        total = self.num_batches(view, epochs, bs)
        progress = bar(total, f"{self.desc} {view.name}")
        try:
            for batch in iterate_batches(view, bs, epochs, self.generator, shuffle):
                if self.elapsed() > self.time_limit_s:
                    self.out_of_time = True
                    self.info["stopped"] = "time budget"
                    self.check()
                    return
                yield batch
                progress.update(1)
            self.check()
        finally:
            progress.close()

    def num_batches(self, view: DataView, epochs: int = 1, batch_size: int | None = None) -> int:
        """How many batches ``batches(view, epochs, batch_size)`` yields if time does not run out
        (for schedules that must know the step count in advance)."""
        return epochs * steps_per_epoch(len(view), batch_size or self.budget.batch_size)

    def cycle(self, view: DataView, batch_size: int | None = None) -> Iterator[Batch]:
        """An endless stream of shuffled batches (e.g. retain batches paired with forget ones)."""
        bs = batch_size or self.budget.batch_size
        return itertools.chain.from_iterable(
            iterate_batches(view, bs, 1, self.generator) for _ in itertools.count()
        )

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.augment(x, self.generator)

    def view(self, x: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """One view per image: a random augmentation, or the prepared image (``augment=False``)."""
        return self.encoder.view(x, self.generator, augment)

    def objective(self, batch: Batch, encoder: Encoder | None = None, augment: bool = True) -> torch.Tensor:
        """Per-sample objective (shape [B]) of ``encoder`` (default: the one being unlearned).

        ``augment=False``: on the un-augmented images where the objective takes one view
        (capability ``one_view``); two-view objectives augment regardless (see
        :meth:`Encoder.objective`), so a method asks for what its reference does and never
        branches on the encoder."""
        enc = encoder or self.encoder
        with self.autocast():
            if augment or "one_view" not in enc.capabilities:  # only one_view encoders need the keyword
                return enc.objective(batch, self.generator).float()
            return enc.objective(batch, self.generator, augment=False).float()

    def optimizer(
        self, name: str = "sgd", lr: float = 1e-3, params=None, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> torch.optim.Optimizer:
        params = self.encoder.trainable_parameters() if params is None else params
        return make_optimizer(name, params, lr, momentum, weight_decay)

    def step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, scheduler=None) -> torch.Tensor:
        """One optimiser step on ``loss``. Returns the detached loss *on the device*: reading
        it (``float``) makes the host wait for the GPU, so collect the values and read them
        once, after the loop. A non-finite loss raises within ``CHECK_EVERY`` steps."""
        self.encoder.train()
        with self._recording_divergence():
            return optimizer_step(self.encoder, opt, loss, self.watch, scheduler)

    def check(self) -> None:
        """Read the losses of the steps since the last check (one sync); raise
        :class:`~bench.training.NonFiniteLossError` on the first non-finite one."""
        with self._recording_divergence():
            self.watch.check()

    @contextlib.contextmanager
    def _recording_divergence(self) -> Iterator[None]:
        """The first non-finite step goes into ``info["nonfinite_step"]`` (the reason says only
        "loss became nan"; the step is read some steps later)."""
        try:
            yield
        except NonFiniteLossError as e:
            self.info["nonfinite_step"] = e.step
            raise

    def finish(self) -> None:
        """After ``unlearn`` returns (the runner calls it): check the last steps' losses and
        wait for the device, so the method's wall time includes its queued GPU work."""
        self.check()
        synchronize(self.device)

    def train_from_scratch(self, view: DataView) -> None:
        """Replace the encoder by one trained from scratch on ``view`` with the original's recipe.

        Content-addressed: the runner's cache returns the same model for the same data
        and seed, and charges its recorded training time to this method."""
        if self._scratch is None:
            raise RuntimeError("train_from_scratch is not available in this context")
        t0 = time.perf_counter()
        model, seconds = self._scratch(view)
        self.encoder.load_state_dict(model.state_dict())
        self.excluded_seconds += time.perf_counter() - t0
        self.charged_seconds += seconds
