"""The data contracts: seed tasks, instruction and training records, FastChat's benchmark files, the run folder."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "Answer": "fastchat",
    "Choice": "fastchat",
    "Instance": "seed_task",
    "InstructionRecord": "records",
    "JudgePrompt": "fastchat",
    "Message": "records",
    "PairwiseJudgment": "fastchat",
    "Question": "fastchat",
    "RunLayout": "layout",
    "SeedTask": "seed_task",
    "SingleJudgment": "fastchat",
    "TrainingRecord": "records",
    "answer_path": "fastchat",
    "judgment_path": "fastchat",
    "load_answer_dir": "fastchat",
    "load_answers": "fastchat",
    "load_benchmark": "fastchat",
    "load_judge_prompts": "fastchat",
    "load_pairwise_judgments": "fastchat",
    "load_questions": "fastchat",
    "load_seed_tasks": "seed_task",
    "load_single_judgments": "fastchat",
    "write_seed_tasks": "seed_task",
})
__all__ = sorted(__dir__())
