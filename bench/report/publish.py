"""Provenance of a run, and publishing a matrix's leaderboard into a documentation page.

A published number must say where it came from without anyone typing it: the
driver stores the exact command, the git commit, the machine and (at the end) the
wall time as tags on the invocation's MLflow parent run, and ``python -m bench
report --benchmarks docs/leaderboards.md`` writes the leaderboard plus those tags between
``<!-- leaderboard:<matrix>:start -->`` and ``<!-- leaderboard:<matrix>:end -->`` of that page
(``bench.control`` writes its blocks the same way).
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SECTION = "<!-- section: leaderboards -->"


def command_line(argv: Sequence[str] | None = None, module: str = "bench") -> str:
    """The invocation as a user would retype it (``python -m <module> ...``), with ``BENCH_DATA``
    when it is set (it decides which data the run read)."""
    argv = list(sys.argv if argv is None else argv)
    prog = Path(argv[0]).name if argv else ""
    as_module = ("__main__.py", module, "", module.rsplit(".", 1)[-1] + ".py")
    head = ["python", "-m", module] if prog in as_module else [prog]
    env = f"BENCH_DATA={shlex.quote(os.environ['BENCH_DATA'])} " if os.environ.get("BENCH_DATA") else ""
    return env + shlex.join(head + argv[1:])


def git_commit(path: Path | None = None) -> str:
    """The checkout's commit (short hash, ``+dirty`` with uncommitted changes), or ``unknown``."""
    where = str(path or Path(__file__).resolve().parent.parent)
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "auto") -> str:
    """CPU model and cores, memory, accelerator, OS and torch version, in one line."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"{cpu_model()} ({cores} cores)"]
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        parts.append(f"{mem:.0f} GiB RAM")
    except (ValueError, OSError, AttributeError):
        pass
    if device != "cpu" and torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    else:
        parts.append("no GPU used")
    parts += [f"{platform.system()} {platform.release()}", f"Python {platform.python_version()}",
              f"torch {torch.__version__} ({torch.get_num_threads()} threads)"]
    return ", ".join(parts)


def provenance_tags(device: str = "auto", argv: Sequence[str] | None = None) -> dict[str, str]:
    """Tags for the invocation's parent run, written when it starts."""
    return {"bench.command": command_line(argv), "bench.commit": git_commit(),
            "bench.machine": machine(device)}


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def wall_seconds(inv: Mapping[str, Any]) -> float | None:
    """An invocation's wall time: its ``bench.wall_s`` tag (rewritten after every cell, so a
    killed run keeps the time to its last cell), else, for stores written before that, the
    time from its start to its last logged result (``last_result``, ms), else None."""
    wall = inv.get("tags", {}).get("bench.wall_s")
    if wall:
        return float(wall)
    if inv.get("last_result"):
        return (inv["last_result"] - inv.get("start_time", 0)) / 1000
    return None


def invocations_markdown(invocations: Sequence[Mapping[str, Any]]) -> list[str]:
    """A table of the invocations whose rows the leaderboard shows, oldest first."""
    lines = ["| date (UTC) | command | commit | machine | wall time | models trained / from cache |",
             "|---|---|---|---|---|---|"]
    for inv in invocations:
        tags = inv.get("tags", {})
        date = time.strftime("%Y-%m-%d %H:%M", time.gmtime(inv.get("start_time", 0) / 1000))
        wall = wall_seconds(inv)
        if wall is None:
            wall_txt = f"no wall time ({inv.get('status', '?')})"
        elif inv.get("status") in ("FINISHED", "FAILED"):
            wall_txt = _duration(wall)
        else:  # its parent run never ended: killed, or a report taken while it runs
            wall_txt = f"{_duration(wall)} to its last result (interrupted or still running)"
        models = (f"{tags.get('bench.models_trained', '?')} / {tags.get('bench.cache_hits', '?')}"
                  if tags.get("bench.kind") != "tune" else "–")
        cmd = tags.get("bench.command") or tags.get("bench.argv", "?")
        lines.append(f"| {date} | `{cmd}` | {tags.get('bench.commit', '?')} | "
                     f"{tags.get('bench.machine', '?')} | {wall_txt} | {models} |")
    return lines


def leaderboard_block(matrix: str, leaderboard_md: str,
                      invocations: Sequence[Mapping[str, Any]], page: str = "docs/leaderboards.md",
                      command: str | None = None) -> str:
    """The text between the markers of ``page``: provenance, then the leaderboard with headings
    demoted two levels (it sits under a ``## <section>`` of that page). ``command``: the report
    command that wrote it (default: ``report --matrix <matrix> --benchmarks <page>``)."""
    body = []
    for line in leaderboard_md.strip().splitlines():
        body.append("##" + line if line.startswith("#") else line)
    total = sum(wall_seconds(i) or 0.0 for i in invocations)
    command = command or f"python -m bench report --matrix {matrix} --benchmarks {page}"
    head = [f"Written by `{command}` "
            "from the raw rows (MLflow and the rows files its runs started from); "
            "nothing below is typed by hand. The results come from "
            f"these invocations (total wall time {_duration(total)}):", "",
            *invocations_markdown(invocations), ""]
    return "\n".join(head + body)


def splice(text: str, matrix: str, block: str, kind: str = "leaderboard") -> str:
    """``text`` with ``block`` between the matrix's ``<!-- <kind>:<matrix>:start/end -->``
    markers; they are added at the end of the leaderboards section (or of the file) when absent."""
    start, end = f"<!-- {kind}:{matrix}:start -->", f"<!-- {kind}:{matrix}:end -->"
    new = f"{start}\n{block.strip()}\n{end}"
    # markers count only on a line of their own (prose may quote them)
    found = re.search(rf"^{re.escape(start)}[ \t]*$(.*?)^{re.escape(end)}[ \t]*$", text, re.M | re.S)
    if found:
        return text[: found.start()] + new + text[found.end():]
    if SECTION in text:
        at = text.index(SECTION) + len(SECTION)
        nxt = text.find("\n## ", at)
        at = len(text) if nxt < 0 else nxt
        before = text[:at].rstrip("\n")
        return before + "\n\n" + new + "\n" + ("\n" + text[at:].lstrip("\n") if nxt >= 0 else "")
    return text.rstrip("\n") + "\n\n" + new + "\n"


def publish(path: Path, matrix: str, leaderboard_md: str,
            invocations: Sequence[Mapping[str, Any]], command: str | None = None) -> Path:
    """Rewrite the matrix's leaderboard block in ``path`` (atomically)."""
    return write_block(path, matrix, leaderboard_block(matrix, leaderboard_md, invocations, Path(path).as_posix(),
                                                       command))


def write_block(path: Path, matrix: str, block: str, kind: str = "leaderboard") -> Path:
    """Rewrite the matrix's ``kind`` block in ``path`` (atomically)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    out = splice(text, matrix, block, kind)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(out)
    os.replace(tmp, path)
    return path
