"""Task evaluation (notebook 08): the task files, the summary and its intervals, and on the tiny model with a LoRA
adapter: accuracies equal to the `lm_eval` command line's on the same task files, few-shot examples only from the
few-shot split, and token perplexity equal to exp of the mean token loss computed directly with transformers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from jinstruct.io import DataError, read_jsonl
from jinstruct.paths import data_dir
from jinstruct.tasks.harness import (
    EvalModel,
    cli_command,
    evaluate,
    load_lm,
    rolling_documents,
    task_manager,
    task_names,
    token_perplexity,
    write_task_files,
)
from jinstruct.tasks.results import (
    SUMMARY_COLUMNS,
    comparison_table,
    interval,
    plot_tasks,
    read_summary,
    summary_frame,
    summary_rows,
    write_summary,
)

TASKS = ["jinstruct_nli", "jinstruct_sentiment", "jinstruct_commonsense", "jinstruct_qa_ppl"]


def test_task_files_are_written_with_absolute_data_paths(tmp_path):
    folder = write_task_files(tmp_path / "yaml")
    assert set(TASKS) | {"jglue_jnli", "jglue_marc_ja"} == set(task_names(folder))
    doc = yaml.safe_load((folder / "jinstruct_nli.yaml").read_text(encoding="utf-8"))
    files = doc["dataset_kwargs"]["data_files"]
    assert files == {"train": str(data_dir() / "tasks" / "nli_fewshot.jsonl"),
                     "test": str(data_dir() / "tasks" / "nli_test.jsonl")}
    hub = yaml.safe_load((folder / "jglue_jnli.yaml").read_text(encoding="utf-8"))
    assert hub["dataset_kwargs"]["data_files"]["train"] == "JNLI/jglue-train.parquet"  # inside the Hub repo: as is
    assert len(hub["dataset_kwargs"]["revision"]) == 40
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: t\ndataset_path: json\ndataset_kwargs: {data_files: {test: data/tasks/missing.jsonl}}\n")
    with pytest.raises(DataError) as e:
        write_task_files(tmp_path / "out", [bad])
    assert (e.value.path, e.value.field) == (str(bad), "dataset_kwargs.data_files")


def test_task_data_is_balanced_and_disjoint_from_training_data():
    tasks, train = data_dir() / "tasks", data_dir() / "datasets"
    nli = read_jsonl(tasks / "nli_test.jsonl")
    assert len(nli) == 30 and {r["label"] for r in nli} == {"entailment", "contradiction", "neutral"}
    assert [r["label"] for r in read_jsonl(tasks / "commonsense_test.jsonl")].count(0) == 5
    sentences = {v for p in train.glob("*.jsonl") for r in read_jsonl(p) for v in r.values() if isinstance(v, str)}
    for p in tasks.glob("*.jsonl"):
        for r in read_jsonl(p):
            assert not {r.get("premise"), r.get("hypothesis"), r.get("text"), r.get("question")} & sentences, r


RESULTS = {
    "results": {
        "jinstruct_nli": {"alias": "jinstruct_nli", "acc,none": 0.5, "acc_stderr,none": 0.1, "sample_len": 30},
        "jinstruct_qa_ppl": {"alias": "jinstruct_qa_ppl", "byte_perplexity,none": 4.0,
                             "byte_perplexity_stderr,none": "N/A", "bits_per_byte,none": 2.0,
                             "bits_per_byte_stderr,none": "N/A"},
    },
    "n-samples": {"jinstruct_nli": {"original": 30, "effective": 30}, "jinstruct_qa_ppl": {"effective": 30}},
    "n-shot": {"jinstruct_nli": 2, "jinstruct_qa_ppl": 0},
}


def test_summary_rows_intervals_and_the_comparison_table(tmp_path):
    base = summary_rows(RESULTS, "base", {"jinstruct_qa_ppl": {"value": 120.0, "docs": 30}})
    tuned_results = json.loads(json.dumps(RESULTS))
    tuned_results["results"]["jinstruct_nli"]["acc,none"] = 0.95
    tuned = summary_rows(tuned_results, "tuned")
    frame = summary_frame(base + tuned)
    assert list(frame.columns) == SUMMARY_COLUMNS
    nli = frame[(frame.task == "jinstruct_nli") & (frame.model == "base")].iloc[0]
    assert (nli.metric, nli.value, nli.stderr, nli.n, nli.num_fewshot) == ("acc", 0.5, 0.1, 30, 2)
    ppl = frame[(frame.metric == "token_perplexity")].iloc[0]
    assert (ppl.value, ppl.n, ppl.num_fewshot, math.isnan(ppl.stderr)) == (120.0, 30, 0, True)
    assert len(frame) == 4 + 3  # base: acc, byte ppl, bits/byte, token ppl; tuned: the same but token ppl
    path = write_summary(frame, tmp_path / "summary.csv")
    assert path.read_text().splitlines()[0] == "task,model,metric,value,stderr,n,num_fewshot"
    pd.testing.assert_frame_equal(read_summary(path), frame)

    lo, hi = interval(0.5, 0.1, "acc")
    assert (round(lo, 4), round(hi, 4)) == (0.304, 0.696)
    assert interval(0.95, 0.1, "acc") == (pytest.approx(0.95 - 0.196, abs=1e-3), 1.0)  # clipped to [0, 1]
    assert all(math.isnan(x) for x in interval(4.0, math.nan, "byte_perplexity"))
    table = comparison_table(frame, ["base", "tuned"])
    assert list(table.columns) == ["base", "tuned", "tuned - base"]
    assert table.loc[("jinstruct_nli", "acc", 2), "base"] == "0.500 [0.304, 0.696]"
    assert table.loc[("jinstruct_nli", "acc", 2), "tuned"] == "0.950 [0.754, 1.000]"
    assert table.loc[("jinstruct_nli", "acc", 2), "tuned - base"] == "+0.45"
    assert table.loc[("jinstruct_qa_ppl", "byte_perplexity", 0), "base"] == "4"
    fig = plot_tasks(frame, ["base", "tuned"])
    assert len(fig.axes) == 2


# ---------------------------------------------------------------- the tiny model, through lm-eval


@pytest.fixture(scope="module")
def tiny_and_adapter(tmp_path_factory):
    """The tiny model and a LoRA adapter with random (non-zero) weights, so the tuned model differs from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from jinstruct.llm.tinymodel import build_tiny_model

    base = str(build_tiny_model())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, init_lora_weights=False, task_type="CAUSAL_LM",
                                                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    adapter = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(adapter)
    return base, str(adapter)


