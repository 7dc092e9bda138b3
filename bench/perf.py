"""Throughput of each encoder's training step, with and without on-device augmentation.

``python -m bench.perf`` times, on the same pre-generated uint8 batches, (a) the full SSL
training step (``objective``: augmentation of the views included, forward, backward,
optimiser step, momentum update) and (b) the pure model step on views augmented
beforehand (``pair_loss`` on ready tensors, same backward/step/update). The ratio a / b is
the cost of augmenting on the training device; the target is <= 1.10 for convnet-s on CPU.
Steps of a and b are interleaved and the median step time is reported, so a neighbour's
load on a shared machine hits both columns alike. Prints a markdown table (``--json``:
also the rows as JSON).

On CUDA each step is timed with a pair of CUDA events and the host waits for the device
only once, after the last step: a ``synchronize`` per step would leave the GPU idle while
the host queues the next step, which is not how the training loop runs. The model FLOPs of
one step (forward and backward of the model step, counted by
``torch.utils.flop_counter.FlopCounterMode``) give each step's MFU, its share of the
device's peak (``--peak-tflops``, default the H200's dense bf16 989 TFLOP/s; fp32 rows are
measured against the same bf16 peak, so they show what bf16 leaves on the table).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.data import Batch
from bench.device import autocast, compile_backbone, place, resolve_device, synchronize
from bench.encoders.base import DataInfo, Encoder, build_encoder
from bench.registry import encoders

DEFAULT_ENCODERS = ("simclr", "moco_v2", "byol", "supervised", "clip", "barlow_twins", "vicreg")
H200_BF16_TFLOPS = 989.0  # NVIDIA H200 SXM, dense bf16 tensor-core peak (no sparsity)


@dataclass
class PerfRow:
    encoder: str
    backbone: str
    precision: str
    batch_size: int
    full_step_s: float  # median seconds of the full step (augmentation included)
    model_step_s: float  # median seconds of the model step on ready views
    model_flops: float  # FLOPs of one model step (forward + backward), FlopCounterMode
    peak_tflops: float
    compiled: bool = False  # torch.compile'd backbone (bench.device.compile_backbone)
    first_step_s: float = 0.0  # the first full step: warm-up (cuDNN choice, compilation)

    @property
    def full_img_s(self) -> float:
        return self.batch_size / self.full_step_s

    @property
    def model_img_s(self) -> float:
        return self.batch_size / self.model_step_s

    @property
    def ratio(self) -> float:
        return self.full_step_s / self.model_step_s

    def mfu(self, seconds: float) -> float:
        """Share of the peak that the model's FLOPs reach in ``seconds`` per step."""
        return self.model_flops / seconds / (self.peak_tflops * 1e12)

    def as_dict(self) -> dict:
        return asdict(self) | {"full_img_s": self.full_img_s, "model_img_s": self.model_img_s,
                               "ratio": self.ratio, "mfu_full": self.mfu(self.full_step_s),
                               "mfu_model": self.mfu(self.model_step_s)}


def make_batches(n: int, batch_size: int, size: int, classes: int, seed: int) -> list[Batch]:
    """Random uint8 images (throughput does not depend on content) with labels."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=g)
        y = torch.randint(0, classes, (batch_size,), generator=g)
        out.append(Batch(x, y, torch.arange(i * batch_size, (i + 1) * batch_size)))
    return out


class StepClock:
    """Per-step wall times: host clock on CPU; on CUDA a pair of events per step, read after
    one final synchronize (so timing adds no host-device sync between steps)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._spans: list = []

    def time(self, fn: Callable[[], None]) -> None:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            self._spans.append((start, end))
        else:
            t0 = time.perf_counter()
            fn()
            self._spans.append(time.perf_counter() - t0)

    def seconds(self) -> list[float]:
        if self.device.type == "cuda":
            synchronize(self.device)
            return [s.elapsed_time(e) / 1000 for s, e in self._spans]
        return list(self._spans)


def _step(enc: Encoder, opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor], device: torch.device,
          precision: str) -> None:
    """One optimiser step (what bench.training.optimizer_step does, minus the loss check)."""
    with autocast(device, precision):
        loss = loss_fn().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    enc.on_step_end()


