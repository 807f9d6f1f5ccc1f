"""Stage 07, human agreement: a sample of the judged games for people to label (Label Studio, a CSV sheet, or the
notebook's labeler), their labels read back, and agreement between the LLM judge and people (FastChat's semantics,
Cohen's kappa, Krippendorff's alpha, bootstrap intervals), with a confusion-matrix figure."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "Agreement": "stage",
    "LabelSession": "labeler",
    "Labeler": "labeler",
    "confusion_figure": "figures",
    "export_items": "stage",
    "load_benchmark": "jinstruct.formats.fastchat",
    "load_human_judgments": "human_format",
    "metrics": "metrics",
    "prepare_items": "stage",
    "run_agreement": "stage",
})
__all__ = sorted(__dir__())
