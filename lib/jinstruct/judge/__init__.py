"""Stage 06, judging: judge prompts, verdicts, pairwise (both orders) and single grading, the generic grader,
win rates and other metrics, and their figures."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "Judging": "stage",
    "example_game": "example",
    "load_benchmark": "jinstruct.formats.fastchat",
    "run_judging": "stage",
    "save_tables": "stage",
    "score_figure": "figures",
    "win_tie_loss_figure": "figures",
})
__all__ = sorted(__dir__())
