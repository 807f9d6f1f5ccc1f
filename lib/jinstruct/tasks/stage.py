"""Stage 08 in one call: every configured model on every configured task, the raw results kept, the summary written.

    run = evaluate_run(stage)          # stage: the notebook's jinstruct.run.Stage
    run.summary                        # also runs/<name>/tasks/summary.csv

Models (`tasks.models`; by default each model tuned in stage 04 and its base model): a tuned model is its base with
the adapter from `models/<name>/adapter/`. Each model is evaluated on the accuracy tasks at each few-shot count of
`tasks.shots`, and once on the perplexity tasks. For each (model, few-shot count) the raw lm-eval results are kept
as `tasks/<model_id>/results_<k>shot.json` (lm-eval's dict, its samples moved to `samples_<task>_<k>shot.jsonl`,
plus a `jinstruct` entry: the token perplexities, the equivalent `lm_eval` command line, and the fingerprint of what
was evaluated); a later run with the same fingerprint (model files, task files and data, settings) reuses it.
`tasks/lm_eval_commands.sh` lists the command lines that reproduce each results file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from jinstruct.formats.layout import RunLayout
from jinstruct.io import atomic_write_text, read_json, sha256_file
from jinstruct.llm.tinymodel import resolve_model
from jinstruct.tasks.harness import (
    LOCAL_BUILDERS,
    EvalModel,
    cli_command,
    evaluate,
    load_lm,
    rolling_tasks,
    task_manager,
    token_perplexity,
    write_task_files,
)
from jinstruct.tasks.results import summary_frame, summary_rows, write_summary


def model_name(spec: str) -> str:
    """A base model's name as a model id: `cyberagent/open-calm-7b` -> `cyberagent--open-calm-7b`."""
    return str(spec).strip("/").replace("/", "--")


def eval_models(section: Any, train_models: Sequence[Any], layout: RunLayout) -> list[EvalModel]:
    """The models of `tasks.models` (each: model_id with `trained` or `base_model`), or by default every tuned model
    of `train.models` after its base model (each base once)."""
    trained = {m.name: m for m in train_models}
    out: list[EvalModel] = []
    if section.models:
        for spec in section.models:
            if spec.trained:
                if spec.trained not in trained:
                    raise KeyError(f"tasks model {spec.model_id!r}: no train.models entry named {spec.trained!r}")
                out.append(_tuned(spec.model_id, trained[spec.trained], layout))
            else:
                out.append(EvalModel(spec.model_id, resolve_model(spec.base_model)))
        return out
    bases: dict[str, EvalModel] = {}
    for m in train_models:
        base = EvalModel(model_name(m.base_model), resolve_model(m.base_model))
        if base.base not in bases:
            bases[base.base] = base
            out.append(base)
        out.append(_tuned(m.name, m, layout))
    return out


def _tuned(model_id: str, params: Any, layout: RunLayout) -> EvalModel:
    adapter = layout.adapter(params.name)
    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter}: no trained adapter; run stage 04 (training) first")
    return EvalModel(model_id, resolve_model(params.base_model), str(adapter))


def device_of(setting: str) -> str:
    """The run's `device` as lm-eval takes it ("auto": cuda when there is one)."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_digest(model: EvalModel) -> dict[str, str]:
    """What identifies the weights: the adapter's files (the base is named; a local base folder by its config)."""
    out = {"base": model.base}
    if model.adapter:
        for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
            if (p := Path(model.adapter) / name).exists():
                out[name] = sha256_file(p)
    return out


