"""The data contracts: seed tasks, instruction and training records, FastChat's benchmark files, the run folder, a sweep's record."""

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
    "Comparison": "sweep",
    "RunLayout": "layout",
    "SeedTask": "seed_task",
    "SingleJudgment": "fastchat",
    "SweepLayout": "layout",
    "SweepRecord": "sweep",
    "SweepRunRecord": "sweep",
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
    "load_sweep_record": "sweep",
    "write_seed_tasks": "seed_task",
})
__all__ = sorted(__dir__())
