"""Stage 05 in a few calls: pick the benchmark questions and let each configured model answer them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from jinstruct.answer.engines import AnswerReport, answer_with_client, answer_with_transformers, load_answer_model
from jinstruct.llm.tinymodel import resolve_model
from jinstruct.formats.fastchat import Question
from jinstruct.io import sha256_file


def folder_digest(folder: Path) -> str:
    """sha256 over the names and contents of every file in `folder` (an adapter: retrained, it answers again)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(folder).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def answer_model(spec: Any, questions: list[Question], stage: Any) -> AnswerReport:
    """Answer with one `AnswerModel` of the config into the run's answer file for it (resuming what is there).

    `stage` is the notebook's `jinstruct.run.Stage`: its config, its run-folder layout and its LLM clients."""
    section = stage.cfg.answer
    out = stage.path(stage.layout.answer_file(spec.model_id))
    superseded = stage.layout.superseded / "answers" / out.name  # answers redone because their settings changed
    if spec.endpoint:
        client = stage.client(spec.endpoint)
        return answer_with_client(questions, client, spec.model_id, out, max_tokens=section.max_new_tokens,
                                  seed=section.seed, superseded=superseded)
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
        identity = {"model": params.base_model, "adapter_sha256": folder_digest(adapter), "load_in_4bit": four_bit}
    else:
        template = spec.template or "chat"
        four_bit = bool(spec.load_in_4bit)
        model, tokenizer = load_answer_model(resolve_model(spec.base_model), None, load_in_4bit=four_bit)
        identity = {"model": spec.base_model, "load_in_4bit": four_bit}
    return answer_with_transformers(questions, model, tokenizer, spec.model_id, out, template=template,
                                    max_new_tokens=section.max_new_tokens, batch_size=section.batch_size,
                                    seed=section.seed, model_identity=identity, superseded=superseded)
