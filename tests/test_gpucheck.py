"""The prepared GPU check and its pieces, on CPU: imports, sizing, time split, data, FLOPs, compile switch."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from bench import gpucheck, perf
from bench.config import ConfigError, Matrix, load_matrix, matrix_from_dict, validate
from bench.estimate import count_work
from bench.registry import auditors
from bench.runner import CellResult, MethodResult
from tests.conftest import TINY

ABSENT_ON_THE_GPU_MACHINE = ("mlflow", "open_clip", "optuna", "scikit_posthocs")


def test_the_check_imports_nothing_the_gpu_machine_lacks():
    """bench.runner and bench.gpucheck, and building every encoder but CLIP, import none of
    mlflow, open_clip, optuna, scikit-posthocs (lightly is carried)."""
    code = (
        "import sys, bench.gpucheck, bench.runner\n"
        "from bench.encoders.base import DataInfo, build_encoder\n"
        "from bench.registry import encoders, methods, auditors, backbones, datasets\n"
        "[r.names() for r in (encoders, methods, auditors, backbones, datasets)]\n"
        "info = DataInfo(10, tuple('0123456789'), (3, 16, 16), (0.5,) * 3, (0.25,) * 3)\n"
        "[build_encoder(n, 'convnet-s', info, {}) for n in encoders.names() if n != 'clip']\n"
        f"print([m for m in {ABSENT_ON_THE_GPU_MACHINE!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]"


def test_the_cell_is_muc_shaped_and_sized_as_documented():
    m = matrix_from_dict(gpucheck.FULL.cell_matrix("cpu"))  # validate() checks a cuda device exists
    validate(m, Path("/nonexistent"), check_data=False)
    (cell,) = m.cells()
    assert (cell.dataset, cell.encoder, cell.backbone) == ("cifar10", "simclr", "resnet18-cifar")
    assert cell.precision == "bf16"
    assert [s.name for s in cell.methods] == ["retrain", "finetune", "gradient_ascent", "alignment_calibration"]
    assert sorted(cell.auditors) == auditors.names()  # every auditor
    assert cell.data.n_train == 10000 and cell.train.batch_size == 512
    work = count_work(m)
    assert work.trainings == 3 and work.train_images == 8 * (10000 + 9000 + 9000)  # the docstring's 224k
    assert work.unlearn_images == 10 * 9000 + 5 * 1000 + 10 * 10000  # 195k, MUC's method budgets
    # at the matrices' assumed H100-class rates the cell's GPU work is well inside the 6 minutes
    est = load_matrix("muc").estimate
    assert work.seconds(est["train_img_s"], est["infer_views_s"]) < 90


def test_the_tiny_plan_is_the_same_cell_smaller():
    full, tiny = gpucheck.FULL.cell_matrix("cpu"), gpucheck.TINY.cell_matrix("cpu")
    assert [str(x) for x in full["methods"]][:1] == [str(x) for x in tiny["methods"]][:1] == ["retrain"]
    assert [next(iter(x)) for x in full["methods"][1:]] == [next(iter(x)) for x in tiny["methods"][1:]]
    assert full["auditors"] == tiny["auditors"] and tiny["data"]["n_train"] < full["data"]["n_train"]


def test_the_wall_time_split_adds_up():
    rows = [MethodResult("original", "reference", "h0", metrics={"TA": 50.0}),
            MethodResult("retrain", "finished", "h1", metrics={"rte_s": 7.0}),
            MethodResult("finetune", "finished", "h2", metrics={"rte_s": 3.0}),
            MethodResult("gradient_ascent", "failed", "h3", reason="NonFiniteLossError: loss became nan"),
            MethodResult("alignment_calibration", "finished", "h4", metrics={"rte_s": 2.5})]
    events = ["trained original in 4.0s (cached as k1)", "trained retrain in 7.0s (cached as k2)",
              "trained reference-0 in 6.5s (cached as k3)", "cache hit: retrain (k2)"]
    out = gpucheck.summarise_cell(CellResult(cell=None, rows=rows, events=events), wall=30.0)
    assert out["trainings"] == {"original": 4.0, "retrain": 7.0, "reference-0": 6.5}
    assert out["training_s"] == 17.5 and out["unlearning_s"] == 5.5  # retrain's rte is its training
    assert out["audits_and_rest_s"] == pytest.approx(7.0)
    assert [r["status"] for r in out["rows"]] == ["reference", "finished", "finished", "failed", "finished"]


def _archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for split in ("train", "test"):
            info = tarfile.TarInfo(f"cifar10/{split}/cat/0000.jpg")
            info.size = 3
            t.addfile(info, io.BytesIO(b"jpg"))
    return path


def test_cifar10_is_unpacked_once_from_the_archive(tmp_path):
    archive = _archive(tmp_path / gpucheck.ARCHIVE)
    root = tmp_path / "data"
    assert gpucheck.ensure_cifar10(root, archive) >= 0
    assert (root / "cifar10" / "train" / "cat" / "0000.jpg").read_bytes() == b"jpg"
    archive.unlink()
    assert gpucheck.ensure_cifar10(root, None) == 0.0  # there already: no archive needed
    with pytest.raises(FileNotFoundError, match="pass --archive"):
        gpucheck.ensure_cifar10(tmp_path / "empty", tmp_path / "missing.tar.gz")


class Linear(torch.nn.Module):
    """A one-layer 'encoder' whose model step has a known FLOP count."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.lin = torch.nn.Linear(d_in, d_out, bias=False)

    def pair_loss(self, v1, v2, batch):
        return self.lin(v1.flatten(1)).sum(1)


