"""Figures that render Japanese, and the small helpers the stages' plots share.

Every plotting function in the library builds a `matplotlib.figure.Figure` directly (no pyplot state), after
`setup_japanese_font()`, so notebooks display it and `save_figure` writes it, in batch runs too.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from jinstruct.io import atomic_write_bytes

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd")


@lru_cache(maxsize=1)
def _register_font() -> str:
    from matplotlib import font_manager
    from matplotlib_fontja import get_font_ttf_path

    path = get_font_ttf_path()
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def setup_japanese_font() -> str:
    """Register the bundled Japanese font (IPAexGothic from matplotlib-fontja) and make it matplotlib's default
    family; returns its name. Cheap to call again (e.g. after seaborn.set_theme reset the fonts)."""
    import matplotlib

    name = _register_font()
    matplotlib.rcParams["font.family"] = name
    matplotlib.rcParams["axes.unicode_minus"] = False  # the font has no U+2212 minus sign
    return name


def new_figure(width: float = 6.0, height: float = 3.5, nrows: int = 1, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    """A constrained-layout Figure with Japanese text and its axes (a flat list)."""
    setup_japanese_font()
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def label_bars(ax: Axes, fmt: str = "{:,.0f}") -> None:
    """Write each bar's value at its end (vertical or horizontal bars)."""
    for container in ax.containers:
        ax.bar_label(container, fmt=fmt.format if "{" in fmt else fmt, padding=2, fontsize=8)  # type: ignore[arg-type]


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 200) -> Path:
    """Write the figure atomically; the format follows the suffix (.png, .svg, .pdf)."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def save_figures(fig: Figure, stem: str | os.PathLike[str], dpi: int = 200) -> list[Path]:
    """The figure as `<stem>.pdf` (vector, for papers) and `<stem>.png` (`dpi`, for notebooks and slides)."""
    stem = Path(stem)
    return [save_figure(fig, stem.with_name(stem.name + ".pdf")), save_figure(fig, stem.with_name(stem.name + ".png"), dpi)]
