"""4-bit QLoRA supervised fine-tuning of a causal LM on conversational JSONL, on top of TRL's SFTTrainer.

One entry point, `train(params, train_file, out_dir)`, runs the same on a CPU (tests), one GPU, or several
processes under `accelerate launch` (DDP, or FSDP with `configs/accelerate/fsdp_qlora.yaml`).

What lands in `out_dir`:
    run.json              the parameters and data sha256 this folder trains with (a resume must match them)
    checkpoints/          Trainer checkpoints (resume picks the last complete one)
    train_log.jsonl       one line per log event: step, epoch, loss, eval_loss, lr, grad_norm, tokens_per_s, ...
    tensorboard/          the same scalars for TensorBoard
    adapter/              the LoRA adapter + tokenizer, README.md and training_card.json
    merged/               (when params.merge) the adapter merged into the base weights
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tabulate import tabulate
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jinstruct import progress
from jinstruct.formats.records import TrainingRecord
from jinstruct.train.templates import Template, instruction_prompt
from jinstruct.io import (
    DataError,
    append_jsonl,
    atomic_write_text,
    iter_jsonl,
    read_json,
    read_jsonl,
    sha256_file,
    validation_error,
    write_json,
    write_jsonl,
)

if TYPE_CHECKING:
    import torch

LOG_NAME = "train_log.jsonl"
CARD_NAME = "training_card.json"

# `target_modules: auto`: the LoRA targets for an architecture (the config's `model_type`). GPT-NeoX (OpenCALM,
# rinna) gets its fused attention projection, as arXiv 2309.03412 tunes it; any other model (LLaMA included) every
# linear layer but the output head (peft's "all-linear", the QLoRA paper's choice).
LORA_TARGETS: dict[str, str | list[str]] = {"gpt_neox": ["query_key_value"]}


class _DropMessage(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_third_party() -> None:
    """Silence three third-party messages that say nothing about this project's training, at their source:

    - bitsandbytes (CPU, AVX512-BF16 machines) tries an optional `kernels` package that fetches a kernel from the
      Hugging Face Hub; without it bitsandbytes uses its built-in CPU path, which is what the tiny run wants.
    - peft reads `model.is_gradient_checkpointing`, which transformers 5 deprecates (peft's to change, not ours).
    - transformers' checkpoint rotation warns that mtime "may not be reliable" when checkpoints are written less than
      a second apart (the tiny run's), then falls back to ordering by step number, which is right.
    """
    for logger, start in (("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward"),
                          ("transformers.trainer_utils", "mtime may not be reliable")):
        target = logging.getLogger(logger)
        if not any(isinstance(f, _DropMessage) and f.start == start for f in target.filters):
            target.addFilter(_DropMessage(start))
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


quiet_third_party()  # before anything here imports bitsandbytes, peft or the trainer



class TrainParams(BaseModel):
    """Every knob of a QLoRA run; the config's `train` section and the `train --config` YAML hold these fields."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(description="Hugging Face model name or local directory")
    template: Template = "chat"
    train_on_inputs: bool = Field(default=False, description="loss on the prompt too (alpaca-lora's default), "
                                  "not only on the answer")
    trust_remote_code: bool = False
    # quantization and precision
    load_in_4bit: bool = True
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3"] = "auto"
    # LoRA (QLoRA paper defaults)
    lora_r: int = Field(default=64, gt=0)
    lora_alpha: int = Field(default=16, gt=0)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field(default="all-linear", description='module names, "all-linear", or '
                                            '"auto" (by architecture: LORA_TARGETS)')
    # optimisation
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler: Literal["constant", "cosine"] = "constant"
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=0.3, gt=0)
    optimizer: Literal["auto", "paged_adamw_32bit", "paged_adamw_8bit", "adamw_torch", "adamw_torch_fused"] = "auto"
    num_epochs: float = Field(default=3.0, gt=0)
    max_steps: int = Field(default=-1, description="> 0 overrides num_epochs")
    per_device_batch_size: int = Field(default=4, gt=0)
    grad_accum: int = Field(default=4, gt=0)
    max_seq_length: int = Field(default=1024, ge=16)
    packing: bool = Field(default=True, description="best-fit packing into padding-free batches")
    gradient_checkpointing: bool = True
    # data, logging, saving
    eval_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    seed: int = 42
    logging_steps: int = Field(default=10, gt=0)
    save_steps: int = Field(default=200, gt=0)
    eval_steps: int | None = Field(default=None, gt=0, description="None: every save_steps")
    save_total_limit: int = Field(default=2, gt=0)
    merge: bool = False


class TrainResult(BaseModel):
    out_dir: Path
    adapter_dir: Path
    merged_dir: Path | None
    log_path: Path
    base_model: str
    template: str
    steps: int
    train_loss: float | None
    eval_loss: float | None
    wall_time_s: float
    data_sha256: str
    n_train: int
    n_eval: int
    resumed_from_step: int | None = None
    reused: bool = False  # the adapter was already trained with these params and data


# ---------------------------------------------------------------- data


def load_examples(train_file: Path, template: str) -> list[dict[str, Any]]:
    """Read training records into TRL prompt-completion examples, so the loss can fall on the final answer alone
    (or, with `train_on_inputs`, on the whole text).

    chat: prompt = every message before the last (which must be the assistant's), completion = that last message.
    alpaca_ja, alpaca_ja_2309: one user and one assistant turn; the instruction and input come from the record's
    `instruction` and `input` fields when present, else the user message is the instruction.
    """
    out: list[dict[str, Any]] = []
    for line, obj in iter_jsonl(train_file):
        try:
            rec = TrainingRecord.model_validate(obj)
        except ValidationError as e:
            raise validation_error(train_file, line, e) from None
        msgs = rec.messages
        last = len(msgs) - 1
        if msgs[-1].role != "assistant":
            raise DataError(train_file, line, f"messages.{last}.role", "the last message must be the assistant's")
        if not any(m.role == "user" for m in msgs[:-1]):
            raise DataError(train_file, line, "messages", "no user message before the assistant's answer")
        if template == "chat":
            out.append({
                "prompt": [{"role": m.role, "content": m.content} for m in msgs[:-1]],
                "completion": [{"role": "assistant", "content": msgs[-1].content}],
            })
        else:
            if [m.role for m in msgs] != ["user", "assistant"]:
                raise DataError(train_file, line, "messages",
                                f"the {template} template takes exactly one user and one assistant message")
            instruction = rec.instruction if rec.instruction is not None else msgs[0].content
            out.append({"prompt": instruction_prompt(template, instruction, rec.input or ""),
                        "completion": msgs[1].content})
    if not out:
        raise DataError(train_file, None, None, "no training records")
    return out


def split_eval(n: int, fraction: float) -> int:
    """How many of `n` examples to hold out: at least one when a fraction is asked and two or more exist."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


# ---------------------------------------------------------------- model


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _fsdp() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")


def resolve_dtype(name: str) -> torch.dtype:
    """"auto": bf16 on a GPU that has it (else fp16), float32 on the CPU."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if _cuda():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def resolve_attn(name: str) -> str:
    """"auto": FlashAttention 2 when installed on a GPU, else PyTorch SDPA (packed rows get a block-diagonal mask)."""
    if name != "auto":
        return name
    from transformers.utils import is_flash_attn_2_available

    return "flash_attention_2" if _cuda() and is_flash_attn_2_available() else "sdpa"


def bnb_config(dtype: torch.dtype, quant_storage: torch.dtype | None = None) -> Any:
    """NF4 with double quantization; FSDP needs the packed weights stored in the model's float dtype."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=quant_storage or torch.uint8,
    )


def _device_map() -> dict[str, int] | None:
    if not _cuda() or _fsdp():
        return None
    from accelerate import PartialState

    return {"": PartialState().local_process_index}


def load_base_model(base_model: str, load_in_4bit: bool, dtype: torch.dtype, attn_implementation: str = "sdpa",
                    trust_remote_code: bool = False, device_map: Any = None) -> Any:
    """The base causal LM, 4-bit NF4 when asked, on this process's device."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn_implementation,
                              "trust_remote_code": trust_remote_code, "device_map": device_map}
    if load_in_4bit:
        kwargs["quantization_config"] = bnb_config(dtype, dtype if _fsdp() else None)
    return AutoModelForCausalLM.from_pretrained(base_model, **kwargs)


