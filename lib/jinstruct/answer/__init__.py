"""Stage 05, answering: each model's answers to the benchmark, with transformers or through any endpoint."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "AnswerReport": "engines",
    "answer_model": "stage",
    "category_counts": "tables",
    "example_answers": "example",
    "reports_table": "tables",
    "side_by_side": "tables",
    "answer_with_client": "engines",
    "answer_with_transformers": "engines",
    "load_answer_dir": "jinstruct.formats.fastchat",
    "load_benchmark": "jinstruct.formats.fastchat",
})
__all__ = sorted(__dir__())
