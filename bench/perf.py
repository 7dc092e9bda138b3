"""Throughput of each encoder's training step, with and without on-device augmentation.

``python -m bench.perf`` times, on the same pre-generated uint8 batches, (a) the full SSL
training step (``objective``: augmentation of the views included, forward, backward,
optimiser step, momentum update) and (b) the pure model step on views augmented
beforehand (``pair_loss`` on ready tensors, same backward/step/update). The ratio a / b is
the cost of augmenting on the training device; the target is <= 1.10 for convnet-s on CPU.
Steps of a and b are interleaved and the median step time is reported, so a neighbour's
load on a shared machine hits both columns alike. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from bench.data import Batch
from bench.device import autocast, resolve_device
from bench.encoders.base import DataInfo, Encoder, build_encoder
from bench.registry import encoders

DEFAULT_ENCODERS = ("simclr", "moco_v2", "byol", "supervised", "clip", "barlow_twins", "vicreg")


def make_batches(n: int, batch_size: int, size: int, classes: int, seed: int) -> list[Batch]:
    """Random uint8 images (throughput does not depend on content) with labels."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=g)
        y = torch.randint(0, classes, (batch_size,), generator=g)
        out.append(Batch(x, y, torch.arange(i * batch_size, (i + 1) * batch_size)))
    return out


def _step(
    enc: Encoder, opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor], device: torch.device, precision: str
) -> float:
    """One optimiser step; returns its wall time (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with autocast(device, precision):
        loss = loss_fn().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    enc.on_step_end()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def time_encoder(
    name: str,
    backbone: str,
    precision: str,
    batches: list[Batch],
    size: int,
    device: torch.device,
    warmup: int,
    seed: int,
) -> tuple[float, float]:
    """Median seconds per step: (full step with augmentation, model step on ready views)."""
    info = DataInfo(10, tuple(f"class {c}" for c in range(10)), (3, size, size), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    torch.manual_seed(seed)
    enc = build_encoder(name, backbone, info, {}).to(device).train()
    if device.type == "cuda":
        enc = enc.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(enc.trainable_parameters(), lr=1e-4)
    batches = [Batch(b.x.to(device), b.y.to(device), b.idx.to(device)) for b in batches]
    gen = torch.Generator().manual_seed(seed)
    ready = [(enc.augment(b.x, gen), enc.augment(b.x, gen)) for b in batches]
    full, pure = [], []
    for i, b in enumerate(batches):
        v1, v2 = ready[i]
        tf = _step(enc, opt, lambda b=b: enc.objective(b, gen), device, precision)
        tp = _step(enc, opt, lambda b=b, v1=v1, v2=v2: enc.pair_loss(v1, v2, b), device, precision)
        if i >= warmup:
            full.append(tf)
            pure.append(tp)
    return statistics.median(full), statistics.median(pure)


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
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    unknown = [e for e in a.encoders if e not in encoders]
    if unknown:
        p.error(encoders.unknown_message(unknown[0]))
    batches = make_batches(a.warmup + a.steps, a.batch_size, a.size, 10, a.seed)
    print(
        f"device {device}, torch {torch.__version__}, {a.threads} threads, "
        f"batch {a.batch_size}, {a.size}x{a.size}, median of {a.steps} steps after {a.warmup}"
    )
    print()
    print("| encoder | backbone | precision | full step (img/s) | model step (img/s) | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for backbone in a.backbones:
        for name in a.encoders:
            for precision in a.precisions:
                tf, tp = time_encoder(name, backbone, precision, batches, a.size, device, a.warmup, a.seed)
                bs = a.batch_size
                print(
                    f"| {name} | {backbone} | {precision} | {bs / tf:.0f} | {bs / tp:.0f} | {tf / tp:.2f} |", flush=True
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