def model_flops(enc: Encoder, v1: torch.Tensor, v2: torch.Tensor, batch: Batch, device: torch.device,
                precision: str) -> float:
    """FLOPs of one forward + backward of the model step on ready views (matmuls and
    convolutions, as FlopCounterMode counts them); no optimiser step, weights untouched."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)  # one block: entering it again resets the counts
    with counter:
        with autocast(device, precision):
            loss = enc.pair_loss(v1, v2, batch).mean()
        loss.backward()
    enc.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def time_encoder(
    name: str,
    backbone: str,
    precision: str,
    batches: list[Batch],
    size: int,
    device: torch.device,
    warmup: int,
    seed: int,
    peak_tflops: float = H200_BF16_TFLOPS,
    compile: bool = False,
) -> PerfRow:
    """Median seconds per step of the full step (with augmentation) and the model step on
    ready views, and the model step's FLOPs (counted before any compilation: a dispatch
    mode does not see inside compiled code)."""
    info = DataInfo(10, tuple(f"class {c}" for c in range(10)), (3, size, size), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    torch.manual_seed(seed)
    enc = place(build_encoder(name, backbone, info, {}), device).train()  # as the runner builds it
    opt = torch.optim.Adam(enc.trainable_parameters(), lr=1e-4)
    batches = [Batch(b.x.to(device), b.y.to(device), b.idx.to(device)) for b in batches]
    gen = torch.Generator().manual_seed(seed)
    ready = [(enc.augment(b.x, gen), enc.augment(b.x, gen)) for b in batches]
    flops = model_flops(enc, *ready[0], batches[0], device, precision)
    if compile:
        compile_backbone(enc)
    full, pure = StepClock(device), StepClock(device)
    for i, b in enumerate(batches):
        v1, v2 = ready[i]
        full.time(lambda b=b: _step(enc, opt, lambda: enc.objective(b, gen), device, precision))
        pure.time(lambda b=b, v1=v1, v2=v2: _step(enc, opt, lambda: enc.pair_loss(v1, v2, b), device, precision))
    all_full = full.seconds()
    tf, tp = all_full[warmup:], pure.seconds()[warmup:]
    return PerfRow(name, backbone, precision, batches[0].x.shape[0], statistics.median(tf), statistics.median(tp),
                   flops, peak_tflops, compile, all_full[0])


def table(rows: list[PerfRow]) -> list[str]:
    lines = ["| encoder | backbone | precision | full step (img/s) | model step (img/s) | ratio "
             "| GFLOP/step | MFU full | MFU model |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        label = f"{r.encoder} (compiled)" if r.compiled else r.encoder
        lines.append(f"| {label} | {r.backbone} | {r.precision} | {r.full_img_s:.0f} | {r.model_img_s:.0f} "
                     f"| {r.ratio:.2f} | {r.model_flops / 1e9:.1f} | {100 * r.mfu(r.full_step_s):.3g} % "
                     f"| {100 * r.mfu(r.model_step_s):.3g} % |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n")[0])
    p.add_argument("--encoders", nargs="+", default=list(DEFAULT_ENCODERS))
    p.add_argument("--backbones", nargs="+", default=["convnet-s"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--size", type=int, default=32, help="image side (default 32, CIFAR)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=8, help="timed steps of each kind")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N]")
    p.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS,
                   help="the device's dense bf16 peak for MFU (default: H200, 989)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbones (bench.device)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    unknown = [e for e in a.encoders if e not in encoders]
    if unknown:
        p.error(encoders.unknown_message(unknown[0]))
    rows = run(a.encoders, a.backbones, a.precisions, a.size, a.batch_size, a.steps, a.warmup, device, a.seed,
               a.peak_tflops, on_row=lambda r: print(table([r])[-1], flush=True),
               header=f"device {device}, torch {torch.__version__}, {a.threads} threads, batch {a.batch_size}, "
                      f"{a.size}x{a.size}, median of {a.steps} steps after {a.warmup}", compile=a.compile)
    if a.json:
        a.json.write_text(json.dumps([r.as_dict() for r in rows], indent=2))
    return 0


def run(encoder_names, backbones, precisions, size: int, batch_size: int, steps: int, warmup: int,
        device: torch.device, seed: int = 0, peak_tflops: float = H200_BF16_TFLOPS,
        on_row: Callable[[PerfRow], None] | None = None, header: str | None = None,
        compile: bool = False) -> list[PerfRow]:
    """Every (backbone, encoder, precision) row; ``on_row`` sees each as it is measured."""
    batches = make_batches(warmup + steps, batch_size, size, 10, seed)
    if header is not None:
        print(header, end="\n\n")
        print("\n".join(table([])))
    rows = []
    for backbone in backbones:
        for name in encoder_names:
            for precision in precisions:
                rows.append(time_encoder(name, backbone, precision, batches, size, device, warmup, seed, peak_tflops,
                                         compile))
                if on_row is not None:
                    on_row(rows[-1])
    return rows


if __name__ == "__main__":
    sys.exit(main())
