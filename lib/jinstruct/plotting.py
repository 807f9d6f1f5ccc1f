"""Figures: Japanese or English labels, a font that draws every character, count axes, and the one save.

Every plotting function in the library builds a `matplotlib.figure.Figure` directly (no pyplot state), after
`setup_japanese_font()`, and writes its text through `label(ja, en)`, so one setting (`figures.language` in the run
config, applied by `Stage.open` through `set_language`) chooses the language of every label, title and category name.
A notebook saves and shows a figure with `Stage.save_figure` (PDF + PNG through `save_figures`, then the PNG inline).

Characters that no font here can draw (rare kanji in generated text) are written as 〓 (the geta mark, Japanese
typesetting's sign for a missing character) when a figure is saved, instead of an empty box and a warning.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jinstruct.io import atomic_write_bytes

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd")
Language = Literal["ja", "en"]
LANGUAGES: tuple[Language, ...] = ("ja", "en")
MISSING_GLYPH = "〓"  # U+3013 GETA MARK, in IPAexGothic
FALLBACK_FAMILY = "DejaVu Sans"  # matplotlib's own font: Latin, Greek, arrows and symbols the Japanese font lacks
PNG_DPI = 200

_language: Language = "ja"


# --- language -----------------------------------------------------------------------------------------------------


def set_language(language: str) -> None:
    """The language of every figure drawn from now on: "ja" or "en"."""
    global _language
    if language not in LANGUAGES:
        raise ValueError(f"figure language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    _language = language  # type: ignore[assignment]


def language() -> Language:
    return _language


@contextmanager
def in_language(language: str) -> Iterator[None]:
    """Draw in `language` within the block (e.g. notebook 09 drawing a figure in both languages)."""
    before = _language
    set_language(language)
    try:
        yield
    finally:
        set_language(before)


def label(ja: str, en: str) -> str:
    """The text of a label, title or category name in the figure language."""
    return ja if _language == "ja" else en


def names(keys: Iterable[str], table: Mapping[str, tuple[str, str]]) -> list[str]:
    """Display names of category keys: `table[key]` is (ja, en); keys not in the table are shown as they are."""
    return [label(*table[k]) if k in table else str(k) for k in keys]


# --- fonts --------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _register_font() -> tuple[str, str]:
    from matplotlib import font_manager
    from matplotlib_fontja import get_font_ttf_path

    path = get_font_ttf_path()
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name(), path


def setup_japanese_font() -> str:
    """Register the bundled Japanese font (IPAexGothic from matplotlib-fontja) and make it matplotlib's default
    family, with DejaVu Sans as the fallback for symbols it lacks; returns its name. Cheap to call again (e.g.
    after seaborn.set_theme reset the fonts)."""
    import matplotlib

    name, _ = _register_font()
    matplotlib.rcParams["font.family"] = [name, FALLBACK_FAMILY]
    matplotlib.rcParams["axes.unicode_minus"] = False  # the Japanese font has no U+2212 minus sign
    return name


@lru_cache(maxsize=1)
def _drawable_codepoints() -> frozenset[int]:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    _, path = _register_font()
    fallback = font_manager.findfont(FALLBACK_FAMILY, fallback_to_default=False)
    return frozenset(cp for p in (path, fallback) for cp in FT2Font(p).get_charmap())


def drawable(text: str) -> str:
    """`text` with every character the fonts cannot draw replaced by 〓 (line breaks and spaces kept)."""
    ok = _drawable_codepoints()
    return "".join(c if c in "\n\t " or ord(c) in ok else MISSING_GLYPH for c in text)


def fit_text(fig: Figure) -> Figure:
    """Replace undrawable characters in every text of the figure (titles, labels, tick labels, legends, notes)."""
    from matplotlib.text import Text

    for t in fig.findobj(Text):
        text = t.get_text()
        if text and not (text.startswith("$") and text.endswith("$")):
            fixed = drawable(text)
            if fixed != text:
                t.set_text(fixed)
    return fig


# --- building -----------------------------------------------------------------------------------------------------


def new_figure(width: float = 6.0, height: float = 3.5, nrows: int = 1, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    """A constrained-layout Figure with Japanese text and its axes (a flat list)."""
    setup_japanese_font()
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def count_axis(ax: Axes, which: Literal["x", "y"] = "y") -> None:
    """Integer ticks on an axis that counts things (no 17.5 records)."""
    (ax.xaxis if which == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def empty_panel(ax: Axes, message: str) -> None:
    """A panel with nothing to draw: the message in its middle, no ticks, no frame."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set(xticks=[], yticks=[])
    for spine in ax.spines.values():
        spine.set_visible(False)


def label_bars(ax: Axes, fmt: str = "{:,.0f}") -> None:
    """Write each bar's value at its end (vertical or horizontal bars)."""
    for container in ax.containers:
        ax.bar_label(container, fmt=fmt.format if "{" in fmt else fmt, padding=2, fontsize=8)  # type: ignore[arg-type]


# --- saving and showing -------------------------------------------------------------------------------------------


def figure_bytes(fig: Figure, fmt: str, dpi: int = PNG_DPI) -> bytes:
    """The figure rendered as `fmt` (png, pdf, svg), every text drawable."""
    fit_text(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = PNG_DPI) -> Path:
    """Write the figure atomically; the format follows the suffix (.png, .svg, .pdf)."""
    path = Path(path)
    return atomic_write_bytes(path, figure_bytes(fig, path.suffix.lstrip(".") or "png", dpi))


def save_figures(fig: Figure, stem: str | os.PathLike[str], dpi: int = PNG_DPI) -> list[Path]:
    """The figure as `<stem>.pdf` (vector, for papers) and `<stem>.png` (`dpi`, for notebooks and slides)."""
    stem = Path(stem)
    return [save_figure(fig, stem.with_name(stem.name + ".pdf")), save_figure(fig, stem.with_name(stem.name + ".png"), dpi)]


def show_png(png: bytes) -> None:
    """Show PNG bytes in the notebook (nothing outside one), at 100 pixels per inch of a `PNG_DPI` image."""
    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython
    from IPython.display import Image, display

    if get_ipython() is None:
        return
    display(Image(data=png, format="png", retina=PNG_DPI >= 200))


def enable_inline_figures() -> None:
    """In IPython: a bare `Figure` as a cell's value is shown as an image (PNG), drawable text and all. Without it
    a Figure built outside pyplot shows as `<Figure size 600x350 with 1 Axes>`."""
    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: figure_bytes(fig, "png", dpi=100))