def test_model_flops_counts_forward_and_weight_gradient():
    enc, b, d_in, d_out = Linear(48, 5), 4, 48, 5
    v = torch.randn(b, 3, 4, 4)
    flops = perf.model_flops(enc, v, v, None, torch.device("cpu"), "fp32")
    assert flops == 2 * b * d_in * d_out * 2  # forward matmul + weight gradient (the input needs none)
    assert enc.lin.weight.grad is None  # the count leaves no gradient behind


def test_mfu_and_step_clock():
    row = perf.PerfRow("simclr", "resnet18-cifar", "bf16", 512, full_step_s=0.5, model_step_s=0.25,
                       model_flops=989e12 * 0.1, peak_tflops=989.0)
    assert row.mfu(row.full_step_s) == pytest.approx(0.2) and row.mfu(row.model_step_s) == pytest.approx(0.4)
    assert row.full_img_s == 1024 and row.ratio == 2.0
    assert row.as_dict()["mfu_full"] == pytest.approx(0.2)
    clock = perf.StepClock(torch.device("cpu"))
    for _ in range(3):
        clock.time(lambda: None)
    assert len(clock.seconds()) == 3 and all(s >= 0 for s in clock.seconds())


def test_main_writes_json_after_each_part_and_a_failed_part_loses_no_other(tmp_path, monkeypatch):
    def boom(plan, device):
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(gpucheck, "count_syncs", boom)
    already = {m for m in ("mlflow", "open_clip", "optuna", "scikit_posthocs") if m in sys.modules}  # other tests
    out = tmp_path / "g.json"
    assert gpucheck.main(["--device", "cpu", "--tiny", "--parts", "syncs", "estimate", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["syncs"] == {"error": "RuntimeError: no C compiler"}
    assert set(report["part_s"]) == {"syncs", "estimate"}
    assert report["plan"] == "tiny" and report["machine"]["device"] == "cpu"
    assert set(report["estimate"]) == {"simclr", "moco_v2"}
    simclr = report["estimate"]["simclr"]
    assert simclr["train_img_s"] > 0 and set(simclr["hours"]) == {"muc", "full"}
    assert simclr["train_gflop_per_img"] == pytest.approx(6.66 / 4, rel=0.01)  # 16 px: a quarter of 32 px
    assert {m for m, loaded in report["imported"].items() if loaded} <= already  # the check itself imports none


# --------------------------------------------------------------------------- the compile switch


def test_compile_is_recorded_but_not_part_of_any_identity(tmp_path):
    plain = matrix_from_dict({**TINY, "name": "c"})
    compiled = matrix_from_dict({**TINY, "name": "c", "compile": True})
    assert plain.compile is False and compiled.compile is True
    a, b = plain.cells()[0], compiled.cells()[0]
    assert b.compile and not a.compile
    assert a.identity() == b.identity()  # the model cache key
    assert [a.method_hash(s) for s in a.methods] == [b.method_hash(s) for s in b.methods]  # resume
    from bench.tracking import cell_params

    assert cell_params(b)["compile"] is True and cell_params(a)["compile"] is False
    with pytest.raises(ConfigError, match="'compile' must be true or false"):
        matrix_from_dict({**TINY, "name": "c", "compile": "yes"})
    assert Matrix.__dataclass_fields__["compile"].default is False


def test_run_compile_flag_reaches_the_matrix(tmp_path, monkeypatch):
    from bench import driver
    from bench.cli import build_parser

    args = build_parser().parse_args(["run", "--matrix", "smoke", "--compile"])
    assert args.compile is True
    assert build_parser().parse_args(["run", "--matrix", "smoke"]).compile is False
    path = tmp_path / "m.yaml"
    import yaml

    path.write_text(yaml.safe_dump({**TINY, "name": "m"}))
    matrix, _ = driver.prepare(driver.RunOptions(matrix=str(path), compile=True))
    assert matrix.compile is True and matrix.cells()[0].compile is True


def test_the_runner_compiles_the_backbone_only_when_asked(monkeypatch, tmp_path):
    import bench.runner as runner

    seen = []
    monkeypatch.setattr(runner, "compile_backbone", lambda enc: seen.append(enc) or enc)
    for flag in (False, True):
        cell = matrix_from_dict({**TINY, "name": "c", "compile": flag}).cells()[0]
        enc = runner.CellRunner(cell, tmp_path).new_encoder(0)
        assert (seen[-1] is enc) if flag else not seen
    assert len(seen) == 1
