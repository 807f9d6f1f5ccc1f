"""Answering speed of stage 05: vLLM serving base + adapter against transformers `generate`, on the same questions.

    python bench/answer_speed.py                      # the tiny model and a tiny adapter, the 80 ja_qa80 questions
    python bench/answer_speed.py --adapter runs/tiny/models/tiny-sft/adapter --repeats 3 --json out.json

Both engines answer the same benchmark questions with the same sampling settings (FastChat's temperature per
category, plain temperature sampling, the same `--max-new-tokens`) through stage 05's own functions:
`answer_with_transformers` (batches of `--batch-size`, the adapter on the 4-bit base as stage 05 loads a QLoRA model,
and on the unquantised base) and `answer_with_client` against a `VLLMServer` serving the base with the adapter as a
LoRA module (`--concurrency` requests in flight). Tokens are the answers' tokens under the model's tokenizer, counted
the same way for every engine; seconds are the answering alone (vLLM's start and the model loads are reported apart).
Every repeat answers into a fresh file with its own cache, so nothing is served from a cache; the best repeat counts.
The adapter, when not given, is trained the way the tiny config's stage 04 trains `tiny-sft` (8 QLoRA steps, r=8).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jinstruct.answer.engines import answer_with_client, answer_with_transformers, load_answer_model
from jinstruct.formats.fastchat import load_benchmark
from jinstruct.io import read_jsonl
from jinstruct.llm import open_client
from jinstruct.llm.tinymodel import build_tiny_model
from jinstruct.llm.vllm_server import VLLMServer

NO_WHITESPACE = ["--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']


def train_adapter(base: str, folder: Path) -> Path:
    """A tiny-sft adapter as configs/tiny.yaml's stage 04 makes it, on the shipped seed tasks' first instances."""
    from jinstruct.train.qlora import TrainParams, train

    seeds = read_jsonl("data/seeds/ja_seed_tasks.jsonl")[:64]
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": s["instruction"] + (f"\n\n{s['instances'][0]['input']}" if s["instances"][0]["input"] else "")},
        {"role": "assistant", "content": s["instances"][0]["output"]}]}, ensure_ascii=False) + "\n" for s in seeds),
        encoding="utf-8")
    params = TrainParams(base_model=base, template="chat", load_in_4bit=True, lora_r=8, lora_alpha=16,
                         learning_rate=1e-3, max_steps=8, per_device_batch_size=4, grad_accum=1, max_seq_length=256,
                         eval_fraction=0.0, logging_steps=1, save_steps=100, gradient_checkpointing=False)
    return train(params, data, folder / "run").adapter_dir


def count_tokens(tokenizer: Any, path: Path) -> tuple[int, int]:
    """(answers, tokens of every answer turn) of an answer file."""
    answers = read_jsonl(path)
    turns = [t for a in answers for c in a["choices"] for t in c["turns"]]
    return len(answers), sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in turns)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter", help="a trained adapter folder (default: train a tiny one)")
    p.add_argument("--benchmark", default="data/bench/ja_qa80")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8, help="transformers: prompts per generate call")
    p.add_argument("--concurrency", type=int, default=16, help="vLLM: requests in flight")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()

    base = str(build_tiny_model())
    work = Path(tempfile.mkdtemp(prefix="answer-speed-"))
    adapter = Path(args.adapter) if args.adapter else train_adapter(base, work)
    questions, _ = load_benchmark(args.benchmark)
    rows: list[dict[str, Any]] = []

    def record(engine: str, setup: str, startup_s: float, runs: list[tuple[int, int, float]]) -> None:
        answers, tokens, seconds = max(runs, key=lambda r: r[1] / r[2])
        rows.append({"engine": engine, "setup": setup, "questions": len(questions), "answers": answers,
                     "tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                     "startup_s": round(startup_s, 1)})

    tokenizer = None
    for four_bit in (True, False):
        t0 = time.perf_counter()
        model, tokenizer = load_answer_model(base, adapter, load_in_4bit=four_bit)
        startup = time.perf_counter() - t0
        runs = []
        for r in range(args.repeats):
            out = work / f"hf-{four_bit}-{r}.jsonl"
            t = time.perf_counter()
            answer_with_transformers(questions, model, tokenizer, "bench", out, max_new_tokens=args.max_new_tokens,
                                     batch_size=args.batch_size, seed=r, progress=False)
            runs.append((*count_tokens(tokenizer, out), time.perf_counter() - t))
        record("transformers generate", f"adapter on the {'4-bit' if four_bit else 'fp32'} base, batch "
               f"{args.batch_size}", startup, runs)
        del model

    server = VLLMServer(base, "tiny", loras={"tiny-sft": adapter}, dtype="float32", max_model_len=2048,
                        log_path=work / "vllm.log", extra_args=NO_WHITESPACE)
    with server:
        runs = []
        for r in range(args.repeats):
            out = work / f"vllm-{r}.jsonl"
            settings = server.endpoint("tiny-sft", concurrency=args.concurrency)
            with open_client(settings, None, "bench", work / f"cache-{r}.sqlite3", progress=False) as client:
                t = time.perf_counter()
                answer_with_client(questions, client, "bench", out, max_tokens=args.max_new_tokens, seed=r)
                runs.append((*count_tokens(tokenizer, out), time.perf_counter() - t))
        record("vLLM (CPU build)", f"adapter as a LoRA module on the fp32 base, {args.concurrency} in flight",
               server.startup_s or 0.0, runs)

    reference = rows[0]["tokens_per_s"]
    for row in rows:
        row["x_4bit_generate"] = round(row["tokens_per_s"] / reference, 1)
    import pandas as pd

    print(f"{len(questions)} questions of {args.benchmark}, max {args.max_new_tokens} new tokens, best of "
          f"{args.repeats}; adapter {adapter}")
    print(pd.DataFrame(rows).to_markdown(index=False))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
