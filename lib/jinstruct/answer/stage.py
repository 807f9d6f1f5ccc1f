"""Stage 05 in a few calls: pick the benchmark questions and let each configured model answer them.

A model whose answers are published (`answers:` in its config entry, e.g. text-davinci-003's in ja-vicuna-qa-benchmark)
is not run: its checked file is copied into the run's answers folder byte for byte, so the judge sees exactly the
answers the benchmark's authors judged.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinstruct.answer.engines import (
    AnswerReport,
    answer_with_client,
    answer_with_transformers,
    answer_with_vllm,
    load_answer_model,
)
from jinstruct.formats.benchmarks import published_answers
from jinstruct.formats.fastchat import Question, load_answers
from jinstruct.io import atomic_write_bytes, sha256_file
from jinstruct.llm.tinymodel import resolve_model
from jinstruct.paths import resolve_path


def copy_answers(source: Path, questions: list[Question], model_id: str, out: Path) -> AnswerReport:
    """Copy a published answer file into the run unchanged (it must load as FastChat answers) and report which of
    `questions` it answers; a question it does not answer is listed under `failed` (the judge will refuse it)."""
    start = time.monotonic()
    # the records keep the publisher's model_id; the run names the file after the config's: they must agree, or a
    # reader of the run could not tell whose answers the file holds
    answers = {str(a.question_id) for a in load_answers(source, model_id=model_id, strict_name=True)}
    data = source.read_bytes()
    if not out.exists() or out.read_bytes() != data:
        atomic_write_bytes(out, data)
    report = AnswerReport(model_id, out, len(questions), sum(str(q.question_id) in answers for q in questions))
    report.failed = {str(q.question_id): f"not in the published answer file {source}"
                     for q in questions if str(q.question_id) not in answers}
    report.seconds = time.monotonic() - start
    return report


def folder_digest(folder: Path) -> str:
    """sha256 over the names and contents of every file in `folder` (an adapter: retrained, it answers again)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(folder).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


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
    if spec.answers:
        return copy_answers(published_answers(spec.answers, spec.answers_sha256), questions, spec.model_id, out)
    superseded = stage.layout.superseded / "answers" / out.name  # answers redone because their settings changed
    if spec.endpoint:
        client = stage.client(spec.endpoint)
        return answer_with_client(questions, client, spec.model_id, out, max_tokens=section.max_new_tokens,
                                  seed=section.seed, superseded=superseded)
    local = local_model(spec, stage)
    if spec.engine == "vllm":
        lora_r = {m.name: m for m in stage.cfg.train.models}[spec.trained].lora_r if spec.trained else 8
        return _with_vllm(spec, questions, stage, local.base, local.adapter, lora_r, local.template)
    model, tokenizer = load_answer_model(local.base, local.adapter, load_in_4bit=local.load_in_4bit)
    base_name = {m.name: m for m in stage.cfg.train.models}[spec.trained].base_model if spec.trained else spec.base_model
    identity: dict[str, Any] = {"model": base_name, "load_in_4bit": local.load_in_4bit}
    if local.adapter is not None:
        identity["adapter_sha256"] = folder_digest(local.adapter)
    return answer_with_transformers(questions, model, tokenizer, spec.model_id, out, template=local.template,
                                    max_new_tokens=section.max_new_tokens, batch_size=section.batch_size,
                                    seed=section.seed, model_identity=identity, superseded=superseded)


def _with_vllm(spec: Any, questions: list[Question], stage: Any, base: str, adapter: Any, lora_r: int,
               template: Any) -> AnswerReport:
    """`engine: vllm`: serve the base model (and the adapter) with vLLM for this model's answers."""
    section = stage.cfg.answer
    return answer_with_vllm(questions, base, spec.model_id, stage.path(stage.layout.answer_file(spec.model_id)),
                            adapter_dir=adapter, lora_r=lora_r, settings=section.vllm,
                            cache_path=resolve_path(stage.cfg.llm.cache), run_dir=stage.run_dir, stage=stage.name,
                            template=template, max_tokens=section.max_new_tokens, seed=section.seed,
                            log_path=stage.path(stage.layout.vllm_log(spec.model_id)))
