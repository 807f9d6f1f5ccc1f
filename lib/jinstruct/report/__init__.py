"""Notebook 09, reporting across runs: the sweep summary, paired significance between grid cells, and the paper's
figures and tables, each saved with the table it is drawn from."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "Drawn": "build",
    "Report": "summary",
    "draw": "build",
    "paired_bootstrap": "significance",
    "question_counts": "significance",
    "default_out": "sources",
    "save_drawn": "build",
    "save_report": "build",
    "save_table": "build",
    "summary_markdown": "summary",
    "write_report": "build",
    "write_summary": "summary",
})
__all__ = sorted(__dir__())
