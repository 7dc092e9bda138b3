"""``python -m bench.gpucheck``: the GPU path measured in one short, prepared run.

One command prints and writes as JSON (``--out``) these parts, in this order, the JSON
rewritten after each so a run cut short still returns what it measured:

1. ``syncs``: host-device synchronisations per training step (``train_encoder``, SimCLR and
   MoCo v2 on resnet18-cifar, bf16), counted by ``torch.cuda.set_sync_debug_mode("warn")``,
   with the source lines that synchronise (CUDA only: on CPU nothing synchronises).
2. ``estimate``: ``bench.estimate.measure_throughput`` (training images/s and audit views/s)
   for the ``muc`` encoders, each with its MFU, and the ``muc`` and ``full`` matrices'
   costs recomputed from them (``count_work`` x the measured rates).
3. ``perf``: ``bench.perf`` rows for resnet18-cifar and convnet-s, SimCLR, MoCo v2 and
   supervised, bf16 and fp32: full step and model step img/s and MFU (model FLOPs counted by
   ``FlopCounterMode``, against ``--peak-tflops``, default the H200's dense bf16 989).
4. ``cell``: one reduced ``muc``-shaped cell end to end through ``bench.runner.run_cell``
   (plain data, no MLflow): CIFAR-10 from the shared JPEG archive, SimCLR on
   resnet18-cifar, 10,000 members, retrain + finetune + gradient_ascent +
   alignment_calibration at MUC's method budgets, every auditor, bf16; its wall time split
   into training (the "trained ..." events), unlearning (the methods' ``rte_s``) and the
   rest (feature extraction, auditors, figures).
5. ``compile`` (only when named in ``--parts``; last, so a time limit cuts it first): the
   SimCLR resnet18-cifar bf16 perf row eager and with the backbone ``torch.compile``'d
   (``run --compile``), the first step's time including the compilation.

Sizing (the whole command must finish in <= 6 minutes on an H200, so that a rerun fits a
15-minute GPU budget with start and idle time). One SimCLR training image on
resnet18-cifar at 32 px is 6.66 GFLOP (two views, forward + backward, counted by
FlopCounterMode); a forward audit view is 1.11 GFLOP. The cell trains 3 models (original,
retrain, one reference) for 8 epochs on 10,000 / 9,000 / 9,000 images (224k image-epochs,
1.5 PFLOP) and unlearns with MUC's budgets (finetune 10 epochs of D_r, 90k images;
gradient_ascent 5 of D_f, 5k; alignment_calibration 10 of D_r + D_f, 100k: 1.3 PFLOP).
Audit sizes are cut to 3,000 members and 3,000 test images (MUC: 10,000 and 10,000): the
CPU auditors' cost grows with the square of those counts (cmia's RBF SVCs), measured at
about 52 s of one CPU core per audited model at MUC's sizes against 7 s at these; so 6
models x 22k forward views = 0.15 PFLOP on the GPU and about 35 s of CPU. At the
throughput the matrices assume (10,000 train img/s = 67 TFLOP/s, 7 % of the bf16 peak;
60,000 audit views/s) the cell takes about 45 s of training and unlearning, a few s of
GPU audit and about 35 s of CPU audit; parts 1-3 about 1 minute; data 20 s: about 2.5
minutes, so even 2x slower than assumed fits in 6. Each method also stops on a 90 s time
budget, and ``timeout 360`` ends the command at 6 minutes whatever happens: part 5
(compilation, perhaps a minute) is last so that it is what such a cut loses.

The GPU machine has torch, torchvision, numpy, scipy, scikit-learn, pandas, matplotlib,
tqdm, pyyaml and filelock but not lightly (nor MLflow, open_clip, optuna,
scikit-posthocs: none is imported here). Carried wheels, in ``.whl/`` (git-ignored), listed
in ``bench/gpucheck_wheels.txt``: ``lightly-1.6.0-py3-none-any.whl`` (pure Python). lightly's
declared dependencies (pytorch_lightning, hydra-core) are not needed: ``lightly/__init__``
and the modules the suite imports (lightly.loss, lightly.models.modules,
lightly.models.utils, lightly.utils.scheduler) import with torch, torchvision and numpy
alone (measured in a venv with only the GPU machine's packages). A pure-Python wheel is a
zip that Python imports from as it is, so the command puts it on ``PYTHONPATH`` and
installs nothing (``pip install --no-index --no-deps .whl/*.whl`` works as well, where pip
may write to the environment). Prepare here, once::

    pip download --no-deps -d .whl lightly==1.6.0
    cp /work/shared/data/cifar10-jpeg.tar.gz .whl/     # 19.8 MB; the whole carry is 20.1 MB

The prepared command (device run: ``carry: [".whl"]``, ``timeout_s: 420``)::

    PYTHONPATH=.:.whl/lightly-1.6.0-py3-none-any.whl timeout 360 python -m bench.gpucheck \\
      --device cuda --archive .whl/cifar10-jpeg.tar.gz --parts syncs estimate perf cell compile \\
      --out $OUT/gpucheck.json

Rehearsed here on CPU, the same command with ``--device cpu --tiny`` (toy sizes, convnet-s
for the cell; 324 s and 548 s on 2 shared cores, all five parts) in a venv holding only
the GPU machine's packages.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import re
import sys
import tarfile
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch

from bench.device import place, resolve_device

H200_BF16_TFLOPS = 989.0
MUC_ENCODERS = (("simclr", {}), ("moco_v2", {"memory_bank": 4096}))
ARCHIVE = "cifar10-jpeg.tar.gz"
ARCHIVE_PLACES = (Path(".whl"), Path("shared/data"), Path("../shared/data"), Path("/work/shared/data"))
TRAINED = re.compile(r"^trained (\S+) in ([0-9.]+)s")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How big each part is: ``FULL`` for the GPU, ``TINY`` for a CPU rehearsal."""

    perf_backbones: tuple[str, ...] = ("resnet18-cifar", "convnet-s")
    perf_encoders: tuple[str, ...] = ("simclr", "moco_v2", "supervised")
    precisions: tuple[str, ...] = ("bf16", "fp32")
    size: int = 32
    batch_size: int = 512
    perf_steps: int = 10
    perf_warmup: int = 3
    estimate_steps: int = 5
    estimate_repeats: int = 3
    sync_steps: int = 32
    cell_backbone: str = "resnet18-cifar"
    epochs: int = 8
    n_train: int = 10000
    n_val: int = 5000
    n_test: int = 3000
    method_epochs: tuple[int, int, int] = (10, 5, 10)  # finetune, gradient_ascent, alignment_calibration (MUC)
    views: int = 10
    max_members: int = 3000
    audit_batch: int = 1024
    time_limit_s: float = 90.0

    def cell_matrix(self, device: str) -> dict[str, Any]:
        """The reduced muc-shaped matrix of part 4, as YAML would give it."""
        ft, ga, ac = self.method_epochs
        return {
            "name": "gpucheck",
            "datasets": ["cifar10"],
            "encoders": [{"name": "simclr", "backbone": self.cell_backbone}],
            "scenarios": ["random:0.1"],
            "seeds": [0],
            "methods": ["retrain", {"finetune": {"epochs": ft, "lr": 0.01}},
                        {"gradient_ascent": {"epochs": ga, "lr": 0.0001}},
                        {"alignment_calibration": {"epochs": ac, "lr": 0.006, "alpha": 1.0, "beta": 0.0}}],
            "auditors": _all_auditors(),
            "train": {"epochs": self.epochs, "batch_size": self.batch_size, "lr": 0.06, "optimizer": "sgd",
                      "momentum": 0.9, "weight_decay": 0.0005, "schedule": "cosine"},
            "data": {"n_val": self.n_val, "n_train": self.n_train, "n_test": self.n_test},
            "audit": {"views": self.views, "max_members": self.max_members, "references": 1,
                      "batch_size": self.audit_batch},
            "precision": "bf16",
            "device": device,
            "time_limit_s": self.time_limit_s,
        }


