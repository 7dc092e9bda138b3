"""The front page's summary: what today's published rows conclude, per encoder, in one screen.

BENCHMARKS.md opens with a block that nobody types: for each encoder of the published
matrices, which methods match retraining, which are worse, and which are undecided together
with the seeds that would decide them (bench/report/verdict.py, the same verdicts the
leaderboards show), the date and commit of the rows, then each matrix's headline ranking
linked to its full leaderboard. ``front_page`` is a pure function of the results frames (one
per matrix, the frame ``Tracker.results_frame`` returns; ``bench.rows.read`` gives the same
from ``results/<matrix>/rows.csv``); ``write`` puts its text between the summary markers.

    python -m bench.report.frontpage BENCHMARKS.md results/*/rows.csv
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.metrics import MetricSpec
from bench.report import paths, tuning
from bench.report.analysis import Analysis, Table, analyse
from bench.report.frame import CELL
from bench.report.roles import ORIGINAL, YARDSTICKS

START, END = "<!-- summary:start -->", "<!-- summary:end -->"
NO_ROWS = ("No published rows yet: this summary is generated from `results/<matrix>/rows.csv` "
           "once a matrix publishes them.")


@dataclass
class Outcome:
    """One method's verdicts over an encoder's tables (cells x requests) with two seeds or more."""

    matches: int = 0
    worse: int = 0
    undecided: int = 0
    seeds: list[float] = field(default_factory=list)  # per undecided table: the seeds that would decide it

    @property
    def tables(self) -> int:
        return self.matches + self.worse + self.undecided


def decide_seeds(t: Table, method: str) -> float:
    """Seeds that would decide an undecided verdict: the fewer of those to show it worse and those
    to show it within the margin, at the observed difference and spread (inf: neither ever)."""
    v = t.verdicts[method]
    return min(v.seeds_worse, v.seeds_match)


def outcomes(an: Analysis) -> dict[str, dict[str, Outcome]]:
    """encoder -> method -> its verdicts over that encoder's tables (untestable ones left out)."""
    out: dict[str, dict[str, Outcome]] = {}
    for t in an.tables.values():
        enc = str(t.key[1])
        for m, v in t.verdicts.items():
            if m in YARDSTICKS or not v.testable:
                continue
            o = out.setdefault(enc, {}).setdefault(m, Outcome())
            if v.worse:
                o.worse += 1
            elif v.matches:
                o.matches += 1
            else:
                o.undecided += 1
                o.seeds.append(decide_seeds(t, m))
    return out


def doing_nothing(an: Analysis) -> dict[str, Outcome]:
    """encoder -> the original's (doing nothing's) verdicts over its tables: where doing nothing
    *matches retrain*, those cells cannot tell a method that forgets from one that does not, and
    the page must say so beside the methods that match."""
    out: dict[str, Outcome] = {}
    for t in an.tables.values():
        v = t.verdicts.get(ORIGINAL)
        if v is None or not v.testable:
            continue
        o = out.setdefault(str(t.key[1]), Outcome())
        o.worse += bool(v.worse)
        o.matches += bool(v.matches and not v.worse)
        o.undecided += not (v.worse or v.matches)
    return out


def nothing_text(o: Outcome | None) -> str:
    if o is None:
        return "–"
    parts = [f"worse than retrain{_of(o.worse, o)}" if o.worse else "",
             f"matches retrain{_of(o.matches, o)} too: these cells cannot tell a method from doing nothing"
             if o.matches else "",
             f"undecided{_of(o.undecided, o)}" if o.undecided else ""]
    return "; ".join(p for p in parts if p)


def _of(k: int, o: Outcome) -> str:
    return "" if k == o.tables == 1 else f" ({k}/{o.tables})"


def _seeds_text(seeds: Sequence[float]) -> str:
    finite = [s for s in seeds if math.isfinite(s)]
    if not finite:
        return "no number of seeds"
    most, never = int(max(finite)), len(seeds) - len(finite)
    return f"~{most} seeds" + (f" ({never} cell{'s' * (never > 1)}: no number)" if never else "")


def encoder_rows(enc_out: Mapping[str, Outcome]) -> tuple[str, str, str]:
    """The three lists of an encoder's row: matching, worse, undecided (with seeds that decide)."""
    names = sorted(enc_out)
    match = [f"{m}{_of(o.matches, o)}" for m in names if (o := enc_out[m]).matches]
    worse = [f"{m}{_of(o.worse, o)}" for m in names if (o := enc_out[m]).worse]
    und = [f"{m}{_of(o.undecided, o)}: {_seeds_text(o.seeds)}" for m in names if (o := enc_out[m]).undecided]
    return tuple(", ".join(x) or "–" for x in (match, worse, und))  # type: ignore[return-value]


