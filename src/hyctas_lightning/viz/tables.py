"""Tables that read well everywhere: an HTML table in a notebook, aligned text in a terminal or log, and JSON for a
program reading an executed notebook (the tests check what the notebooks computed through it)."""
from __future__ import annotations

import html
import math
from typing import Any, Dict, List, Optional, Sequence

MIME = "application/vnd.hyctas.table+json"


def _plain(value: Any) -> Any:
    """JSON-safe cell: numbers as floats or ints (NaN as None), everything else as itself or its text."""
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _text(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


class Table:
    """Rows under named columns, with a title.

    Args:
        columns: column names.
        rows: one sequence of cells per row, in column order.
        title: what the table shows; also how a program finds it among a notebook's outputs.
        digits: significant digits of floats in the HTML and text forms (JSON keeps full precision).
    """

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "",
                 digits: int = 4) -> None:
        self.columns = [str(c) for c in columns]
        self.rows = [[_plain(v) for v in row] for row in rows]
        bad = [i for i, row in enumerate(self.rows) if len(row) != len(self.columns)]
        if bad:
            raise ValueError(f"table '{title}': row {bad[0]} has {len(self.rows[bad[0]])} cells for "
                             f"{len(self.columns)} columns {self.columns}")
        self.title = title
        self.digits = digits

    @classmethod
    def from_records(cls, records: Sequence[Dict[str, Any]], title: str = "", digits: int = 4) -> Table:
        """A table of dicts; the columns are the keys in order of first appearance, missing cells empty."""
        columns = list(dict.fromkeys(k for r in records for k in r))
        return cls(columns, [[r.get(c) for c in columns] for r in records], title, digits)

    def column(self, name: str) -> List[Any]:
        if name not in self.columns:
            raise KeyError(f"table '{self.title}' has no column '{name}'; columns: {self.columns}")
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def records(self) -> List[Dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def to_dict(self) -> Dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows}

    def __str__(self) -> str:
        cells = [self.columns] + [[_text(v, self.digits) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(([self.title] if self.title else []) + lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(v, self.digits))}</td>" for v in row) + "</tr>"
                       for row in self.rows)
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _repr_mimebundle_(self, include: Optional[Any] = None, exclude: Optional[Any] = None) -> Dict[str, Any]:
        return {MIME: self.to_dict(), "text/html": self._repr_html_(), "text/plain": str(self)}