FULL = Plan()
TINY = Plan(size=16, batch_size=8, perf_steps=2, perf_warmup=1, estimate_steps=1, estimate_repeats=1,
            sync_steps=4, cell_backbone="convnet-s", epochs=1, n_train=200, n_val=50, n_test=100,
            method_epochs=(1, 1, 1), views=2, max_members=100, audit_batch=64, time_limit_s=60.0)


def _all_auditors() -> list[str]:
    from bench.registry import auditors

    return auditors.names()  # an auditor the encoder cannot feed (zero_shot: text) is skipped by the runner


# --------------------------------------------------------------------------- parts


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "float32_matmul_precision": torch.get_float32_matmul_precision(),
                            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                            "cudnn_benchmark": torch.backends.cudnn.benchmark}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                 "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version()}
    return info


def _random_view(n: int, size: int, device: torch.device):
    from bench.data import DataView

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return DataView(x, torch.randint(0, 10, (n,), generator=g), torch.arange(n), "train").to(device)


def count_syncs(plan: Plan, device: torch.device) -> list[dict[str, Any]]:
    """Synchronisations per step of ``train_encoder`` (after a warm-up run), with their sources."""
    from bench.config import TrainBudget
    from bench.encoders.base import DataInfo, build_encoder
    from bench.training import train_encoder

    info = DataInfo(10, tuple(str(c) for c in range(10)), (3, plan.size, plan.size), (0.5,) * 3, (0.25,) * 3)
    view = _random_view(plan.batch_size * plan.sync_steps, plan.size, device)
    budget = TrainBudget(epochs=1, batch_size=plan.batch_size, lr=0.01, optimizer="sgd")
    rows = []
    for name, params in MUC_ENCODERS:
        enc = place(build_encoder(name, "resnet18-cifar", info, dict(params)), device)
        train_encoder(enc, view, budget, device, "bf16", seed=0)  # warm-up: lazy init may sync
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            try:
                train_encoder(enc, view, budget, device, "bf16", seed=1)
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
        syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
        where = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
        rows.append({"encoder": name, "steps": plan.sync_steps, "syncs": len(syncs),
                     "syncs_per_step": len(syncs) / plan.sync_steps, "sources": dict(where.most_common(10)),
                     "counted": device.type == "cuda"})
    return rows


