"""Stage 08, task evaluation: few-shot accuracy and perplexity with lm-evaluation-harness, base against tuned."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "EvalModel": "harness",
    "SUMMARY_COLUMNS": "results",
    "TaskRun": "stage",
    "cli_command": "harness",
    "comparison_table": "results",
    "eval_models": "stage",
    "evaluate": "harness",
    "evaluate_run": "stage",
    "load_lm": "harness",
    "plot_tasks": "results",
    "read_summary": "results",
    "summary_rows": "results",
    "task_manager": "harness",
    "token_perplexity": "harness",
    "with_intervals": "results",
    "write_task_files": "harness",
})
__all__ = sorted(__dir__())
