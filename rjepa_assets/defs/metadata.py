"""Helpers that turn plain dicts and PNG files into rich Dagster metadata."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import dagster as dg


def md_table(
    rows: dict[str, Any] | list[dict[str, Any]], headers: tuple[str, str] = ("key", "value")
) -> dg.MetadataValue:
    if isinstance(rows, dict):
        lines = [f"| {headers[0]} | {headers[1]} |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows.items()]
    else:
        cols = list(rows[0]) if rows else []
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return dg.MetadataValue.md("\n".join(lines))


def fmt(x: Any) -> str:
    """A metric for a metadata table: 3 decimals, "–" when missing or NaN."""
    return "–" if x is None or (isinstance(x, float) and x != x) else f"{x:.3f}"


def png(path: str | Path, title: str = "") -> dg.MetadataValue:
    """Embed a PNG so the asset page shows the plot itself."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{data})")


def log_to(context: dg.AssetExecutionContext):
    return context.log.info