def estimate(plan: Plan, device: torch.device, peak_tflops: float) -> dict[str, Any]:
    """The matrices' two throughputs, measured, and the muc and full costs they give."""
    from bench.config import load_matrix
    from bench.estimate import count_work, measure_throughput

    works = {name: count_work(load_matrix(name)) for name in ("muc", "full")}
    out: dict[str, Any] = {}
    for name, params in MUC_ENCODERS:
        train, infer = measure_throughput(name, "resnet18-cifar", plan.size, "bf16", plan.batch_size,
                                          plan.estimate_steps, plan.estimate_repeats, str(device), params=params)
        per_image = _flops_per_image(name, params, plan.size, device)
        out[name] = {"train_img_s": train, "infer_views_s": infer, "train_gflop_per_img": per_image / 1e9,
                     "train_mfu": train * per_image / (peak_tflops * 1e12),
                     "hours": {m: w.seconds(train, infer) / 3600 for m, w in works.items()}}
    return out


def _flops_per_image(name: str, params: dict, size: int, device: torch.device, n: int = 8) -> float:
    from bench.encoders.base import DataInfo, build_encoder
    from bench.perf import make_batches, model_flops

    info = DataInfo(10, tuple(str(c) for c in range(10)), (3, size, size), (0.5,) * 3, (0.25,) * 3)
    enc = place(build_encoder(name, "resnet18-cifar", info, dict(params)), device).train()
    b = make_batches(1, n, size, 10, 0)[0]
    b = dataclasses.replace(b, x=b.x.to(device), y=b.y.to(device), idx=b.idx.to(device))
    g = torch.Generator().manual_seed(0)
    return model_flops(enc, enc.augment(b.x, g), enc.augment(b.x, g), b, device, "bf16") / n


