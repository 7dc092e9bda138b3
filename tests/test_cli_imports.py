"""The CLI answers before it needs torch, and one component module that fails to import breaks
only the commands that use it. Checked through ``sys.modules`` and exit codes, never by timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import registry
from bench.cli import main
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import contextlib, io, json, sys
from bench.cli import main
out = {}
for label, argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    out[label] = [rc, err.getvalue().strip(), "torch" in sys.modules]
print(json.dumps(out))
"""


def test_help_and_matrix_refusals_do_not_import_torch(tmp_path):
    """In a fresh interpreter: ``--help``, a YAML syntax error, an unknown top-level key and a
    misspelt method, encoder or auditor are all answered with torch never imported."""
    good = {k: v for k, v in TINY.items() if k != "device"}
    files = {
        "syntax": "datasets: [digits\n",
        "key": yaml.safe_dump({**good, "epochs": 3}),
        "method": yaml.safe_dump({**good, "methods": ["retrain", "fintune"]}),
        "encoder": yaml.safe_dump({**good, "encoders": ["simclrr"]}),
        "auditor": yaml.safe_dump({**good, "auditors": ["linear_prob"]}),
    }
    cases = [["help", ["--help"]]]
    for label, text in files.items():
        (tmp_path / f"{label}.yaml").write_text(text)
        cases.append([label, ["validate", "--matrix", str(tmp_path / f"{label}.yaml")]])
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["help"] == [0, "", False]
    expected = {"syntax": "is not valid YAML", "key": "unknown key 'epochs'", "method": "did you mean 'finetune'",
                "encoder": "did you mean 'simclr'", "auditor": "did you mean 'linear_probe'"}
    for label, text in expected.items():
        rc, err, torch_loaded = got[label]
        assert (rc, torch_loaded) == (2, False), (label, err)
        assert text in err and len(err.splitlines()) == 1, (label, err)


# what validating a matrix never needs: lightly's model/loss modules (and the torchvision and
# torch._dynamo they import) load when a model is built, sklearn's estimators at the first fit
NOT_FOR_VALIDATE = ("lightly", "torchvision", "torch._dynamo", "open_clip", "sklearn.svm", "sklearn.linear_model",
                    "sklearn.metrics", "mlflow", "optuna")

VALIDATE_PROBE = """
import contextlib, io, json, sys
from bench.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    rc = main(["validate", "--matrix", "smoke"])
print(json.dumps([rc, out.getvalue(), sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)]))
"""


def test_validate_smoke_imports_no_training_library(tmp_path):
    """In a fresh interpreter (cwd a scratch folder, so nothing lands in the checkout), validating the
    shipped smoke matrix (digits loaded: torch and sklearn.datasets may load) imports none of NOT_FOR_VALIDATE."""
    proc = subprocess.run([sys.executable, "-c", VALIDATE_PROBE, json.dumps(NOT_FOR_VALIDATE)], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rc, out, loaded = json.loads(proc.stdout)
    assert rc == 0 and "matrix smoke is valid" in out
    assert loaded == []


@pytest.fixture
def broken_method(tmp_path, monkeypatch):
    """A second methods package, on the path and in the method registry, holding a module that
    imports a module that does not exist. Yields the broken file's path as messages show it."""
    pkg = f"_extra_methods_{tmp_path.name.replace('-', '_')}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "broken_one.py").write_text(
        "from dataclasses import dataclass\n"
        "import no_such_package_xyz\n"
        "from bench import Method, register_method\n\n\n"
        "@register_method('_broken_one')\n@dataclass\nclass BrokenOne(Method):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry.methods, "packages", (*registry.methods.packages, pkg))
    yield f"{pkg}/broken_one.py"
    sys.modules.pop(pkg, None)


def test_ls_lists_the_others_and_names_the_broken_module(broken_method, capsys):
    assert main(["ls", "methods"]) == 0
    out, err = capsys.readouterr()
    assert "retrain:" in out and "finetune:" in out and "_broken_one" not in out
    assert err.count("\n") == 1 and broken_method in err
    assert "ModuleNotFoundError: No module named 'no_such_package_xyz'" in err


def test_validate_needs_the_broken_module_only_when_the_matrix_uses_it(broken_method, write_matrix, capsys):
    # torch-only components and no data loading (--dry-run): the point is which modules load
    light = {"encoders": [{"name": "supervised", "backbone": "convnet-s"}], "auditors": ["representation_distance"]}
    assert main(["validate", "--dry-run", "--matrix", str(write_matrix("clean", **light))]) == 0
    assert "is valid" in capsys.readouterr().out
    uses = write_matrix("uses", methods=["retrain", "_broken_one"], **light)
    assert main(["validate", "--dry-run", "--matrix", str(uses)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and broken_method in err and "no_such_package_xyz" in err