def task_files_digest(folder: str | os.PathLike[str]) -> str:
    """One sha256 over the task YAMLs of `folder` and the local data files they name."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        h.update(path.name.encode() + b"\0" + text.encode())
        doc = yaml.safe_load(text) or {}
        if doc.get("dataset_path") in LOCAL_BUILDERS:
            for f in _files((doc.get("dataset_kwargs") or {}).get("data_files")):
                h.update(sha256_file(f).encode())
    return h.hexdigest()


def _files(spec: Any) -> list[str]:
    if isinstance(spec, Mapping):
        return [f for v in spec.values() for f in _files(v)]
    if isinstance(spec, list):
        return [f for v in spec for f in _files(v)]
    return [] if spec is None else [str(spec)]


def save_results(results: Mapping[str, Any], layout: RunLayout, model_id: str, shots: int,
                 extra: Mapping[str, Any]) -> dict[str, Any]:
    """Write lm-eval's results (its samples as JSON Lines beside them) with `extra` under `jinstruct`; returns what
    was written to the results file."""
    from lm_eval.utils import handle_non_serializable

    for task, samples in results.get("samples", {}).items():
        lines = "".join(json.dumps(s, default=handle_non_serializable, ensure_ascii=False) + "\n" for s in samples)
        atomic_write_text(layout.task_samples(model_id, task, shots), lines)
    kept = {k: v for k, v in results.items() if k != "samples"} | {"jinstruct": dict(extra)}
    text = json.dumps(kept, default=handle_non_serializable, ensure_ascii=False, indent=1)
    atomic_write_text(layout.task_results(model_id, shots), text + "\n")
    return json.loads(text)


@dataclass
class TaskRun:
    """What `evaluate_run` did."""

    summary: pd.DataFrame
    models: list[EvalModel]
    commands: list[str]  # the lm_eval command line of each results file
    reused: list[str]  # results files reused as they were


def evaluate_run(stage: Any) -> TaskRun:
    """Evaluate the configured models on the configured tasks (see the module docstring); write `summary.csv`."""
    section, layout = stage.cfg.tasks, stage.layout
    folder = write_task_files(layout.task_yaml)
    models = eval_models(section, stage.cfg.train.models, layout)
    if not models:
        raise ValueError("tasks: no model to evaluate (tasks.models is empty and train.models names none)")
    device = device_of(stage.cfg.device)
    tasks_digest = task_files_digest(folder)
    manager = None
    rows: list[dict[str, Any]] = []
    commands, reused = [], []
    for model in models:
        lm = None
        for i, shots in enumerate(section.shots):
            tasks = list(section.tasks) + (list(section.perplexity) if i == 0 else [])
            if not tasks:
                continue
            cmd = shlex.join(cli_command(model, tasks, folder, num_fewshot=shots, limit=section.limit,
                                         batch_size=section.batch_size, device=device, dtype=section.dtype,
                                         fewshot_seed=section.fewshot_seed, output_path=layout.task_cli_output(model.model_id)))
            fingerprint = {"model": _model_digest(model), "tasks": tasks, "num_fewshot": shots,
                           "limit": section.limit, "fewshot_seed": section.fewshot_seed, "dtype": section.dtype,
                           "batch_size": section.batch_size, "device": device, "task_files": tasks_digest}
            path = layout.task_results(model.model_id, shots)
            saved = read_json(path) if path.exists() else None
            if saved is not None and saved.get("jinstruct", {}).get("fingerprint") == fingerprint:
                reused.append(layout.relative(path))
            else:
                if manager is None:
                    manager = task_manager(folder, list(section.tasks) + list(section.perplexity))
                if lm is None:
                    lm = load_lm(model, device=device, dtype=section.dtype, batch_size=section.batch_size)
                results = evaluate(lm, tasks, manager, num_fewshot=shots, limit=section.limit,
                                   fewshot_seed=section.fewshot_seed)
                ppl = {t: token_perplexity(results, t, lm.tokenizer) for t in rolling_tasks(results)}
                saved = save_results(results, layout, model.model_id, shots,
                                     {"fingerprint": fingerprint, "token_perplexity": ppl, "command": cmd})
            rows += summary_rows(saved, model.model_id, saved["jinstruct"]["token_perplexity"])
            commands.append(cmd)
        del lm
    atomic_write_text(layout.tasks_commands, "#!/usr/bin/env bash\n# lm_eval command lines that reproduce "
                      "each results file of this folder\n" + "".join(c + "\n" for c in commands))
    frame = summary_frame(rows)
    write_summary(frame, layout.tasks_summary)
    return TaskRun(frame, models, commands, reused)