def perf(plan: Plan, device: torch.device, peak_tflops: float) -> list[dict[str, Any]]:
    from bench import perf as bench_perf

    rows = bench_perf.run(plan.perf_encoders, plan.perf_backbones, plan.precisions, plan.size, plan.batch_size,
                          plan.perf_steps, plan.perf_warmup, device, peak_tflops=peak_tflops,
                          on_row=lambda r: print(bench_perf.table([r])[-1], flush=True),
                          header=f"perf: batch {plan.batch_size}, {plan.size}x{plan.size}, "
                                 f"median of {plan.perf_steps} steps after {plan.perf_warmup}")
    return [r.as_dict() for r in rows]


def compiled_perf(plan: Plan, device: torch.device, peak_tflops: float) -> list[dict[str, Any]]:
    """Part 5 (last: it may not fit): the SimCLR resnet18-cifar bf16 perf row with the
    backbone torch.compile'd, against the same row eager; ``first_step_s`` includes the
    compilation."""
    from bench import perf as bench_perf

    rows = [bench_perf.run(["simclr"], ["resnet18-cifar"], ["bf16"], plan.size, plan.batch_size, plan.perf_steps,
                           plan.perf_warmup, device, peak_tflops=peak_tflops, compile=c)[0] for c in (False, True)]
    print("\n".join(bench_perf.table(rows)), flush=True)
    return [r.as_dict() for r in rows]


def find_archive(given: Path | None) -> Path | None:
    if given is not None:
        return given
    return next((p / ARCHIVE for p in ARCHIVE_PLACES if (p / ARCHIVE).is_file()), None)


def ensure_cifar10(root: Path, archive: Path | None) -> float:
    """CIFAR-10 under ``root`` (unpacking the shared JPEG archive if it is not there yet);
    returns the seconds spent unpacking."""
    from bench.datasets._folder import has_split_tree

    if has_split_tree(root / "cifar10") or (root / "cifar-10-batches-py").is_dir():
        return 0.0
    found = find_archive(archive)
    if found is None or not found.is_file():
        raise FileNotFoundError(f"gpucheck: no CIFAR-10 under {root} and no {ARCHIVE} (looked in "
                         f"{', '.join(str(p) for p in ARCHIVE_PLACES)}): pass --archive PATH")
    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(found) as t:
        t.extractall(root, filter="data")
    return time.perf_counter() - t0


