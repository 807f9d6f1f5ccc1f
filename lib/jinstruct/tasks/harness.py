"""Task evaluation on lm-evaluation-harness (`lm-eval`): the task files, the model, one evaluation, its raw results.

    folder = write_task_files(run / "tasks" / "yaml")      # the shipped task YAMLs, data paths made absolute
    lm = load_lm(EvalModel("tiny-sft", base_dir, adapter_dir), device="cpu", dtype="float32")
    results = evaluate(lm, ["jinstruct_nli", "jinstruct_qa_ppl"], task_manager(folder, tasks), num_fewshot=2)

Tasks are lm-eval task YAMLs. The project ships its own (`tasks/yaml/`): few-shot classification by log-likelihood
of the label words on small original sets (`data/tasks/`), rolling perplexity on held-out QA answers, and JNLI /
MARC-ja read from the Hub at a pinned revision; lm-eval's built-in tasks (e.g. `japanese_leaderboard`) are one name
away. A local task's `data_files` are written as paths from the project root; `write_task_files` copies the YAMLs into
the run folder with those paths made absolute, which both the Python API and the `lm_eval` command line read.

A model is lm-eval's HF model (`HFLM`): the base model, with the LoRA adapter attached (`peft=`) for a tuned one,
built once and evaluated at each few-shot count through `lm_eval.simple_evaluate`, with every lm-eval default the
command line has (seeds 0 / 1234 / 1234 / 1234, bootstrap iterations), so `cli_command` reproduces the numbers.

Perplexity. lm-eval's rolling log-likelihood gives byte perplexity and bits per byte, comparable across tokenizers.
Token perplexity, exp(-sum LL / number of tokens), which lm-eval does not report for rolling tasks, is computed here
from the same per-document log-likelihoods and the model's tokenizer (`token_perplexity`): it equals exp of the mean
token loss of a direct transformers forward pass over [prefix token] + text (the prefix is the BOS token, or EOS when
the model has none, as lm-eval conditions the first token).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jinstruct import paths
from jinstruct.io import DataError, atomic_write_text

SHIPPED_YAML = ("tasks", "yaml")
LOCAL_BUILDERS = frozenset({"json", "csv", "parquet", "text", "arrow"})  # datasets builders reading local files


# ----- task files -----------------------------------------------------------------------------------------------


def shipped_task_files() -> list[Path]:
    """The task YAMLs shipped with the package."""
    return sorted(paths.package_file(*SHIPPED_YAML).glob("*.yaml"))


def task_names(folder: str | os.PathLike[str]) -> list[str]:
    """The `task:` names of the YAMLs in `folder`."""
    out = []
    for path in sorted(Path(folder).glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(doc.get("task"), str):
            out.append(doc["task"])
    return out


def _absolute(files: Any, yaml_path: Path) -> Any:
    """A YAML's `data_files` (a path, a list, or split -> path(s)) with every path from the project root made
    absolute; a missing file is a DataError naming the YAML."""
    if isinstance(files, Mapping):
        return {k: _absolute(v, yaml_path) for k, v in files.items()}
    if isinstance(files, list):
        return [_absolute(v, yaml_path) for v in files]
    path = paths.resolve_path(str(files))
    if not path.exists():
        raise DataError(yaml_path, None, "dataset_kwargs.data_files", f"{files}: no such file ({path})")
    return str(path)


def write_task_files(out_dir: str | os.PathLike[str], sources: Iterable[Path] | None = None) -> Path:
    """Copy task YAMLs (default: the shipped ones) into `out_dir`, the data files of local tasks made absolute."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for src in (shipped_task_files() if sources is None else sources):
        doc = yaml.safe_load(src.read_text(encoding="utf-8"))
        kwargs = doc.get("dataset_kwargs") or {}
        if doc.get("dataset_path") in LOCAL_BUILDERS and "data_files" in kwargs:
            kwargs["data_files"] = _absolute(kwargs["data_files"], src)
        atomic_write_text(out / src.name, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return out


def task_manager(include_path: str | os.PathLike[str], tasks: Sequence[str]) -> Any:
    """lm-eval's TaskManager over `include_path`; lm-eval's 14,000+ built-in tasks are indexed (several seconds)
    only when a task asked for is not among the local ones."""
    from lm_eval.tasks import TaskManager

    local = set(task_names(include_path))
    return TaskManager(include_path=str(include_path), include_defaults=not set(tasks) <= local)


# ----- the model --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate: a base model (Hugging Face name or folder), with a LoRA adapter for a tuned one."""

    model_id: str
    base: str
    adapter: str | None = None

    def model_args(self, dtype: str = "auto") -> str:
        """lm-eval's `--model_args` for it (`pretrained=...,peft=...,dtype=...`)."""
        args = f"pretrained={self.base}" + (f",peft={self.adapter}" if self.adapter else "")
        return args + f",dtype={dtype}"


def quiet() -> None:
    """Silence what lm-eval and its dependencies print on every call but which says nothing about the run."""
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as tlogging

    disable_progress_bar()
    tlogging.set_verbosity_error()


def load_lm(model: EvalModel, *, device: str = "cpu", dtype: str = "auto", batch_size: int = 8) -> Any:
    """lm-eval's HF model for `model` (the adapter attached through lm-eval's own `peft=`)."""
    from lm_eval.models.huggingface import HFLM

    quiet()
    return HFLM(pretrained=model.base, peft=model.adapter, dtype=dtype, device=device, batch_size=batch_size)


# ----- evaluating -------------------------------------------------------------------------------------------------


_TQDM_LINE = re.compile(r"\d+%\|.*\|\s*\d+/\d+ \[")  # a tqdm bar: 12%|██  | 33/275 [...


def evaluate(lm: Any, tasks: Sequence[str], manager: Any, *, num_fewshot: int | None = None,
             limit: int | None = None, fewshot_seed: int = 1234) -> dict[str, Any]:
    """One `lm_eval.simple_evaluate` call: lm-eval's results dict, samples included. `num_fewshot` None keeps each
    task's own; a task whose YAML says 0 (perplexity) stays at 0 whatever is asked."""
    import lm_eval

    quiet()
    # lm-eval draws its own tqdm bars on stderr at every step ("Running loglikelihood requests"), which would fill
    # notebook 08's record; they are dropped, and anything else lm-eval writes there is passed on
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            results = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager,
                                              num_fewshot=num_fewshot, limit=limit, log_samples=True,
                                              fewshot_random_seed=fewshot_seed)
    finally:
        rest = [line for line in captured.getvalue().replace("\r", "\n").splitlines()
                if line.strip() and not _TQDM_LINE.search(line)]
        if rest:
            print("\n".join(rest), file=sys.stderr)
    if results is None:  # only on a non-zero rank of a distributed run
        raise RuntimeError("lm-eval returned no results (not the main process?)")
    return results