def load_tokenizer(name_or_dir: str | Path, need_chat_template: bool = False, trust_remote_code: bool = False) -> Any:
    """The tokenizer, with a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(name_or_dir), trust_remote_code=trust_remote_code)
    if need_chat_template and not tok.chat_template:
        raise ValueError(f"{name_or_dir}: the tokenizer has no chat template; use template: alpaca_ja for base models")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


# ---------------------------------------------------------------- logging


def _callbacks(out_dir: Path) -> list[Any]:
    """JSON-lines log (main process only; tokens/s between train log events) and TensorBoard, both under out_dir,
    and the steps on a progress bar."""
    from transformers import TrainerCallback
    from transformers.integrations import TensorBoardCallback

    keys = ("loss", "eval_loss", "grad_norm", "entropy", "mean_token_accuracy", "num_tokens")

    class JsonlLog(TrainerCallback):
        def __init__(self, path: Path):
            self.path, self.t, self.tokens = path, time.perf_counter(), 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t, self.tokens = time.perf_counter(), 0.0  # the trainer counts tokens from 0 again on a resume

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kw: Any) -> None:
            if not state.is_world_process_zero or not logs or ("loss" not in logs and "eval_loss" not in logs):
                return
            rec: dict[str, Any] = {"step": state.global_step, "epoch": logs.get("epoch", state.epoch),
                                   "lr": logs.get("learning_rate"), **{k: logs.get(k) for k in keys},
                                   "tokens_per_s": None}
            now = time.perf_counter()
            if "loss" in logs and "num_tokens" in logs:
                rec["tokens_per_s"] = (logs["num_tokens"] - self.tokens) / max(now - self.t, 1e-9)
                self.t, self.tokens = now, logs["num_tokens"]
            rec["time"] = datetime.now(UTC).isoformat(timespec="seconds")
            append_jsonl(self.path, [rec])

    class Progress(TrainerCallback):
        """Training steps on the library's progress bar (the notebook, and the runner's terminal and run.log)."""

        def __init__(self) -> None:
            self.bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.bar = progress.bar(total=state.max_steps, initial=state.global_step,
                                        desc=f"training {out_dir.name}", unit="step")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    tb = TensorBoardCallback()
    tb.logging_dir = str(out_dir / "tensorboard")
    return [JsonlLog(out_dir / LOG_NAME), tb, Progress()]


# ---------------------------------------------------------------- trainer


def last_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The highest-step checkpoint that was written to the end (its trainer_state.json is written last)."""
    if not checkpoints_dir.is_dir():
        return None
    done = [p for p in checkpoints_dir.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def make_trainer(params: TrainParams, train_file: Path, out_dir: Path) -> Any:
    """Build the SFTTrainer (model loaded, LoRA attached, data tokenized with prompt labels at -100), not yet run."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    train_file, out_dir = Path(train_file), Path(out_dir)
    examples = load_examples(train_file, params.template)
    n_eval = split_eval(len(examples), params.eval_fraction)
    data = Dataset.from_list(examples)
    if n_eval:
        parts = data.train_test_split(test_size=n_eval, seed=params.seed)
        train_ds, eval_ds = parts["train"], parts["test"]
    else:
        train_ds, eval_ds = data, None

    cuda = _cuda()
    dtype = resolve_dtype(params.compute_dtype)
    optim = params.optimizer if params.optimizer != "auto" else ("paged_adamw_32bit" if cuda else "adamw_torch")
    schedule: str = params.lr_scheduler
    if schedule == "constant" and params.warmup_ratio > 0:
        schedule = "constant_with_warmup"
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    args = SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=params.per_device_batch_size,
        per_device_eval_batch_size=params.per_device_batch_size,
        gradient_accumulation_steps=params.grad_accum,
        learning_rate=params.learning_rate,
        lr_scheduler_type=schedule,
        warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        optim=optim,
        num_train_epochs=params.num_epochs,
        max_steps=params.max_steps,
        seed=params.seed,
        data_seed=params.seed,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=not cuda,
        ddp_backend="gloo" if distributed and not cuda else None,
        activation_checkpointing=params.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if params.gradient_checkpointing else None,
        max_length=params.max_seq_length,
        packing=params.packing,
        packing_strategy="bfd",
        completion_only_loss=not params.train_on_inputs,
        logging_steps=params.logging_steps,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=params.save_total_limit,
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=params.eval_steps or params.save_steps,
        report_to=[],
        disable_tqdm=True,  # the Progress callback shows the steps instead (a bar that also reports to the runner)
    )
    tokenizer = load_tokenizer(params.base_model, params.template == "chat", params.trust_remote_code)
    model = load_base_model(params.base_model, params.load_in_4bit, dtype, resolve_attn(params.attn_implementation),
                            params.trust_remote_code, _device_map())
    lora = LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
                      target_modules=lora_targets(params.target_modules, model.config.model_type), bias="none", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, peft_config=lora, callbacks=_callbacks(out_dir))
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # with tqdm off it prints every log dict; train_log.jsonl has them
    return trainer


def lora_targets(target_modules: str | list[str], model_type: str) -> str | list[str]:
    """The modules LoRA adapts: as given, or for "auto" the architecture's entry of LORA_TARGETS ("all-linear" when
    it has none)."""
    if target_modules != "auto":
        return target_modules
    return LORA_TARGETS.get(model_type, "all-linear")


def _fingerprint(params: TrainParams, data_sha256: str) -> dict[str, Any]:
    """What decides the adapter: every parameter but `merge` (done after training), and the data."""
    return {"params": params.model_dump(mode="json", exclude={"merge"}), "data_sha256": data_sha256}


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(set(a["params"]) | set(b["params"]))
    out = [k for k in keys if a["params"].get(k) != b["params"].get(k)]
    return out + (["data_sha256"] if a["data_sha256"] != b["data_sha256"] else [])


def _last(history: list[dict[str, Any]], *keys: str) -> float | None:
    """The last logged value of the first key that was logged at all."""
    for key in keys:
        vals = [h[key] for h in history if key in h]
        if vals:
            return float(vals[-1])
    return None


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def train(params: TrainParams, train_file: Path, out_dir: Path, resume: bool = True) -> TrainResult:
    """QLoRA-tune `params.base_model` on `train_file` (conversational JSONL); results in `out_dir` (see module doc).

    With resume, a folder that already holds the finished adapter for the same params and data is reused as is,
    and an interrupted run continues from its last complete checkpoint. Every process of a distributed launch
    calls this; only the main one writes logs, cards and the merged model.
    """
    train_file, out_dir = Path(train_file), Path(out_dir)
    t0 = time.perf_counter()
    data_sha = sha256_file(train_file)
    fp = _fingerprint(params, data_sha)
    adapter_dir, merged_dir = out_dir / "adapter", out_dir / "merged"
    card_path = adapter_dir / CARD_NAME
    if resume and card_path.exists() and read_json(card_path).get("fingerprint") == fp:
        result = TrainResult(**read_json(card_path)["result"], reused=True)
        result.merged_dir = merged_dir if params.merge else None
        if params.merge and not merged_dir.exists() and _is_main_process():
            merge_adapter(params.base_model, adapter_dir, merged_dir, params.compute_dtype, params.trust_remote_code)
        return result

    ckpt = last_checkpoint(out_dir / "checkpoints")
    if ckpt is not None and not resume:
        raise FileExistsError(f"{out_dir}: holds checkpoints of an earlier run; resume it or choose another out_dir")
    run_json = out_dir / "run.json"
    if ckpt is not None and run_json.exists() and (changed := _diff(read_json(run_json), fp)):
        raise ValueError(f"{out_dir}: its checkpoints were trained with other settings ({', '.join(changed)}); "
                         "use another out_dir")
    resumed_step = int(ckpt.name.split("-")[-1]) if ckpt else None

    trainer = make_trainer(params, train_file, out_dir)
    main = trainer.is_world_process_zero()
    log_path = out_dir / LOG_NAME
    if main:
        write_json(run_json, fp)
        if resumed_step is None:
            write_jsonl(log_path, [])
        elif log_path.exists():  # drop log lines past the checkpoint: they will be logged again
            kept = [r for r in read_jsonl(log_path, tolerate_torn_tail=True) if r.get("step", 0) <= resumed_step]
            write_jsonl(log_path, kept)
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    evaluated_at = [h["step"] for h in trainer.state.log_history if "eval_loss" in h]
    if trainer.eval_dataset is not None and evaluated_at[-1:] != [trainer.state.global_step]:
        trainer.evaluate()  # the final held-out loss

    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    tmp = out_dir / ".adapter.tmp"
    if main and tmp.exists():
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))

    history = trainer.state.log_history
    n_examples = sum(1 for _ in iter_jsonl(train_file))
    n_eval = split_eval(n_examples, params.eval_fraction)
    result = TrainResult(
        out_dir=out_dir, adapter_dir=adapter_dir, merged_dir=merged_dir if params.merge else None, log_path=log_path,
        base_model=params.base_model, template=params.template, steps=trainer.state.global_step,
        train_loss=_last(history, "loss", "train_loss"), eval_loss=_last(history, "eval_loss"),
        wall_time_s=round(time.perf_counter() - t0, 3), data_sha256=data_sha,
        n_train=n_examples - n_eval, n_eval=n_eval, resumed_from_step=resumed_step,
    )
    world = trainer.accelerator.num_processes
    del trainer
    gc.collect()
    if _cuda():
        import torch

        torch.cuda.empty_cache()
    if main:
        _write_card(tmp, result, params, fp, train_file, world)
        _replace_dir(tmp, adapter_dir)
        if params.merge:
            merge_adapter(params.base_model, adapter_dir, merged_dir, params.compute_dtype, params.trust_remote_code)
    from accelerate import PartialState

    PartialState().wait_for_everyone()
    return result


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place; the old one (if any) goes only once the new one is complete."""
    old = dst.with_name(f".{dst.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        dst.rename(old)
    src.rename(dst)
    if old.exists():
        shutil.rmtree(old)


def _write_card(adapter_dir: Path, result: TrainResult, params: TrainParams, fp: dict[str, Any],
                train_file: Path, world_size: int) -> None:
    import bitsandbytes
    import peft
    import torch
    import transformers
    import trl

    versions = {m.__name__: m.__version__ for m in (torch, transformers, peft, trl, bitsandbytes)}
    card: dict[str, Any] = {
        "base_model": params.base_model,
        "template": params.template,
        "data_file": str(train_file),
        "data_sha256": result.data_sha256,
        "n_train": result.n_train,
        "n_eval": result.n_eval,
        "hyperparameters": params.model_dump(mode="json"),
        "final_train_loss": result.train_loss,
        "final_eval_loss": result.eval_loss,
        "steps": result.steps,
        "wall_time_s": result.wall_time_s,
        "world_size": world_size,
        "versions": versions,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": fp,
        "result": result.model_dump(mode="json", exclude={"reused"}),
    }
    write_json(adapter_dir / CARD_NAME, card)

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    rows = tabulate([(k, json.dumps(v, ensure_ascii=False)) for k, v in card["hyperparameters"].items()],
                    headers=("hyperparameter", "value"), tablefmt="pipe", disable_numparse=True)
    atomic_write_text(adapter_dir / "README.md", (
        f"# QLoRA adapter for {params.base_model}\n\n"
        f"Trained by jinstruct ({'4-bit NF4 QLoRA' if params.load_in_4bit else 'LoRA'}, template `{params.template}`)"
        f" on `{train_file.name}` (sha256 `{result.data_sha256}`): {result.n_train} training and {result.n_eval}"
        f" held-out examples, {result.steps} steps, {world_size} process(es), {result.wall_time_s:.1f} s.\n\n"
        f"Final train loss {fmt(result.train_loss)}, final eval loss {fmt(result.eval_loss)}.\n\n"
        f"{rows}\n\n"
        f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}. Full record: `{CARD_NAME}`.\n"
    ))