def cell(plan: Plan, device: torch.device, data_root: Path, archive: Path | None,
         cache_dir: Path | None) -> dict[str, Any]:
    """Part 4: the reduced muc-shaped cell, timed and split."""
    from bench.config import matrix_from_dict, validate
    from bench.data import load_dataset
    from bench.runner import run_cell

    unpack_s = ensure_cifar10(data_root, archive)
    t0 = time.perf_counter()
    load_dataset("cifar10", data_root, cache=cache_dir)  # decodes the JPEGs once (then cached): not the cell's time
    load_s = time.perf_counter() - t0
    matrix = matrix_from_dict(plan.cell_matrix(str(device)))
    validate(matrix, data_root)
    (the_cell,) = matrix.cells(str(data_root))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="gpucheck-cache-") as tmp:
        t0 = time.perf_counter()
        result = run_cell(the_cell, cache_dir or Path(tmp))
        wall = time.perf_counter() - t0
    return summarise_cell(result, wall) | {
        "unpack_s": unpack_s, "data_load_s": load_s, "matrix": plan.cell_matrix(str(device)),
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def summarise_cell(result, wall: float) -> dict[str, Any]:
    """Wall-time split of a CellResult: training from the runner's "trained <role> in <s>s"
    events, unlearning from the methods' ``rte_s`` (retrain's is its cached training, counted
    under training already), audits and the rest (feature extraction, auditors, figures,
    data views, cache writes) as what remains."""
    trained = {}
    for e in result.events:
        m = TRAINED.match(e)
        if m:
            trained[m.group(1)] = float(m.group(2))
    unlearn = {r.method: r.metrics["rte_s"] for r in result.rows
               if r.status == "finished" and r.method not in ("original", "retrain") and "rte_s" in r.metrics}
    train_s, unlearn_s = sum(trained.values()), sum(unlearn.values())
    rows = [{"method": r.method, "status": r.status, "reason": r.reason,
             "metrics": {k: round(v, 4) for k, v in r.metrics.items()}} for r in result.rows]
    return {"wall_s": wall, "training_s": train_s, "unlearning_s": unlearn_s,
            "audits_and_rest_s": wall - train_s - unlearn_s, "trainings": trained, "unlearning": unlearn,
            "error": result.error, "rows": rows}


# --------------------------------------------------------------------------- command


PARTS = ("syncs", "estimate", "perf", "cell", "compile")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpucheck", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ap.add_argument("--tiny", action="store_true", help="toy sizes: a CPU rehearsal of the same code paths")
    ap.add_argument("--parts", nargs="+", default=list(PARTS[:-1]), choices=PARTS,
                    help="default: all but compile (its compilation time is not sized into the 6 minutes)")
    ap.add_argument("--out", type=Path, default=Path("gpucheck.json"), help="JSON written after every part")
    ap.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS,
                    help="the GPU's dense bf16 peak for MFU (default: H200, 989)")
    ap.add_argument("--archive", type=Path, default=None, help=f"the CIFAR-10 {ARCHIVE} (default: searched)")
    ap.add_argument("--data-root", type=Path, default=Path(".bench_cache/gpucheck/data"))
    ap.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: a fresh temporary one)")
    a = ap.parse_args(argv)
    device = resolve_device(a.device)
    plan = TINY if a.tiny else FULL
    t0 = time.perf_counter()
    report: dict[str, Any] = {"command": " ".join(["python -m bench.gpucheck", *(argv if argv is not None
                                                                              else sys.argv[1:])]),
                              "plan": "tiny" if a.tiny else "full", "peak_tflops": a.peak_tflops,
                              "machine": machine(device)}
    runs = {"syncs": lambda: count_syncs(plan, device), "estimate": lambda: estimate(plan, device, a.peak_tflops),
            "perf": lambda: perf(plan, device, a.peak_tflops),
            "cell": lambda: cell(plan, device, a.data_root, a.archive, a.cache_dir),
            "compile": lambda: compiled_perf(plan, device, a.peak_tflops)}
    failed: list[str] = []
    for part in a.parts:
        start = time.perf_counter()
        print(f"== {part}", flush=True)
        try:
            report[part] = runs[part]()
        except Exception as e:  # a part that fails (e.g. no C compiler for Triton) must not lose the others
            report[part] = {"error": "".join(traceback.format_exception_only(type(e), e)).strip()[:2000]}
            failed.append(part)
        report.setdefault("part_s", {})[part] = time.perf_counter() - start
        report["wall_s"] = time.perf_counter() - t0
        report["imported"] = {m: m in sys.modules for m in ("mlflow", "open_clip", "optuna", "scikit_posthocs")}
        _write(a.out, report)
        if part in failed or part not in ("perf", "compile"):  # these printed their tables already
            print(json.dumps(report[part], indent=1, default=str)[:4000], flush=True)
    print(f"== done in {report['wall_s']:.0f}s; JSON: {a.out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
