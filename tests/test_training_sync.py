"""No host read of the loss per training step, and a diverged loss still fails fast with its reason.

On CUDA every host read of a device value (``float``, ``.item()``, ``bool``, ``.cpu()``)
makes the CPU wait for the GPU. Here on CPU the losses are wrapped in a tensor subclass
that counts such reads of any value derived from them; the training loops may read them
once per ``LossWatch`` window, never once per step.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from bench import progress
from bench.config import TrainBudget
from bench.context import UnlearnContext
from bench.data import DataView
from bench.encoders.base import DataInfo, build_encoder
from bench.registry import methods
from bench.training import CHECK_EVERY, LossWatch, NonFiniteLossError, train_encoder

HOST_READS = {"item", "__float__", "__int__", "__bool__", "__index__", "tolist", "numpy", "cpu"}


class Counted(torch.Tensor):
    """A loss whose every derived tensor counts host reads (``Counted.reads``)."""

    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_READS:
            Counted.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def counted_encoder(scale: float = 1.0, nan_from: int | None = None):
    """A tiny SimCLR whose objective returns a Counted loss (times NaN from step ``nan_from``)."""
    info = DataInfo(10, tuple(str(c) for c in range(10)), (3, 16, 16), (0.5,) * 3, (0.25,) * 3)
    torch.manual_seed(0)
    enc = build_encoder("simclr", "convnet-s", info, {})
    plain = enc.objective
    calls = {"n": 0}

    def objective(batch, generator=None, **kw):
        out = plain(batch, generator, **kw) * scale
        if nan_from is not None and calls["n"] >= nan_from:
            out = out * float("nan")
        calls["n"] += 1
        return out.as_subclass(Counted)

    enc.objective = objective
    return enc, calls


def view(n: int) -> DataView:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    return DataView(x, torch.randint(0, 10, (n,), generator=g), torch.arange(n), "train")


def context(enc, data: DataView, time_limit_s: float = 3600.0) -> UnlearnContext:
    return UnlearnContext(enc, needs=("forget", "retain"), data={"forget": data, "retain": data}, original=None,
                          device=torch.device("cpu"), precision="fp32", seed=0, budget=TrainBudget(batch_size=4),
                          time_limit_s=time_limit_s, num_classes=10)


def test_train_encoder_reads_the_loss_once_per_window_not_once_per_step():
    steps = 3 * CHECK_EVERY + 5  # three full windows and a partial one, read when the loop ends
    enc, calls = counted_encoder()
    Counted.reads = 0
    train_encoder(enc, view(4 * steps), TrainBudget(epochs=1, batch_size=4), torch.device("cpu"), "fp32", seed=0)
    assert calls["n"] == steps
    windows = math.ceil(steps / CHECK_EVERY)
    assert 0 < Counted.reads <= 2 * windows < steps  # one transfer + the window mean per read


def test_the_counter_sees_a_per_step_read():
    """The counter can fail: with a window of one step the loop reads every step."""
    watch = LossWatch(every=1)
    Counted.reads = 0
    for _ in range(10):
        watch.add(torch.tensor(1.0).as_subclass(Counted))
    assert Counted.reads >= 10 and watch.reads == 10


@pytest.mark.parametrize("name", ["finetune", "gradient_ascent"])
def test_unlearning_steps_read_the_loss_once_per_window(name):
    enc, calls = counted_encoder()
    ctx = context(enc, view(4 * 2 * CHECK_EVERY))
    Counted.reads = 0
    methods.get(name)(epochs=1).unlearn(ctx)
    ctx.finish()
    assert calls["n"] == 2 * CHECK_EVERY
    assert 0 < Counted.reads <= 2 * 2 < calls["n"]
    assert ctx.watch.steps == calls["n"] and ctx.watch.reads == 2


def test_a_nan_loss_raises_within_one_window_with_its_reason_and_step():
    enc, calls = counted_encoder(nan_from=3)
    ctx = context(enc, view(4 * 4 * CHECK_EVERY))
    with pytest.raises(NonFiniteLossError, match=r"^loss became nan$") as err:
        methods.get("finetune")(epochs=1).unlearn(ctx)
    assert err.value.step == 3 and ctx.info["nonfinite_step"] == 3
    assert calls["n"] <= CHECK_EVERY  # stopped at the first read, not after the whole epoch


def test_a_nan_in_the_last_partial_window_is_caught_when_the_loop_ends():
    steps = CHECK_EVERY + 3
    enc, _ = counted_encoder(nan_from=steps - 1)
    with pytest.raises(NonFiniteLossError, match="loss became nan") as err:
        train_encoder(enc, view(4 * steps), TrainBudget(epochs=1, batch_size=4), torch.device("cpu"), "fp32", 0)
    assert err.value.step == steps - 1


def test_a_step_after_the_last_loop_is_checked_by_finish():
    """A method stepping on ``ctx.cycle`` only (no ``batches`` loop) is checked when it returns."""
    enc, _ = counted_encoder(scale=float("inf"))
    ctx = context(enc, view(32))
    opt = ctx.optimizer("sgd", lr=0.1)
    ctx.step(opt, ctx.objective(next(ctx.cycle(ctx.retain, 4))).mean())
    with pytest.raises(NonFiniteLossError, match="loss became (inf|nan)"):
        ctx.finish()


def test_loss_watch_reports_the_first_bad_step_and_the_window_mean():
    watch = LossWatch(every=4)
    for v in (1.0, 2.0, 3.0):
        assert watch.add(torch.tensor(v)) is False
    assert watch.add(torch.tensor(6.0)) is True and watch.last == 3.0
    watch.add(torch.tensor(1.0))
    watch.add(torch.tensor(float("inf")))
    watch.add(torch.tensor(float("nan")))
    with pytest.raises(NonFiniteLossError, match="^loss became inf$") as err:
        watch.check()
    assert err.value.step == 5
    with pytest.raises(ValueError):
        LossWatch(every=0)


def test_step_returns_the_detached_loss_on_the_device():
    enc, _ = counted_encoder()
    ctx = context(enc, view(16))
    opt = ctx.optimizer("sgd", lr=0.01)
    loss = ctx.objective(next(ctx.cycle(ctx.retain, 4))).mean()
    out = ctx.step(opt, loss)
    assert isinstance(out, torch.Tensor) and not out.requires_grad and out.device == loss.device


def test_progress_bars_redraw_rarely_in_a_log():
    class Stream(io.StringIO):
        def __init__(self, tty: bool):
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    assert progress.interval(Stream(tty=True)) == progress.TTY_INTERVAL_S
    assert progress.interval(Stream(tty=False)) == progress.LOG_INTERVAL_S >= 30
