"""How results show themselves: short text for `repr`, HTML tables for Jupyter (`_repr_html_`)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["fmt", "html_table", "is_traced", "text_table"]

MAX_ROWS = 20  # rows a table shows before it says how many it left out


def is_traced(tree: Any) -> bool:
    """Whether a result holds tracers (it was returned inside `jit` or `vmap`): then only shapes can be shown."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def fmt(x: Any) -> str:
    """A number in at most four significant digits; other values as `str`."""
    if isinstance(x, (bool, np.bool_)) or x is None:
        return str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{value:.4g}"


def _shown(rows: Sequence[Sequence[Any]]) -> tuple[list, int]:
    rows = list(rows)
    return rows[:MAX_ROWS], max(0, len(rows) - MAX_ROWS)


def html_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], note: str = "") -> str:
    """An HTML table under a bold title, at most `MAX_ROWS` rows, numbers formatted by `fmt`."""
    rows, left = _shown(rows)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    more = f"<p>… and {left} more rows</p>" if left else ""
    extra = f"<p>{html.escape(note)}</p>" if note else ""
    return (f"<div><p><b>{html.escape(title)}</b></p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{more}{extra}</div>")


def text_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table as plain text, columns aligned."""
    rows, left = _shown(rows)
    cells = [list(map(str, header))] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join([title, *lines] + ([f"... and {left} more rows"] if left else []))
