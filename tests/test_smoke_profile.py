"""The profile's timers count each part's own time: a nested part is not counted twice."""

from __future__ import annotations

import pytest

import bench.smoke_profile as sp


def test_nested_parts_are_exclusive(monkeypatch: pytest.MonkeyPatch):
    clock = iter([0.0, 1.0, 4.0, 6.0, 7.0, 7.5, 10.0])  # enter a, enter b, leave b, enter b, leave b, leave a
    monkeypatch.setattr(sp.time, "perf_counter", lambda: next(clock))
    t = sp.Timers()
    with t.part("a"):  # 0
        with t.part("b"):  # 1 .. 4
            pass
        with t.part("b"):  # 6 .. 7
            pass
    # leave a at 7.5; a's own time: 0-1, 4-6, 7-7.5
    assert t.seconds == {"a": 3.5, "b": 4.0} and t.calls == {"a": 1, "b": 2}


def test_wrap_times_a_function_once():
    class Owner:
        @staticmethod
        def work(x: int) -> int:
            return x + 1

    before = sp.TIMERS.calls.get("work part", 0)
    sp._wrap(Owner, "work", "work part")
    sp._wrap(Owner, "work", "work part")  # idempotent: installing twice must not double-count
    assert Owner.work(1) == 2
    assert sp.TIMERS.calls["work part"] == before + 1
