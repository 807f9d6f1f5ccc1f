"""Stage 05 in a few calls: pick the benchmark questions and let each configured model answer them."""

from __future__ import annotations

from typing import Any

from jinstruct.answer.engines import AnswerReport, answer_with_client, answer_with_transformers, load_answer_model
from jinstruct.llm.tinymodel import resolve_model
from jinstruct.formats.fastchat import Question


def answer_model(spec: Any, questions: list[Question], stage: Any) -> AnswerReport:
    """Answer with one `AnswerModel` of the config into the run's answer file for it (resuming what is there).

    `stage` is the notebook's `jinstruct.run.Stage`: its config, its run-folder layout and its LLM clients."""
    section = stage.cfg.answer
    out = stage.path(stage.layout.answer_file(spec.model_id))
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
        adapter = stage.layout.adapter(spec.trained)
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
