"""Stage 05 in a few calls: pick the benchmark questions and let each configured model answer them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from jinstruct.answer import AnswerReport, answer_path, answer_with_client, answer_with_transformers, load_answer_model
from jinstruct.config import resolve_path
from jinstruct.fastchat import Answer, Question, by_question, load_answers, load_questions


def select_questions(questions: list[Question], per_category: int | None) -> list[Question]:
    """The first `per_category` questions of each category, in file order (all when None)."""
    if per_category is None:
        return list(questions)
    seen: dict[str, int] = defaultdict(int)
    out = []
    for q in questions:
        if seen[q.category] < per_category:
            seen[q.category] += 1
            out.append(q)
    return out


def load_benchmark(folder: str | Path, per_category: int | None = None) -> tuple[list[Question], dict[Any, Answer]]:
    """Questions (`question.jsonl`) and reference answers (every file under `reference_answer/`) of a FastChat
    benchmark folder."""
    folder = resolve_path(folder)
    questions = select_questions(load_questions(folder / "question.jsonl"), per_category)
    refs: dict[Any, Answer] = {}
    for path in sorted((folder / "reference_answer").glob("*.jsonl")):
        refs.update(by_question(load_answers(path)))
    return questions, refs


def answer_model(spec: Any, questions: list[Question], out_dir: Path, stage: Any) -> AnswerReport:
    """Answer with one `settings.AnswerModel` into `<out_dir>/<model_id>.jsonl` (resuming what is there)."""
    from jinstruct.stage import resolve_model

    section = stage.cfg.answer
    out = answer_path(out_dir, spec.model_id)
    if spec.endpoint:
        client = stage.client(spec.endpoint)
        return answer_with_client(questions, client, spec.model_id, out, max_tokens=section.max_new_tokens,
                                  seed=section.seed)
    if spec.trained:
        trained = {m.name: m for m in stage.cfg.train.models}
        if spec.trained not in trained:
            raise KeyError(f"answer model {spec.model_id!r}: no train.models entry named {spec.trained!r}")
        params = trained[spec.trained]
        base = resolve_model(params.base_model)
        adapter = stage.run_dir / "models" / spec.trained / "adapter"
        if not adapter.exists():
            raise FileNotFoundError(f"{adapter}: run stage 04 (training) first")
        template = spec.template or params.template
        four_bit = params.load_in_4bit if spec.load_in_4bit is None else spec.load_in_4bit
        model, tokenizer = load_answer_model(base, adapter, load_in_4bit=four_bit)
    else:
        template = spec.template or "chat"
        model, tokenizer = load_answer_model(resolve_model(spec.base_model), None,
                                             load_in_4bit=bool(spec.load_in_4bit))
    return answer_with_transformers(questions, model, tokenizer, spec.model_id, out, template=template,
                                    max_new_tokens=section.max_new_tokens, batch_size=section.batch_size,
                                    seed=section.seed)
