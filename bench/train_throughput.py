"""QLoRA training throughput: a plain baseline against jinstruct.train.qlora's configuration, in one run.

    python bench/train_throughput.py                  # GPU: Llama-3-8B shape at 512 and 2048 tokens, + 70B fit check
    python bench/train_throughput.py --json out.json  # also write the rows

Both setups train the same 4-bit NF4 model (random weights from a real config, no download) with LoRA r=64 on every
linear layer, on the same synthetic conversations whose lengths spread from 1/16 of the sequence length to all of it:
  (a) baseline: peft + transformers.Trainer, batches padded to the longest, no packing, SDPA attention,
      gradient checkpointing, loss from the full logits;
  (b) ours: `jinstruct.train.qlora.make_trainer` (TRL SFTTrainer): best-fit packing into padding-free rows,
      FlashAttention 2 when installed (else SDPA with the packed block mask), gradient checkpointing, chunked loss.
Tokens per second count real (non-padding) tokens. Peak memory is torch.cuda.max_memory_allocated over the run.

The 70B check takes a Llama-3-70B config on the meta device (no memory), counts its quantized and unquantized
parameters and LoRA parameters, and prices them with the bytes per quantized parameter measured on the 8B model;
activation memory is the one measured for (b) at the longest sequence length, scaled by hidden size x layers
(an upper bound: with checkpointing only the stored layer inputs grow with depth).

Without a CUDA GPU the script says so and runs a tiny smoke size on the CPU (no peak memory; 70B priced at the
theoretical NF4 + double-quant size, activations not measured). On a shared CPU, OMP_NUM_THREADS=1 gives steadier
numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from jinstruct.train.qlora import (
    TrainParams,
    load_base_model,
    make_trainer,
    resolve_attn,
    resolve_dtype,
)
from transformers import LlamaConfig

LLAMA3_8B: dict[str, Any] = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192, "rope_theta": 500000.0}
LLAMA3_70B = {**LLAMA3_8B, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
              "num_attention_heads": 64}
TINY = {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 4096}
GPU_BYTES_141GB = 141e9
NF4_DQ_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes + 8-bit absmax per 64 + fp32 scale per 256 absmax
LORA_BYTES = 2 + 2 + 8  # bf16 weight and gradient, two fp32 Adam moments


def make_model_dir(root: Path, arch: dict[str, Any], tokenizer_dir: Path) -> Path:
    """A random-weight Llama saved in bf16 (the 4-bit load then goes through the real loading path)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    cfg = LlamaConfig(**{**arch, "vocab_size": max(arch.get("vocab_size", 0), len(tok))},
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    out = root / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    gc.collect()
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


def make_data(path: Path, tokenizer_dir: Path, seq_len: int, n: int, seed: int = 0) -> Path:
    """n conversations whose token lengths are log-uniform in [seq_len/16, seq_len*0.9], a third of it prompt."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rng = random.Random(seed)
    normal = [i for i in range(len(tok)) if i not in set(tok.all_special_ids)]
    lines = []
    for _ in range(n):
        total = int(math.exp(rng.uniform(math.log(seq_len / 16), math.log(seq_len * 0.9))))
        k = max(2, total // 3)
        prompt = tok.decode([rng.choice(normal) for _ in range(k)])
        answer = tok.decode([rng.choice(normal) for _ in range(max(2, total - k - 8))])
        lines.append(json.dumps({"messages": [{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": answer}]}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Meter:
    """Wall time per optimizer step (synchronized on GPU) and real tokens per collated batch."""

    def __init__(self, collator: Any):
        self.collator, self._t = collator, 0.0
        self.tokens: list[int] = []
        self.times: list[float] = []

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        mask = batch.get("attention_mask")
        self.tokens.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        return batch

    def callback(self) -> Any:
        from transformers import TrainerCallback

        meter = self

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                torch.cuda.synchronize() if torch.cuda.is_available() else None
                meter._t = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                torch.cuda.synchronize() if torch.cuda.is_available() else None
                meter.times.append(time.perf_counter() - meter._t)

        return StepTimer()

    def result(self, warmup: int) -> tuple[float, float]:
        times, tokens = self.times[warmup:], self.tokens[warmup:len(self.times)]
        return sum(tokens) / sum(times), sum(times) / len(times)


def _params(model_dir: Path, seq_len: int, batch: int, steps: int, packing: bool) -> TrainParams:
    return TrainParams(base_model=str(model_dir), lora_r=64, lora_alpha=16, max_seq_length=seq_len,
                       per_device_batch_size=batch, grad_accum=1, max_steps=steps, packing=packing, eval_fraction=0.0,
                       warmup_ratio=0.0, logging_steps=1000, save_steps=100000, gradient_checkpointing=True)


def run_ours(model_dir: Path, data: Path, work: Path, seq_len: int, batch: int, steps: int, warmup: int
             ) -> dict[str, Any]:
    trainer = make_trainer(_params(model_dir, seq_len, batch, warmup + steps, packing=True), data, work / "ours")
    meter = Meter(trainer.data_collator)
    trainer.data_collator = meter
    trainer.add_callback(meter.callback())
    return _measure(trainer, meter, warmup)


def run_baseline(model_dir: Path, data: Path, work: Path, seq_len: int, batch: int, steps: int, warmup: int
                 ) -> dict[str, Any]:
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, Trainer, TrainingArguments
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    ids = [tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False)[:seq_len] for r in rows]
    cuda = torch.cuda.is_available()
    dtype = resolve_dtype("auto")
    model = load_base_model(str(model_dir), True, dtype, "sdpa", device_map={"": 0} if cuda else None)
    model = get_peft_model(model, LoraConfig(r=64, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=str(work / "baseline"), per_device_train_batch_size=batch, max_steps=warmup + steps,
                             learning_rate=2e-4, optim="paged_adamw_32bit" if cuda else "adamw_torch",
                             bf16=dtype == torch.bfloat16, use_cpu=not cuda, activation_checkpointing=True,
                             activation_checkpointing_kwargs={"use_reentrant": False}, logging_steps=1000,
                             save_strategy="no", report_to=[], remove_unused_columns=False, seed=0)
    meter = Meter(DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id))
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": ids}),
                      data_collator=meter, callbacks=[meter.callback()])
    model.enable_input_require_grads()
    return _measure(trainer, meter, warmup)


def _measure(trainer: Any, meter: Meter, warmup: int) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    tokens_per_s, step_s = meter.result(warmup)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    out = {"tokens_per_s": tokens_per_s, "step_s": step_s, "peak_gib": peak,
           "tokens_per_step": sum(meter.tokens[warmup:len(meter.times)]) / max(1, len(meter.times) - warmup)}
    del trainer
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def static_bytes_per_quantized_param(model_dir: Path) -> float:
    """Measured: GPU bytes of the 4-bit model, less its unquantized tensors, per quantized parameter."""
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    model = load_base_model(str(model_dir), True, resolve_dtype("auto"), "sdpa", device_map={"": 0})
    used = torch.cuda.memory_allocated() - before
    n_quant, n_plain, _ = count_params(model.config)
    plain_bytes = n_plain * 2
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return (used - plain_bytes) / n_quant


def count_params(config: LlamaConfig, r: int = 64) -> tuple[int, int, int]:
    """(parameters in the decoder's linear layers, other parameters, LoRA parameters at rank r), on the meta device."""
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    quant = plain = lora = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            quant += module.weight.numel()
            lora += r * (module.in_features + module.out_features)
    plain = sum(p.numel() for p in model.parameters()) - quant
    return quant, plain, lora


def fit_70b(bytes_per_qparam: float, act_bytes_8b: float | None, gpu_bytes: float) -> dict[str, Any]:
    cfg70, cfg8 = LlamaConfig(**LLAMA3_70B), LlamaConfig(**LLAMA3_8B)
    quant, plain, lora = count_params(cfg70)
    weights = quant * bytes_per_qparam + plain * 2
    adapters = lora * LORA_BYTES
    act = None
    if act_bytes_8b is not None:
        act = act_bytes_8b * (cfg70.hidden_size / cfg8.hidden_size) * (cfg70.num_hidden_layers / cfg8.num_hidden_layers)
    total = weights + adapters + (act or 0)
    return {"params_b": (quant + plain) / 1e9, "weights_gb": weights / 1e9, "lora_optimizer_gb": adapters / 1e9,
            "activations_gb": None if act is None else act / 1e9, "total_gb": total / 1e9,
            "gpu_gb": gpu_bytes / 1e9, "fits": total < gpu_bytes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-lens", type=int, nargs="+")
    ap.add_argument("--batch", type=int, help="sequences (a) / packed rows (b) per step")
    ap.add_argument("--steps", type=int, help="measured steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--work-dir", type=Path, help="where the random model is written (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    from jinstruct.llm.tinymodel import build_tiny_model

    cuda = torch.cuda.is_available()
    if cuda:
        arch, name = LLAMA3_8B, "Llama-3-8B shape (random weights)"
        seq_lens, batch, steps = args.seq_lens or [512, 2048], args.batch or 4, args.steps or 8
        print(f"GPU: {torch.cuda.get_device_name(0)}; attention for (b): {resolve_attn('auto')}")
    else:
        arch, name = TINY, "tiny smoke size"
        seq_lens, batch, steps = args.seq_lens or [128, 256], args.batch or 2, args.steps or 3
        args.warmup = min(args.warmup, 1)
        print("No CUDA GPU: running a tiny smoke size on the CPU (numbers say nothing about GPU speed; "
              "peak memory not measured).")
    tokenizer_dir = build_tiny_model()
    work = Path(tempfile.mkdtemp(dir=args.work_dir, prefix="bench-train-"))
    rows: list[dict[str, Any]] = []
    try:
        model_dir = make_model_dir(work, arch, tokenizer_dir)
        for seq_len in seq_lens:
            n = (args.warmup + steps) * batch * 24
            data = make_data(work / f"data-{seq_len}.jsonl", tokenizer_dir, seq_len, n)
            for setup, fn in (("(a) baseline", run_baseline), ("(b) ours", run_ours)):
                r = fn(model_dir, data, work, seq_len, batch, steps, args.warmup)
                rows.append({"model": name, "seq_len": seq_len, "setup": setup, **r})
                print(f"  done: {setup} at {seq_len}: {r['tokens_per_s']:.0f} tokens/s", file=sys.stderr)
        bpq = static_bytes_per_quantized_param(model_dir) if cuda else NF4_DQ_BYTES
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{name}, batch {batch}, {steps} measured steps after {args.warmup} warm-up")
    print(f"{'seq':>5} {'setup':<13} {'tokens/s':>10} {'step s':>8} {'tok/step':>9} {'peak GiB':>9} {'speedup':>8}")
    for r in rows:
        base = next(b for b in rows if b["seq_len"] == r["seq_len"] and b["setup"].startswith("(a)"))
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "n/a"
        print(f"{r['seq_len']:>5} {r['setup']:<13} {r['tokens_per_s']:>10.0f} {r['step_s']:>8.3f} "
              f"{r['tokens_per_step']:>9.0f} {peak:>9} {r['tokens_per_s'] / base['tokens_per_s']:>7.2f}x")

    act = None
    if cuda:  # activations of (b) at the longest length: peak less weights and LoRA/optimizer state
        longest = max((r for r in rows if r["setup"].startswith("(b)")), key=lambda r: r["seq_len"])
        q8, p8, l8 = count_params(LlamaConfig(**LLAMA3_8B))
        act = longest["peak_gib"] * 2**30 - (q8 * bpq + p8 * 2) - l8 * LORA_BYTES
    gpu_bytes = torch.cuda.get_device_properties(0).total_memory if cuda else GPU_BYTES_141GB
    fit = fit_70b(bpq, act, gpu_bytes)
    source = "measured on the 8B model" if cuda else "theoretical NF4 + double quant"
    print(f"\n70B-class (Llama-3-70B config, {fit['params_b']:.1f}B parameters) 4-bit QLoRA r=64 on one GPU:")
    print(f"  quantized weights + bf16 embeddings  {fit['weights_gb']:7.1f} GB  ({bpq:.4f} bytes/param, {source})")
    print(f"  LoRA weights, grads, Adam states     {fit['lora_optimizer_gb']:7.1f} GB")
    if fit["activations_gb"] is None:
        print("  activations                              n/a (measured on a GPU only)")
    else:
        print(f"  activations (8B peak, scaled)        {fit['activations_gb']:7.1f} GB  "
              f"(seq {longest['seq_len']}, batch {batch}, upper bound)")
    print(f"  total                                {fit['total_gb']:7.1f} GB  of {fit['gpu_gb']:.0f} GB: "
          f"{'fits' if fit['fits'] else 'does NOT fit'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "fit_70b": fit}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
