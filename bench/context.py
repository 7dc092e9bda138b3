"""What a method sees while it unlearns: its declared data, the encoder, and the training verbs.

The runner owns devices, seeding, autocast, progress, the wall-clock budget, NaN
checks and momentum updates; a method owns only its loss and its data needs.
Asking for data the method did not declare raises, so ``needs`` cannot lie.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from bench.config import TrainBudget
from bench.data import Batch, DataView
from bench.device import autocast
from bench.encoders.base import Encoder
from bench.training import iterate_batches, make_optimizer, optimizer_step, steps_per_epoch


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
        """Batches of ``view`` with a progress bar; stops early when the time budget is spent."""
        bs = batch_size or self.budget.batch_size
        total = self.num_batches(view, epochs, bs)
        bar = tqdm(total=total, desc=f"{self.desc} {view.name}", leave=False, dynamic_ncols=True)
        try:
            for batch in iterate_batches(view, bs, epochs, self.generator, shuffle):
                if self.elapsed() > self.time_limit_s:
                    self.out_of_time = True
                    self.info["stopped"] = "time budget"
                    return
                yield batch
                bar.update(1)
        finally:
            bar.close()

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

    def objective(self, batch: Batch, encoder: Encoder | None = None) -> torch.Tensor:
        """Per-sample objective (shape [B]) of ``encoder`` (default: the one being unlearned)."""
        with self.autocast():
            return (encoder or self.encoder).objective(batch, self.generator).float()

    def optimizer(
        self, name: str = "sgd", lr: float = 1e-3, params=None, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> torch.optim.Optimizer:
        params = self.encoder.trainable_parameters() if params is None else params
        return make_optimizer(name, params, lr, momentum, weight_decay)

    def step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, scheduler=None) -> float:
        self.encoder.train()
        return optimizer_step(self.encoder, opt, loss, scheduler)

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
