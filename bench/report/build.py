"""Assemble the whole report from the results frame: the headline, one details page per cell,
the pictures, and the auditors' figures copied beside them (bench/report/paths.py says where).

Input is what MLflow holds (the frame, and the auditors' PNGs the driver found in the store),
so ``python -m bench report`` rebuilds all of it; nothing links into an MLflow artifact folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.metrics import MetricSpec
from bench.report import paths
from bench.report.analysis import Analysis, Table, analyse
from bench.report.details import details_page
from bench.report.frame import CELL, heading, recompute_gaps
from bench.report.leaderboard import leaderboard_markdown
from bench.report.plots import Point, rank_png, tradeoff_png
from bench.report.roles import FLOOR, ORIGINAL, RETRAIN

# (dataset, encoder, backbone, scenario) and seed -> the auditors' figures: (name, file)
AuditorFigures = Mapping[tuple[tuple, int], Sequence[tuple[str, Path]]]


@dataclass
class Report:
    analysis: Analysis
    files: dict[str, str | bytes] = field(default_factory=dict)  # relative to results/<matrix>/
    header: Sequence[str] = ()
    cell_lines: dict[tuple, list[str]] = field(default_factory=dict)  # under a cell's headline table

    def markdown(self, root: str = "") -> str:
        """The headline with its links resolving from ``root`` (see bench/report/leaderboard.py)."""
        return leaderboard_markdown(self.analysis, self.header, root, self.files, self.cell_lines)


def tradeoff_points(t: Table, specs: Mapping[str, MetricSpec]) -> list[Point]:
    points = []
    for m in t.order:
        if m == RETRAIN:
            continue
        x, y = t.forgetting_gap(m, specs), t.utility_gap(m)
        seeds = sorted(x.keys() & y.keys())
        if seeds:
            kind = "original" if m == ORIGINAL else "floor" if m == FLOOR else "method"
            points.append(Point(m, kind, [x[s] for s in seeds], [y[s] for s in seeds]))
    return points


def tradeoff_figure(t: Table, specs: Mapping[str, MetricSpec]) -> bytes | None:
    if t.forgetting is None or t.utility is None:
        return None
    points = tradeoff_points(t, specs)
    if not any(p.kind == "method" for p in points):
        return None
    scale = specs[t.forgetting].scale if t.forgetting in specs else 1.0
    x = f"forgetting gap: |{t.forgetting} − retrain's|" + (f" × {scale:g}" if scale != 1 else "")
    y = f"utility gap: {t.utility} − retrain's {t.utility} (points)"
    noise = "cell_flags" in t.rows and t.rows.cell_flags.astype(str).str.contains("no membership signal").any()
    title = heading(t.key, t.rows) + ("\n(no membership signal: the forgetting axis measures noise)" if noise
                                      else "")
    return tradeoff_png(points, x, y, title)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def build_report(df: pd.DataFrame, specs: Mapping[str, MetricSpec], title: str,
                 auditor_figures: AuditorFigures | None = None, header: Sequence[str] = (),
                 cell_notes: Callable[[pd.DataFrame], Sequence[str]] | None = None, pictures: bool = True,
                 cell_summary: Callable[[pd.DataFrame], Sequence[str]] | None = None) -> Report:
    """Every file of the report. ``header``, ``cell_notes`` (a cell's frame -> lines for its
    details page) and ``cell_summary`` (-> lines under its headline table) are where the driver
    adds the tuning lines of bench/report/tuning.py;
    ``pictures=False`` skips drawing (the pages then link to none)."""
    df = recompute_gaps(df, specs)  # the tuning lines read the Avg Gaps the tables show
    an = analyse(df, specs, title)
    rep = Report(an, header=tuple(header))
    for i, r in enumerate(an.rankings, 1):
        if pictures and len(r.cells) >= 2:
            rep.files[paths.ranks(i)] = rank_png(r, f"{title}: ranking {i} over {len(r.cells)} cells")
    figs = auditor_figures or {}
    every = dict(list(df.groupby(list(CELL), sort=False))) if (cell_notes or cell_summary) and len(df) else {}
    for cell, tables in an.cells().items():
        tradeoffs = {}
        for t in tables:
            png = tradeoff_figure(t, specs) if pictures else None
            if png is not None:
                rep.files[paths.tradeoff(t.key)] = png
                tradeoffs[t.key] = f"../{paths.tradeoff(t.key)}"
        copied = []
        for (c, seed), items in sorted(figs.items(), key=lambda kv: kv[0][1]):
            if c != cell:
                continue
            for name, src in items:
                dest = f"{paths.cell_figures(cell)}/s{seed}-{_safe(name)}"
                rep.files[dest] = Path(src).read_bytes()
                copied.append(f"../{dest}")
        # every row of the cell, superseded ones included: a tuned method's notes compare its
        # newest tuned rows with the default rows an earlier run left (the tables keep the newest)
        notes = list(cell_notes(every[cell])) if cell_notes else []
        if cell_summary and (lines := list(cell_summary(every[cell]))):
            rep.cell_lines[cell] = lines
        rep.files[paths.details(cell)] = details_page(tables, specs, tradeoffs, copied, notes)
    rep.files[paths.LEADERBOARD] = rep.markdown("")
    return rep


def write_report(rep: Report, folder: Path) -> Path:
    """Write the report's files under ``folder`` (results/<matrix>/), removing pages and pictures
    an earlier report wrote that this one no longer has; returns the leaderboard's path."""
    folder = Path(folder)
    for sub, pattern in ((paths.CELLS, "*.md"), (paths.FIGURES, "**/*.png")):
        for old in (folder / sub).glob(pattern):
            if old.relative_to(folder).as_posix() not in rep.files:
                old.unlink()
    for rel, content in rep.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(content.encode() if isinstance(content, str) else content)
        os.replace(tmp, path)
    for sub in [*(folder / paths.FIGURES).glob("*"), folder / paths.FIGURES, folder / paths.CELLS]:
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()
    return folder / paths.LEADERBOARD