def rolling_documents(results: Mapping[str, Any], task: str) -> list[tuple[str, float]]:
    """(text, log-likelihood) of each document of a `loglikelihood_rolling` task, from its logged samples."""
    samples = results.get("samples", {}).get(task)
    if samples is None:
        raise KeyError(f"no samples logged for task {task!r}")
    out = []
    for s in samples:
        args = s["arguments"]
        text = args["gen_args_0"]["arg_0"] if isinstance(args, Mapping) else args[0][0]
        out.append((text, float(s["resps"][0][0])))
    return out


def token_perplexity(results: Mapping[str, Any], task: str, tokenizer: Any) -> dict[str, float]:
    """exp(-sum LL / sum tokens) over a rolling task's documents, counting tokens as lm-eval encodes the text (no
    special tokens); also the totals it comes from."""
    docs = rolling_documents(results, task)
    loglikelihood = sum(ll for _, ll in docs)
    tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text, _ in docs)
    return {"value": math.exp(-loglikelihood / tokens), "loglikelihood": loglikelihood, "tokens": tokens,
            "docs": len(docs)}


def rolling_tasks(results: Mapping[str, Any]) -> list[str]:
    """The tasks of a results dict scored by rolling log-likelihood (perplexity tasks)."""
    return [t for t, c in results.get("configs", {}).items() if c.get("output_type") == "loglikelihood_rolling"]


def cli_command(model: EvalModel, tasks: Sequence[str], include_path: str | os.PathLike[str], *,
                num_fewshot: int | None, limit: int | None = None, batch_size: int = 8, device: str = "cpu",
                dtype: str = "auto", fewshot_seed: int = 1234,
                output_path: str | os.PathLike[str] | None = None) -> list[str]:
    """The `lm_eval` command line that computes the same numbers as `evaluate` on `load_lm(model, ...)`."""
    cmd = ["lm_eval", "--model", "hf", "--model_args", model.model_args(dtype), "--tasks", ",".join(tasks),
           "--include_path", str(include_path), "--batch_size", str(batch_size), "--device", device]
    if fewshot_seed != 1234:  # lm-eval's default; --seed takes python, numpy, torch, few-shot
        cmd += ["--seed", f"0,1234,1234,{fewshot_seed}"]
    if num_fewshot is not None:
        cmd += ["--num_fewshot", str(num_fewshot)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    if output_path is not None:
        cmd += ["--output_path", str(output_path), "--log_samples"]
    return cmd
