"""How a worked example shows in a notebook: a title, then its parts in order, each under a heading.

A step's worked example (e.g. `jinstruct.generate.example_request`) is a small dataclass that keeps its data as
fields (for tests and for the reader) and shows itself through `render_html` (JupyterLab, executed notebooks,
nbconvert's HTML) and `render_text` (a terminal, `print`). A part is text (shown as it is, line breaks kept), a
table (a DataFrame: its cells keep their line breaks too), or `Html` (markup the example built itself, with
`Html.text` as its plain-text form).
"""

from __future__ import annotations

import html
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Part = tuple[str, Any]  # (heading, content)

_STYLE = ("<style>.jx-example{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;margin:4px 0}"
          ".jx-example h4{margin:10px 0 4px}.jx-example pre{white-space:pre-wrap;background:#f6f8fa;"
          "padding:6px 8px;margin:0;font-size:12px;max-height:28em;overflow:auto}"
          ".jx-example table{border-collapse:collapse;font-size:12px}.jx-example th{text-align:left;"
          "border-bottom:1px solid #d0d7de;padding:3px 6px}.jx-example td{white-space:pre-wrap;vertical-align:top;"
          "text-align:left;padding:3px 6px;border-bottom:1px solid #eaeef2;max-width:36em}</style>")


@dataclass(frozen=True)
class Html:
    """Markup an example built itself, with its plain-text form."""

    markup: str
    text: str


def render_html(title: str, parts: Sequence[Part]) -> str:
    out = [_STYLE, '<div class="jx-example">', f"<h3>{html.escape(title)}</h3>"]
    for heading, content in parts:
        if heading:
            out.append(f"<h4>{html.escape(heading)}</h4>")
        if isinstance(content, Html):
            out.append(content.markup)
        elif hasattr(content, "itertuples"):
            out.append(_table_html(content))
        else:
            out.append(f"<pre>{html.escape(str(content))}</pre>")
    out.append("</div>")
    return "\n".join(out)


def _cell(value: Any) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _table_html(table: Any) -> str:
    """A table whose cells keep their line breaks (pandas' own HTML writes them as a literal backslash-n)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in table.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render_text(title: str, parts: Sequence[Part]) -> str:
    out = [title, "=" * min(len(title), 80)]
    for heading, content in parts:
        if heading:
            out.append(f"\n-- {heading}")
        if isinstance(content, Html):
            out.append(content.text)
        elif hasattr(content, "itertuples"):
            out.append(content.to_string(index=False))
        else:
            out.append(str(content))
    return "\n".join(out)


class Shown(ABC):
    """Base of an example dataclass (declared with `repr=False`): it names its `title` and `parts()`, and shows as
    HTML in a notebook and as text elsewhere."""

    title: str

    @abstractmethod
    def parts(self) -> list[Part]:
        """(heading, content) in the order they show."""

    def _repr_html_(self) -> str:
        return render_html(self.title, self.parts())

    def __str__(self) -> str:
        return render_text(self.title, self.parts())

    __repr__ = __str__
