from dataclasses import dataclass

import pytest

from bench import Method, register_method
from bench.registry import Registry, UnknownNameError, methods


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError) as e:
        methods.get("fintune")
    msg = str(e.value)
    assert "unknown method 'fintune'" in msg and "did you mean 'finetune'?" in msg


def test_unknown_name_without_close_match_lists_known():
    with pytest.raises(UnknownNameError) as e:
        methods.get("zzzzzz")
    assert "did you mean" not in str(e.value) and "retrain" in str(e.value)


def test_lazy_discovery_imports_package_on_first_lookup():
    reg: Registry = Registry("thing", packages=("methods",))
    assert reg._loaded is False
    reg.names()  # imports methods/*; their decorators target the global registry, not this one
    assert reg._loaded is True
    assert {"retrain", "finetune", "gradient_ascent"} <= set(methods.names())


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