def provenance(df: pd.DataFrame) -> str:
    """Where the rows come from: their commits and latest date (columns of bench.rows), if stored."""
    parts = []
    if "commit" in df:
        commits = [c for c in df["commit"].dropna().astype(str).unique() if c]
        if commits:
            parts.append("commit " + ", ".join(f"`{c[:12]}`" for c in sorted(commits)))
    if "date" in df:
        dates = [d for d in df["date"].dropna().astype(str) if d]
        if dates:
            parts.append("rows dated up to " + max(dates)[:16].replace("T", " "))
    return "; ".join(parts) if parts else "provenance not stored"


def headline(matrix: str, an: Analysis, df: pd.DataFrame, link: str) -> list[str]:
    """A matrix's headline: its first like-with-like ranking (place, method, mean rank, counts)."""
    seeds = sorted({int(s) for s in df.seed}) if "seed" in df else []
    cells = len({t.cell for t in an.tables.values()})
    out = [f"### Headline: [{matrix}]({link})", "",
           f"{cells} cell{'s' * (cells != 1)}, {len(seeds)} seed{'s' * (len(seeds) != 1)}; {provenance(df)}. "
           "Mean rank of mean Avg Gap within each cell (1 = closest to retrain); verdict counts over the cells.", ""]
    if not an.rankings:
        return out + ["No ranking: no finished Avg Gap.", ""]
    r = an.rankings[0]
    tables = [t for t in an.tables.values() if t.cell in set(r.cells)]
    out += ["| place | method | mean rank | matches retrain | worse than retrain | undecided |",
            "|---|---|---|---|---|---|"]
    pos = r.positions()
    for m in r.methods:
        if m in YARDSTICKS:
            counts = "| – | – | –"
        else:
            vs = [t.verdicts[m] for t in tables if m in t.verdicts and t.verdicts[m].testable]
            n = len(vs)
            k_w = sum(v.worse for v in vs)
            k_m = sum(v.matches for v in vs)
            counts = f"| {k_m}/{n} | {k_w}/{n} | {n - k_w - k_m}/{n}"
        out.append(f"| {pos[m]} | {m} | {r.mean_rank[m]:.2f} {counts} |")
    if len(an.rankings) > 1:
        out += ["", f"{len(an.rankings) - 1} further ranking(s) over other sets of cells on the full page."]
    return out + [""]


OUTCOMES = ("tuned better", "no difference", "tuned worse")


def tuning_block(df: pd.DataFrame) -> list[str]:
    """Under a headline: whether its methods ran tuned (the leaderboard's own header line) and,
    per cell, which tuned methods beat their defaults on the evaluation seeds, which did not
    differ and which got worse (bench/report/tuning.py ``compare``: paired t, Holm), marking those
    that tuning left at their defaults."""
    out = [f"Hyperparameters: {tuning.header(df)}.", ""]
    if "tuned" not in df or not tuning.is_tuned(df).any():
        return out
    cells = [(key, tuning.compare(sub)) for key, sub in df.groupby(CELL, sort=True)]
    cells = [(key, found) for key, found in cells if found]
    if not cells:
        return out
    per_encoder = len({key[1] for key, _ in cells}) == len(cells)
    out += [f"Tuned against default, Avg Gap on the evaluation seeds ({tuning.TEST}):", "",
            "| cell | " + " | ".join(OUTCOMES) + " | not tested |", "|---|---|---|---|---|"]
    for key, found in cells:
        by: dict[str, list[str]] = {}
        for c in found:
            name = f"{c.method} (kept its defaults)" if c.kept_defaults else c.method
            by.setdefault(c.outcome if c.outcome in OUTCOMES else "not tested", []).append(name)
        label = f"`{key[1]}`" if per_encoder else " ".join(f"`{k}`" for k in key)
        out.append(f"| {label} | " + " | ".join(", ".join(by.get(o, [])) or "–" for o in (*OUTCOMES, "not tested"))
                   + " |")
    return out + [""]


