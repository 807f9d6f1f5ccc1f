"""The training entry point under `accelerate launch` with two CPU processes (DDP over gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from jinstruct.io import read_json, read_jsonl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_train_one_adapter(tmp_path):
    from jinstruct.llm.tinymodel import build_tiny_model

    model = build_tiny_model()
    records = [{"messages": [{"role": "user", "content": f"{i}たす{i}は?"},
                             {"role": "assistant", "content": f"{2 * i}です。"}]} for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                          encoding="utf-8")
    (tmp_path / "job.yaml").write_text(
        f"base_model: {model}\ntrain_file: train.jsonl\nout_dir: run\nlora_r: 4\nmax_steps: 2\n"
        "per_device_batch_size: 2\ngrad_accum: 1\nmax_seq_length: 64\nlogging_steps: 1\nsave_steps: 2\n"
        "eval_fraction: 0.25\npacking: false\n", encoding="utf-8")
    # accelerate's --cpu flag alone starts one process (many CPU processes go through mpirun); its multi-process
    # launcher (torchrun underneath) with no visible GPU runs DDP on the CPU over gloo
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "jinstruct", "train", "--config", str(tmp_path / "job.yaml")]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]

    # both ranks ran the job to the end (each prints its result) ...
    results = [json.loads(chunk) for chunk in _json_objects(proc.stdout)]
    assert len(results) == 2 and {r["steps"] for r in results} == {2}
    # ... as one DDP job: one adapter, one card, one log line per event
    run = tmp_path / "run"
    card = read_json(run / "adapter" / "training_card.json")
    assert card["world_size"] == 2 and card["steps"] == 2 and (card["n_train"], card["n_eval"]) == (6, 2)
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary folders left
    train_log = [r for r in read_jsonl(run / "train_log.jsonl") if r["loss"] is not None]
    assert [r["step"] for r in train_log] == [1, 2]
    # 6 training examples, 2 per process and step: the two ranks share them, so 2 steps make one epoch
    # (one process alone would need 3)
    assert [r["epoch"] for r in train_log] == [0.5, 1.0]


def _json_objects(text: str) -> list[str]:
    """The pretty-printed JSON objects in the output (each starts on a line of its own with '{')."""
    chunks, current = [], None
    for line in text.splitlines():
        if line == "{":
            current = [line]
        elif current is not None:
            current.append(line)
            if line == "}":
                chunks.append("\n".join(current))
                current = None
    return chunks
