"""The method contract: a dataclass of hyperparameters with one ``unlearn(ctx)``.

A method declares the data it needs (``needs``) and the encoder capabilities it
requires (``requires``); the runner hands it an :class:`~bench.context.UnlearnContext`
holding exactly that and skips (with a logged reason) encoders it cannot run on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from bench.registry import methods

if TYPE_CHECKING:
    from bench.context import UnlearnContext
    from bench.encoders.base import Encoder

NEEDS = ("forget", "retain", "val", "original", "labels")


class Method:
    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[frozenset[str]] = frozenset()
    supervised_only: ClassVar[bool] = False
    version: ClassVar[int] = 1  # bump when a change alters what the method computes: its rows rerun

    def unlearn(self, ctx: UnlearnContext) -> None:
        raise NotImplementedError

    @classmethod
    def unsupported_reason(cls, encoder: type[Encoder] | Encoder) -> str | None:
        """None if the method can run on this encoder, else why not."""
        missing = sorted(set(cls.requires) - set(encoder.capabilities))
        if missing:
            return f"{cls.name} requires encoder capabilities {missing}"
        return None

    def hparams(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


def register_method(
    name: str, needs: tuple[str, ...] = ("forget",), requires: tuple[str, ...] = (), **meta: Any
) -> Callable[[type[Method]], type[Method]]:
    """Register a method class (apply *above* ``@dataclass``)."""
    bad = [n for n in needs if n not in NEEDS]
    if bad:
        raise ValueError(f"method {name}: unknown needs {bad}; choose from {NEEDS}")

    def deco(cls: type[Method]) -> type[Method]:
        cls.name = name
        cls.needs = tuple(needs)
        cls.requires = frozenset(requires)
        return methods.register(name, needs=tuple(needs), requires=tuple(requires), **meta)(cls)

    return deco