# ---------------------------------------------------------------- after training


def merge_adapter(base_model: str, adapter_dir: Path, merged_dir: Path, compute_dtype: str = "auto",
                  trust_remote_code: bool = False) -> Path:
    """Fold the adapter into the base weights (loaded unquantized, in the compute dtype) and save a plain model."""
    from peft import PeftModel

    dtype = resolve_dtype(compute_dtype)
    base = load_base_model(base_model, False, dtype, "sdpa", trust_remote_code, "auto" if _cuda() else None)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp = merged_dir.with_name(f".{merged_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(str(tmp))
    load_tokenizer(adapter_dir).save_pretrained(str(tmp))
    _replace_dir(tmp, merged_dir)
    del base, merged
    gc.collect()
    return merged_dir


def load_for_inference(base_model: str, adapter_dir: Path, load_in_4bit: bool = True,
                       compute_dtype: str = "auto") -> tuple[Any, Any]:
    """The base model with the trained adapter attached, in eval mode, and the tokenizer saved with the adapter."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (not a trained adapter folder)")
    dtype = resolve_dtype(compute_dtype)
    base = load_base_model(base_model, load_in_4bit, dtype, resolve_attn("auto"), device_map="auto" if _cuda() else None)
    has_tokenizer = (adapter_dir / "tokenizer_config.json").exists()
    tokenizer = load_tokenizer(adapter_dir if has_tokenizer else base_model)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    return model, tokenizer
