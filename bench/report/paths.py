"""Where the report's files go, relative to ``results/<matrix>/`` (links are built from these)."""

from __future__ import annotations

from bench.report.frame import slug

LEADERBOARD = "leaderboard.md"
CELLS = "cells"  # one details page per cell
FIGURES = "figures"  # trade-off plots and auditor figures per cell, rank diagrams


def details(cell: tuple) -> str:
    return f"{CELLS}/{slug(cell)}.md"


def cell_figures(cell: tuple) -> str:
    return f"{FIGURES}/{slug(cell)}"


def tradeoff(key: tuple) -> str:
    """The trade-off plot of one table (a cell's request)."""
    req = key[4] if len(key) > 4 else 0
    return f"{cell_figures(key)}/tradeoff" + (f"-r{req}" if req else "") + ".png"


def ranks(i: int) -> str:
    """The rank diagram of the ``i``-th (from 1) ranking table."""
    return f"{FIGURES}/ranks-{i}.png"
