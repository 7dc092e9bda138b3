"""MoCo's negatives queue whose keys join it when the optimiser step ends.

Its own module, not registered (the leading underscore keeps the registry from importing it):
it subclasses lightly's ``MemoryBankModule``, and ``lightly.models`` imports torchvision, so
``bench/encoders/moco_v2.py`` imports this module only when it builds a model; ``validate``
and ``ls`` import that encoder without it.
"""

from __future__ import annotations

import torch
from lightly.models.modules.memory_bank import MemoryBankModule


class StepQueue(MemoryBankModule):
    """lightly's memory bank whose new keys join the queue when the optimiser step ends.

    MoCo's negatives are the keys of *earlier steps*. lightly enqueues a batch's keys inside
    the loss call, so a method that scores two batches in one step (NegGrad+'s retain and
    forget terms) would score the second against the first's keys. Here a call only
    *holds* its keys; :meth:`commit` (``MoCoV2.on_step_end``) enqueues everything held, in
    call order, with lightly's own ``_dequeue_and_enqueue``. With one call per step (training)
    the queue is bit-for-bit lightly's. The held keys are buffers, so code that restores a
    model's buffers after a measurement (gradient_penalty's caps, SSD's importances) also
    drops the keys that measurement held."""

    def __init__(self, size: tuple[int, int]):
        super().__init__(size)  # draws the initial bank exactly as NTXentLoss's own would
        # persistent (lightly: non-persistent): a cached model scores against the same negatives
        self.register_buffer("bank", self.bank, persistent=True)
        self.register_buffer("bank_ptr", self.bank_ptr, persistent=True)
        self.register_buffer("held", torch.zeros(size), persistent=False)
        self.register_buffer("held_n", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(
        self, output: torch.Tensor, labels: torch.Tensor | None = None, update: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        output, negatives = super().forward(output, labels, update=False)
        if update:
            self.hold(output)
        return output, negatives

    @torch.no_grad()
    def hold(self, keys: torch.Tensor) -> None:
        n, room = int(self.held_n), self.size[0] - int(self.held_n)
        take = keys[:room].detach()  # more keys than the bank holds: the first ones, as lightly
        self.held[n : n + len(take)] = take.to(self.held)
        self.held_n += len(take)

    @torch.no_grad()
    def commit(self) -> None:
        n = int(self.held_n)
        if n:
            self._dequeue_and_enqueue(self.held[:n].clone())
            self.held_n.zero_()
