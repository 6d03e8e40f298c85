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


def _value(x: Any) -> str:
    """A value in one cell: a number, a short array, or the mean and sd of a long one."""
    x = np.asarray(x)
    if x.size == 1:
        return fmt(x.reshape(()))
    if x.size <= 6:
        return np.array2string(x, precision=4, separator=", ")
    return f"mean {fmt(x.mean())}, sd {fmt(x.std())}"


def choice_rows(choices: Any, log_densities: Any = None) -> tuple[list[str], list[list]]:
    """(header, rows) describing a choice map: each address's shape, value and (given) total log density."""
    from .choicemap import flatten  # here: ppl.choicemap's helpers are not needed to import this module

    traced = is_traced(choices)
    densities = dict(flatten(log_densities)) if log_densities is not None and not traced else {}
    header = ["address", "shape", "value"] + (["log density"] if densities else [])
    rows = []
    for path, x in flatten(choices):
        x = getattr(x, "value", x)  # a Masked or Unconstrained leaf shows its value
        row = ["/".join(map(str, path)) or "(value)", str(tuple(np.shape(x))), "traced" if traced else _value(x)]
        if densities:
            row.append(float(np.sum(densities[path])))
        rows.append(row)
    return header, rows


class ChoiceTable:
    """A choice map shown as a table (a choice map is a plain dict, so it cannot show itself):
    `ppl.choicemap.table(choices)` in a notebook cell."""

    def __init__(self, choices: Any, title: str = "choice map", log_densities: Any = None):
        self.title = title
        self.header, self.rows = choice_rows(choices, log_densities)

    def __repr__(self) -> str:
        return text_table(self.title, self.header, self.rows)

    def _repr_html_(self) -> str:
        return html_table(self.title, self.header, self.rows)


def tabulated(cls: type) -> type:
    """Give a class whose `_tables()` returns [(title, header, rows), ...] a text `__repr__` and a `_repr_html_`
    (inside `jit` or `vmap`, where values are tracers, both show the class name only)."""

    def __repr__(self) -> str:
        if is_traced(self):
            return f"{type(self).__name__}(traced)"
        return "\n".join(text_table(*table) for table in self._tables())

    def _repr_html_(self) -> str:
        if is_traced(self):
            return f"<pre>{html.escape(repr(self))}</pre>"
        return "".join(html_table(*table) for table in self._tables())

    cls.__repr__, cls._repr_html_ = __repr__, _repr_html_
    return cls


def tree_rows(tree: Any) -> list:
    """(name, value) rows for the leaves of a pytree of estimates (a dict's keys joined by '/')."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(path, simple=True, separator="/") or "(value)", _value(x)) for path, x in leaves]
