import importlib
import importlib.metadata
import sys
from dataclasses import dataclass

import pytest

from bench import Method, register_method
from bench.registry import BrokenComponentError, Registry, UnknownNameError, methods


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError) as e:
        methods.get("fintune")
    msg = str(e.value)
    assert "unknown method 'fintune'" in msg and "did you mean 'finetune'?" in msg


def test_unknown_name_without_close_match_lists_known():
    with pytest.raises(UnknownNameError) as e:
        methods.get("zzzzzz")
    assert "did you mean" not in str(e.value) and "retrain" in str(e.value)


def test_shipped_names_are_read_from_source():
    reg: Registry = Registry("method", packages=("methods",))
    assert {"retrain", "finetune", "gradient_ascent"} <= set(reg.names())  # no decorator ran for reg


@pytest.fixture
def things(tmp_path, monkeypatch):
    """A throwaway package ``<pkg>`` whose ``__init__`` holds a registry of kind "thing" (decorator
    ``register_thing``); ``add(module, source)`` writes one of its modules. Removed from
    ``sys.modules`` afterwards."""
    pkg = f"_things_{tmp_path.name.replace('-', '_')}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text(
        "from bench.registry import Registry\n"
        f"things = Registry('thing', ({pkg!r},), 'unlearn_bench.test_things')\n"
        "register_thing = things.register\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def add(module: str, source: str) -> None:
        (tmp_path / pkg / f"{module}.py").write_text(source.replace("PKG", pkg))

    yield pkg, add
    for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[name]


def _loaded(pkg: str) -> set[str]:
    return {m.removeprefix(pkg + ".") for m in sys.modules if m.startswith(pkg + ".")}


def test_names_and_did_you_mean_need_no_import(things):
    pkg, add = things
    add("good", "from PKG import register_thing\n@register_thing('alpha', colour='red')\nclass A: pass\n")
    add("heavy", "raise RuntimeError('imported')\nfrom PKG import register_thing\n"
                 "@register_thing(name='beta')\nclass B: pass\n")
    reg = importlib.import_module(pkg).things
    assert reg.names() == ["alpha", "beta"] and "beta" in reg and "gamma" not in reg
    with pytest.raises(UnknownNameError, match="did you mean 'alpha'"):
        reg.get("alpah")
    assert _loaded(pkg) == set()  # nothing imported for names, membership or the suggestion
    assert reg.entry("alpha").meta == {"colour": "red"}
    assert _loaded(pkg) == {"good"}  # only the module that declares the name used


def test_a_module_that_fails_to_import_is_named_and_the_rest_still_work(things):
    pkg, add = things
    add("good", "from PKG import register_thing\n@register_thing('alpha')\nclass A: pass\n")
    add("broken", "from PKG import register_thing\n@register_thing('beta')\nclass B: pass\n"
                  "import no_such_module_xyz\n")
    add("garbled", "def (:\n")
    reg = importlib.import_module(pkg).things
    with pytest.raises(BrokenComponentError) as e:
        reg.get("beta")
    msg = str(e.value)
    assert "\n" not in msg and f"{pkg}/broken.py" in msg
    assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in msg
    assert [x.name for x in reg] == ["alpha"]  # beta registered before the failing line: dropped
    assert len(reg.broken) == 2 and any("garbled.py: SyntaxError" in b for b in reg.broken)
    with pytest.raises(UnknownNameError, match="could not import: .*garbled.py"):
        reg.get("delta")  # maybe it was in the garbled file: the message says so


def test_computed_names_and_plugins_are_found_by_importing(things, monkeypatch):
    pkg, add = things
    add("computed", "from PKG import register_thing\nNAME = 'al' + 'pha'\n@register_thing(NAME)\nclass A: pass\n")
    reg = importlib.import_module(pkg).things

    class Plugin:
        name, value = "gamma", "third_party:gamma"

        @staticmethod
        def load():
            reg.register("gamma")(int)

    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [Plugin] if group == "unlearn_bench.test_things" else [])
    assert reg.get("alpha").__name__ == "A" and reg.get("gamma") is int


def test_double_registration_is_an_error():
    reg: Registry = Registry("thing")
    reg.register("a")(int)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(float)


def test_register_method_sets_declarations():
    @register_method("_test_declared", needs=("forget", "original"), requires=("logits",))
    @dataclass
    class Declared(Method):
        lr: float = 0.1

    assert Declared.needs == ("forget", "original")
    assert Declared.requires == frozenset({"logits"})
    assert methods.get("_test_declared") is Declared
    with pytest.raises(ValueError, match="unknown needs"):
        register_method("_test_bad", needs=("everything",))
