"""What a matrix costs, counted from its cells before anything runs.

The work of a matrix is counted exactly from its configuration, in image passes:

- trainings from scratch: one original per (dataset, encoder, seed) (scenarios share
  it: its members do not depend on the scenario), and per deletion request one
  retrain plus ``audit.references`` reference retrains, each ``train.epochs`` passes
  over its training set;
- unlearning: per request and method, ``epochs`` (the method's, default 1) passes over
  each split it iterates (D_r if it needs ``retain``, D_f if it needs ``forget``);
  ``retrain`` costs nothing (the cache's model); methods an encoder cannot run are
  skipped, as the runner skips them. This part is a heuristic: methods differ in work
  per image (extra views, double backward);
- audits: per request, every model (original, retrain, references, each method) is
  encoded once on D_f, the member sample of D_r and D_t, ``1 + views + 4`` forward
  views per image (clean features, the V alignment views, two draws of the
  two-view objective), each part only when an auditor of the cell reads it.

Time = training and unlearning images / ``train_img_s`` + audit views / ``infer_views_s``,
both scaled by the image area relative to 32x32. The two throughputs come from the
matrix's ``estimate`` key, which must say how they were obtained (``basis``):
``python -m bench.estimate`` measures them on the current machine.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from bench import registry
from bench.config import Cell, Matrix
from bench.data import parse_dataset
from bench.features import READS
from bench.splits import parse_scenario

TRAIN_VIEWS = 2  # a training image is two augmented views, forward and backward
OBJECTIVE_DRAWS = 2  # features.extract: per-sample loss averaged over two draws of two views


@dataclass
class Work:
    trainings: int = 0
    train_images: float = 0.0  # images x epochs of training from scratch (area-weighted)
    unlearn_images: float = 0.0  # images x epochs of unlearning (area-weighted)
    audit_views: float = 0.0  # forward passes of audit feature extraction (area-weighted)
    unknown: list[str] = dataclasses.field(default_factory=list)  # datasets of unknown size

    def seconds(self, train_img_s: float, infer_views_s: float) -> float:
        return (self.train_images + self.unlearn_images) / train_img_s + self.audit_views / infer_views_s


def dataset_shape(spec: str) -> tuple[int, int, int, int] | None:
    """(train size, test size, image side, classes) a loader declares, or None."""
    name, arg = parse_dataset(spec)
    if name not in registry.datasets:
        return None
    cls = registry.datasets.get(name)
    size = getattr(cls, "shape", None)
    if size is None:
        return None
    n_train, n_test, side, classes = size
    if name == "stl10" and arg and arg.isdigit():
        side = int(arg)
    return n_train, n_test, side, classes


def _method_epochs(spec) -> tuple[int, tuple[str, ...], type | None]:
    if spec.name not in registry.methods:
        return 1, ("forget",), None
    cls = registry.methods.get(spec.name)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    epochs = spec.kwargs.get("epochs", defaults.get("epochs", 1))
    return int(epochs if isinstance(epochs, int) else 1), tuple(cls.needs), cls


def count_work(matrix: Matrix) -> Work:
    """Image passes of every training, unlearning run and audit of the matrix."""
    work = Work()
    originals: set[tuple] = set()
    for cell in matrix.cells():
        shape = dataset_shape(cell.dataset)
        if shape is None:
            if cell.dataset not in work.unknown:
                work.unknown.append(cell.dataset)
            continue
        _count_cell(cell, shape, work, originals)
    return work


def _count_cell(cell: Cell, shape: tuple[int, int, int, int], work: Work, originals: set) -> None:
    n_train, n_test, side, classes = shape
    area = (side / 32) ** 2
    d = cell.data
    members = min(d.n_train, n_train - d.n_val) if d.n_train else n_train - d.n_val
    test = min(d.n_test, n_test) if d.n_test else n_test
    sc = parse_scenario(cell.scenario)
    per_request = members // classes if sc.kind == "class" else max(1, round(sc.frac * members))
    epochs = cell.train.epochs
    key = (cell.dataset, cell.encoder, cell.backbone, cell.encoder_params, cell.seed, cell.train, d)
    if key not in originals:
        originals.add(key)
        work.trainings += 1
        work.train_images += epochs * members * area
    enc = registry.encoders.get(cell.encoder) if cell.encoder in registry.encoders else None
    reads: set[str] = set()  # what the cell's auditors read: only that is extracted (bench/features.py)
    for name in cell.auditors:
        aud = registry.auditors.get(name) if name in registry.auditors else None
        if aud is not None and (enc is None or getattr(aud, "requires", frozenset()) <= enc.capabilities):
            reads |= getattr(aud, "reads", READS)
    views_per_image = (("feats" in reads or "class_scores" in reads) + cell.audit.views * ("views" in reads)
                       + OBJECTIVE_DRAWS * 2 * ("loss" in reads))
    for r in range(sc.k):
        gone = per_request * (r + 1)
        retain = members - gone
        work.trainings += 1 + cell.audit.references
        work.train_images += (1 + cell.audit.references) * epochs * retain * area
        audited = 3 + cell.audit.references - 1  # original, retrain, references
        for spec in cell.methods:
            n_ep, needs, cls = _method_epochs(spec)
            if cls is not None and enc is not None and cls.unsupported_reason(enc):
                continue
            audited += spec.name != "retrain"
            if spec.name == "retrain":
                continue
            seen = (retain if "retain" in needs else 0) + (per_request if "forget" in needs else 0)
            work.unlearn_images += n_ep * seen * area
        n_audit = gone + min(cell.audit.max_members, retain) + test
        work.audit_views += audited * n_audit * views_per_image * area


def describe(matrix: Matrix) -> str:
    """One line: the counted work and, where the matrix states throughputs, the time."""
    work = count_work(matrix)
    est = matrix.estimate or {}
    parts = [f"{work.trainings} trainings ({work.train_images:.3g} image-epochs)",
             f"unlearning {work.unlearn_images:.3g} images", f"audits {work.audit_views:.3g} views"]
    if work.unknown:
        parts.append(f"size unknown for {', '.join(work.unknown)}")
    text = ", ".join(parts)
    train_s, infer_s = est.get("train_img_s"), est.get("infer_views_s")
    if train_s and infer_s and not work.unknown:
        secs = work.seconds(float(train_s), float(infer_s))
        gpu = "gpu" in str(est.get("device", "")).lower()
        hours = f"{secs / 3600:,.0f} {'GPU-hours' if gpu else 'h'}"
        when = f"{secs / 60:.0f} min" if secs < 7200 else hours
        text += (f" -> ~{when} on {est.get('device', 'the stated device')} at {train_s} train "
                 f"img/s, {infer_s} audit views/s")
    elif est:
        text += " | estimate: " + ", ".join(f"{k}={v}" for k, v in est.items() if k != "basis")
    return text


def measure_throughput(encoder: str = "simclr", backbone: str = "convnet-s", size: int = 32,
                       precision: str = "bf16", batch_size: int = 256, steps: int = 5,
                       repeats: int = 3, device: str = "auto", threads: int | None = None,
                       params: dict | None = None) -> tuple[float, float]:
    """(training images/s, audit forward views/s) of one process: the best of ``repeats``
    short timings (a shared machine's noise only ever slows a run down).

    On CPU with one thread the clock is the process's CPU time, which is what the work
    takes on an otherwise idle core even while neighbours load the machine; otherwise
    (several threads, or a GPU) it is wall time."""
    import time

    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    from bench.data import Batch
    from bench.device import autocast, place, resolve_device, synchronize
    from bench.encoders.base import DataInfo, build_encoder
    from bench.training import LossWatch, make_optimizer, optimizer_step

    dev = resolve_device(device)
    info = DataInfo(10, tuple(str(i) for i in range(10)), (3, size, size), (0.5,) * 3, (0.25,) * 3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=gen).to(dev)
    batch = Batch(x, torch.zeros(batch_size, dtype=torch.long, device=dev),
                  torch.arange(batch_size, device=dev))
    enc = place(build_encoder(encoder, backbone, info, dict(params or {})), dev)  # as the runner does
    opt = make_optimizer("adam", enc.trainable_parameters(), 1e-3)
    clock = time.process_time if dev.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter

    def sync() -> None:
        synchronize(dev)

    def train_steps() -> None:  # the training loop's own step and loss check (bench/training.py)
        watch = LossWatch()
        for _ in range(steps):
            with autocast(dev, precision):
                loss = enc.objective(batch, gen).mean()
            optimizer_step(enc, opt, loss, watch)
        watch.check()

    def audit_views() -> None:
        with torch.no_grad(), autocast(dev, precision):
            for _ in range(steps):
                enc.project(enc.backbone(enc.augment(x, gen)))

    def best_time(work) -> float:
        work()  # warm-up (allocator, oneDNN / cuDNN kernel choice)
        best = math.inf
        for _ in range(repeats):
            sync()
            t0 = clock()
            work()
            sync()
            best = min(best, clock() - t0)
        return best

    enc.train()
    best_train = best_time(train_steps)
    enc.eval()
    best_infer = best_time(audit_views)
    n = steps * batch_size
    return n / best_train, n / best_infer


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.estimate",
                                 description="measure the throughputs a matrix's estimate uses")
    ap.add_argument("--encoder", default="simclr")
    ap.add_argument("--backbone", default="convnet-s")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--params", default="{}", help="encoder parameters as JSON")
    a = ap.parse_args(argv)
    import json

    tr, inf = measure_throughput(a.encoder, a.backbone, a.size, a.precision, a.batch_size,
                                 a.steps, a.repeats, a.device, a.threads, json.loads(a.params))
    print(f"{a.encoder}/{a.backbone} {a.size}px {a.precision} batch {a.batch_size}: "
          f"train_img_s {tr:.0f} (two views, forward + backward), infer_views_s {inf:.0f} "
          "(per process)")


if __name__ == "__main__":
    main()