@pytest.fixture(scope="module")
def api_run(tiny_and_adapter, tmp_path_factory):
    base, adapter = tiny_and_adapter
    folder = write_task_files(tmp_path_factory.mktemp("tasks") / "yaml")
    model = EvalModel("tuned", base, adapter)
    lm = load_lm(model, device="cpu", dtype="float32", batch_size=8)
    results = evaluate(lm, TASKS, task_manager(folder, TASKS), num_fewshot=2)
    return model, folder, lm, results


@pytest.mark.slow
def test_accuracies_equal_the_lm_eval_command_line(api_run, tmp_path):
    model, folder, _, results = api_run
    out = tmp_path / "cli"
    cmd = cli_command(model, TASKS, folder, num_fewshot=2, batch_size=8, device="cpu", dtype="float32",
                      output_path=out)
    cmd[0] = str(Path(sys.executable).with_name("lm_eval"))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [path] = out.glob("**/results_*.json")
    cli = json.loads(path.read_text(encoding="utf-8"))["results"]
    for task in ("jinstruct_nli", "jinstruct_sentiment", "jinstruct_commonsense"):
        assert cli[task]["acc,none"] == results["results"][task]["acc,none"], task
        assert cli[task]["acc_stderr,none"] == results["results"][task]["acc_stderr,none"], task
    assert results["results"]["jinstruct_commonsense"]["acc_norm,none"] == cli["jinstruct_commonsense"]["acc_norm,none"]
    assert cli["jinstruct_qa_ppl"]["byte_perplexity,none"] == pytest.approx(
        results["results"]["jinstruct_qa_ppl"]["byte_perplexity,none"], rel=1e-9)
    assert results["n-shot"] == {"jinstruct_nli": 2, "jinstruct_sentiment": 2, "jinstruct_commonsense": 2,
                                 "jinstruct_qa_ppl": 0}
    assert results["n-samples"]["jinstruct_nli"]["effective"] == 30


