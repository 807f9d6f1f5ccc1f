"""Stage 03, filtering: heuristic filters for Japanese, exact ROUGE-L dedup, statistics, the dataset card and the
training records."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "Deduper": "dedup",
    "FilterParams": "heuristics",
    "FilterResult": "stage",
    "filter_records": "stage",
    "load_records": "stage",
    "load_seed_records": "stage",
    "source_table": "stage",
    "rejection_examples": "example",
    "training_dataset": "stage",
    "stats": "stats",
    "write_outputs": "stage",
})
__all__ = sorted(__dir__())
