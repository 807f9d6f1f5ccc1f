"""Stage 05 in a few calls: pick the benchmark questions and let each configured model answer them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinstruct.answer.engines import AnswerReport, answer_with_client, answer_with_transformers, load_answer_model
from jinstruct.llm.tinymodel import resolve_model
from jinstruct.formats.fastchat import Question


@dataclass(frozen=True)
class LocalModel:
    """How a local `AnswerModel` is loaded and prompted."""

    base: str
    adapter: Path | None
    template: str
    load_in_4bit: bool


def local_model(spec: Any, stage: Any) -> LocalModel:
    """The base model, adapter, template and quantization of a config's `AnswerModel` that is not an endpoint."""
    if spec.trained:
        trained = {m.name: m for m in stage.cfg.train.models}
        if spec.trained not in trained:
            raise KeyError(f"answer model {spec.model_id!r}: no train.models entry named {spec.trained!r}")
        params = trained[spec.trained]
        adapter = stage.layout.adapter(spec.trained)
        if not adapter.exists():
            raise FileNotFoundError(f"{adapter}: run stage 04 (training) first")
        four_bit = params.load_in_4bit if spec.load_in_4bit is None else spec.load_in_4bit
        return LocalModel(resolve_model(params.base_model), adapter, spec.template or params.template, four_bit)
    return LocalModel(resolve_model(spec.base_model), None, spec.template or "chat", bool(spec.load_in_4bit))


def answer_model(spec: Any, questions: list[Question], stage: Any) -> AnswerReport:
    """Answer with one `AnswerModel` of the config into the run's answer file for it (resuming what is there).

    `stage` is the notebook's `jinstruct.run.Stage`: its config, its run-folder layout and its LLM clients."""
    section = stage.cfg.answer
    out = stage.path(stage.layout.answer_file(spec.model_id))
    if spec.endpoint:
        client = stage.client(spec.endpoint)
        return answer_with_client(questions, client, spec.model_id, out, max_tokens=section.max_new_tokens,
                                  seed=section.seed)
    local = local_model(spec, stage)
    model, tokenizer = load_answer_model(local.base, local.adapter, load_in_4bit=local.load_in_4bit)
    return answer_with_transformers(questions, model, tokenizer, spec.model_id, out, template=local.template,
                                    max_new_tokens=section.max_new_tokens, batch_size=section.batch_size,
                                    seed=section.seed)