@pytest.mark.slow
def test_few_shot_examples_come_only_from_the_few_shot_split(api_run):
    *_, results = api_run
    pool = {r["premise"] for r in read_jsonl(data_dir() / "tasks" / "nli_fewshot.jsonl")}
    scored = {r["premise"] for r in read_jsonl(data_dir() / "tasks" / "nli_test.jsonl")}
    for s in results["samples"]["jinstruct_nli"]:
        context = s["arguments"][0][0]
        shown = [p for p in pool | scored if f"### 前提文:\n{p}\n" in context]
        assert len(shown) == 3 and s["doc"]["premise"] in shown  # two examples from the pool, then the row itself
        assert len(set(shown) & pool) == 2


@pytest.mark.slow
def test_token_perplexity_is_exp_of_the_mean_token_loss(api_run, tiny_and_adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    *_, lm, results = api_run
    base, adapter = tiny_and_adapter
    ours = token_perplexity(results, "jinstruct_qa_ppl", lm.tokenizer)
    texts = [text for text, _ in rolling_documents(results, "jinstruct_qa_ppl")]
    assert texts == [r["answer"] for r in read_jsonl(data_dir() / "datasets" / "heldout_qa_ja.jsonl")]

    tok = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter).eval()
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    loss_sum, n_tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([[prefix] + tok(text, add_special_tokens=False)["input_ids"]])
            loss = model(input_ids=ids, labels=ids).loss.item()  # mean over the text's tokens (the prefix is context)
            n = ids.shape[1] - 1
            loss_sum, n_tokens = loss_sum + loss * n, n_tokens + n
    assert ours["tokens"] == n_tokens and ours["docs"] == 30
    assert ours["value"] == pytest.approx(math.exp(loss_sum / n_tokens), rel=1e-5)
    # byte perplexity is the same log-likelihood over UTF-8 bytes
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert results["results"]["jinstruct_qa_ppl"]["byte_perplexity,none"] == pytest.approx(
        math.exp(loss_sum / n_bytes), rel=1e-5)


@pytest.mark.slow
def test_evaluate_run_writes_the_summary_and_reuses_unchanged_results(tmp_path):
    from types import SimpleNamespace

    from jinstruct.formats.layout import RunLayout
    from jinstruct.run.schema import TasksSection
    from jinstruct.tasks.stage import evaluate_run

    section = TasksSection(models=[{"model_id": "tiny-base", "base_model": "tiny"}], tasks=["jinstruct_nli"],
                           shots=[0, 1], limit=4, dtype="float32")
    stage = SimpleNamespace(cfg=SimpleNamespace(tasks=section, train=SimpleNamespace(models=[]), device="cpu"),
                            layout=RunLayout(tmp_path))
    first = evaluate_run(stage)
    assert first.reused == []
    assert list(first.summary["num_fewshot"]) == [0, 1, 0, 0, 0]  # nli acc at 0 and 1 shots, the perplexities once
    assert set(first.summary["metric"]) == {"acc", "bits_per_byte", "byte_perplexity", "token_perplexity"}
    assert (first.summary["n"] == 4).all()
    saved = json.loads(stage.layout.task_results("tiny-base", 1).read_text(encoding="utf-8"))
    assert "samples" not in saved and saved["jinstruct"]["command"].startswith("lm_eval --model hf")
    assert len(read_jsonl(stage.layout.task_samples("tiny-base", "jinstruct_nli", 1))) == 4
    again = evaluate_run(stage)
    assert again.reused == ["tasks/tiny-base/results_0shot.json", "tasks/tiny-base/results_1shot.json"]
    pd.testing.assert_frame_equal(again.summary, first.summary)
    assert read_summary(stage.layout.tasks_summary).equals(first.summary)
    section.limit = 5  # another setting: evaluated again
    assert evaluate_run(stage).reused == []
