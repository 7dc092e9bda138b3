"""Import structure: the report room never imports the runner, methods,
auditors or executors (nor bench.tracking, which imports the runner), and bench/ has no import
circle. Imports inside functions count."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("bench.runner", "bench.executors", "bench.tracking", "methods", "audits")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False, modules: frozenset[str] = frozenset()) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, at top level or inside functions.
    ``from a import b`` yields ``a`` and ``a.b``; only ``a.b`` when it is one of ``modules`` (importing
    a submodule runs no code of its package that the package itself could not have run first)."""
    package = module if is_package else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names}
            out |= subs if subs <= modules else subs | {base}
    return out


def bench_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / "bench").rglob("*.py")}
    names = frozenset(files)
    return {m: {i for i in imports_of(p.read_text(), m, p.name == "__init__.py", names) if i in files and i != m}
            for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of ``graph`` (module -> modules it imports), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str]:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [m, d] if d in path else [m, d]
            if d not in state:
                found = visit(d, path + [m])
                if found:
                    return found
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [])
            if found:
                return found
    return []


def test_report_room_imports_no_runner_methods_audits_or_executors():
    bad = {}
    for p in (ROOT / "bench" / "report").rglob("*.py"):
        mods = imports_of(p.read_text(), module_name(p), p.name == "__init__.py")
        hits = {i for i in mods if any(i == f or i.startswith(f + ".") for f in FORBIDDEN)}
        if hits:
            bad[module_name(p)] = sorted(hits)
    assert bad == {}


def test_bench_has_no_import_cycle():
    graph = bench_graph()
    assert "bench.report.leaderboard" in graph and "bench.runner" in graph["bench.driver"]
    assert find_cycle(graph) == []


def test_the_checker_sees_lazy_and_relative_imports_and_cycles():
    src = "import os\ndef f():\n    from bench.runner import CellRunner\n    from . import flags\n"
    found = imports_of(src, "bench.report.x")
    assert {"os", "bench.runner", "bench.report.flags"} <= found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
