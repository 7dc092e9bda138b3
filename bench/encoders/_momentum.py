"""Momentum (EMA) target networks shared by MoCo's key encoder and BYOL's target.

Not a registered encoder (the leading underscore keeps the registry from importing it as
one): a base class that owns frozen copies of ``backbone`` and ``head`` and updates them
with lightly's ``update_momentum`` after every optimiser step.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bench.encoders.base import Encoder, normalize


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that the optimiser never sees (requires_grad False)."""
    # lightly.models imports torchvision: loaded when a model is built, so validate does not pay for it
    from lightly.models.utils import deactivate_requires_grad

    twin = copy.deepcopy(module)
    deactivate_requires_grad(twin)
    return twin


class MomentumEncoder(Encoder):
    """Encoder whose ``backbone_m`` / ``head_m`` track ``backbone`` / ``head`` by EMA.

    The momentum is constant (``momentum``) unless ``momentum_steps > 0``: then it follows
    lightly's ``cosine_schedule`` from ``momentum`` to ``momentum_end`` over that many
    optimiser steps (BYOL's schedule), and stays at ``momentum_end`` afterwards. The step
    counter is a persistent buffer, so a cached or copied model resumes the schedule where
    it stopped (an unlearning method continues from the original's last value).
    """

    momentum_step: torch.Tensor

    def _init_momentum(self, momentum: float, momentum_end: float, momentum_steps: int) -> None:
        if not 0.0 <= momentum <= 1.0 or not 0.0 <= momentum_end <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum} -> {momentum_end}")
        self.momentum = momentum
        self.momentum_end = momentum_end
        self.momentum_steps = momentum_steps
        self.backbone_m = frozen_copy(self.backbone)
        self.head_m = frozen_copy(self.head)
        self.register_buffer("momentum_step", torch.zeros((), dtype=torch.long))

    def current_momentum(self) -> float:
        """The EMA factor the next ``on_step_end`` applies."""
        if self.momentum_steps <= 0:
            return self.momentum
        step = int(self.momentum_step)
        from lightly.utils.scheduler import cosine_schedule  # lazy as the rest of lightly here

        if step >= self.momentum_steps - 1:
            return self.momentum_end
        return float(cosine_schedule(step, self.momentum_steps, self.momentum, self.momentum_end))

    @torch.no_grad()
    def on_step_end(self) -> None:
        from lightly.models.utils import update_momentum  # already loaded by frozen_copy: a dict lookup

        m = self.current_momentum()
        update_momentum(self.backbone, self.backbone_m, m)
        update_momentum(self.head, self.head_m, m)
        self.momentum_step += 1

    def target_project(self, v: torch.Tensor) -> torch.Tensor:
        """Unnormalised target output head_m(backbone_m(v)), without a graph."""
        with torch.no_grad():
            return self.head_m(self.backbone_m(v))

    def target_embed(self, v: torch.Tensor) -> torch.Tensor:
        return normalize(self.target_project(v))