def front_page(frames: Mapping[str, pd.DataFrame], links: Mapping[str, str] | None = None,
               specs: Mapping[str, MetricSpec] | None = None) -> str:
    """The summary's markdown from one results frame per published matrix (name -> frame).

    ``links``: matrix -> link to its full leaderboard (default ``results/<matrix>/leaderboard.md``,
    relative to the repository root, where BENCHMARKS.md lies). ``specs``: the metrics'
    specifications (``bench.audit.metric_specs()``), with which the report computes each table's
    Avg Gap exactly as the leaderboard does; without them the rows' stored Avg Gaps are used."""
    frames = {k: v for k, v in frames.items() if v is not None and len(v)}
    if not frames:
        return NO_ROWS
    links = dict(links or {})
    analyses = {m: analyse(df, specs or {}, m) for m, df in sorted(frames.items())}
    out = ["Generated by `python -m bench.report.frontpage` from the published rows of "
           + "; ".join(f"`{m}` ({provenance(frames[m])})" for m in analyses) + ". "
           "Each method is compared, seed by seed, with an independent retrain (what exact unlearning "
           "itself scores): *matches retrain* (equivalence test), *worse than retrain* (paired t-test), "
           "or *undecided*, with the seeds that would decide it at the observed difference and spread. "
           "(k/n): in k of the encoder's n cells of that matrix. *Doing nothing* is the original's own "
           "verdict: where it matches retrain too, those cells cannot separate forgetting from doing nothing.", "",
           "| matrix | encoder | doing nothing | matches retrain | worse than retrain | undecided: seeds to decide |",
           "|---|---|---|---|---|---|"]
    rows = [(m, enc, res, doing_nothing(an).get(enc)) for m, an in analyses.items()
            for enc, res in sorted(outcomes(an).items())]
    for m, enc, res, nothing in rows:
        out.append("| `{}` | `{}` | {} | {} | {} | {} |".format(m, enc, nothing_text(nothing), *encoder_rows(res)))
    if not rows:
        out.append("| – | – | – | no method with two seeds or more | – | – |")
    out += [""]
    for m, an in analyses.items():
        out += headline(m, an, frames[m], links.get(m, f"results/{m}/{paths.LEADERBOARD}"))
        out += tuning_block(frames[m])
    return "\n".join(out).rstrip() + "\n"


def splice(text: str, block: str) -> str:
    """``text`` with ``block`` between the summary markers (on lines of their own); the markers go
    after the first heading when absent."""
    new = f"{START}\n{block.strip()}\n{END}"
    found = re.search(rf"^{re.escape(START)}[ \t]*$(.*?)^{re.escape(END)}[ \t]*$", text, re.M | re.S)
    if found:
        return text[: found.start()] + new + text[found.end():]
    lines = text.splitlines()
    at = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("# ")), 0)
    before, after = "\n".join(lines[:at]).strip("\n"), "\n".join(lines[at:]).strip("\n")
    return "\n\n".join(p for p in (before, new, after) if p) + "\n"


def write(path: Path, frames: Mapping[str, pd.DataFrame], folders: Mapping[str, Path] | None = None,
          specs: Mapping[str, MetricSpec] | None = None) -> Path:
    """Rewrite the summary block of ``path`` (atomically). ``folders``: matrix -> its results folder
    (default ``results/<matrix>`` under the working directory); links are relative to ``path``."""
    path = Path(path)
    folders = {m: Path(folders[m]) if folders and m in folders else Path("results") / m for m in frames}
    links = {m: Path(os.path.relpath(f.resolve() / paths.LEADERBOARD, path.resolve().parent)).as_posix()
             for m, f in folders.items()}
    text = path.read_text() if path.exists() else ""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(splice(text, front_page(frames, links, specs)))
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m bench.report.frontpage BENCHMARKS.md [results/<matrix>/rows.csv ...]",
              file=sys.stderr)
        return 2
    page, files = Path(args[0]), [Path(a) for a in args[1:]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(f"error: no such rows file: {', '.join(missing)} (write it with `python -m bench report`)",
              file=sys.stderr)
        return 2
    frames: dict[str, pd.DataFrame] = {}
    specs = None
    if files:
        from bench import rows  # lazily: only publishing with rows needs them
        from bench.audit import metric_specs

        try:
            frames = {f.resolve().parent.name: rows.read(f) for f in files}
        except ValueError as e:  # bench.rows.RowsError is a ConfigError: one line, exit 2
            print(f"error: {e}", file=sys.stderr)
            return 2
        specs = metric_specs()
    write(page, frames, {f.resolve().parent.name: f.parent for f in files}, specs)
    print(f"wrote the summary of {len(frames)} matrix(es) into {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
