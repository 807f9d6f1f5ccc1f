"""QLoRA training on the CPU path: data handling, prompt masking, 4-bit training, resume, reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jinstruct.io import DataError, read_json, read_jsonl, sha256_file
from jinstruct.train.qlora import TrainParams, last_checkpoint, load_examples, lora_targets, split_eval
from jinstruct.train.templates import (
    ALPACA_2309_HEADER,
    ALPACA_2309_HEADER_INPUT,
    ALPACA_JA_HEADER,
    ALPACA_JA_HEADER_INPUT,
    alpaca_ja_prompt,
    instruction_prompt,
    render,
    stops,
)
from jinstruct.train.cli import load_job

QA = [
    ("日本の首都はどこですか?", "東京です。"),
    ("猫について一文で説明してください。", "猫は小さくて可愛い動物です。"),
    ("一週間は何日ですか?", "七日です。"),
    ("朝の挨拶を書いてください。", "おはようございます。"),
]


def write_records(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def qa_records(n: int = 4) -> list[dict]:
    return [{"messages": [{"role": "user", "content": QA[i % 4][0]}, {"role": "assistant", "content": QA[i % 4][1]}]}
            for i in range(n)]


@pytest.fixture(scope="module")
def tiny_model() -> str:
    from jinstruct.llm.tinymodel import build_tiny_model

    return str(build_tiny_model())


def small_params(model: str, **kw) -> TrainParams:
    base = {"base_model": model, "lora_r": 8, "lora_alpha": 16, "per_device_batch_size": 4, "grad_accum": 1,
            "max_seq_length": 128, "logging_steps": 1, "save_steps": 2, "eval_fraction": 0.0, "warmup_ratio": 0.0}
    return TrainParams(**{**base, **kw})


# ---------------------------------------------------------------- data and parameters (no model)


def test_alpaca_ja_prompt_with_and_without_input():
    assert alpaca_ja_prompt("要約してください。") == f"{ALPACA_JA_HEADER}\n\n### 指示:\n要約してください。\n\n### 応答:\n"
    assert alpaca_ja_prompt("要約してください。", "今日は晴れ。") == (
        f"{ALPACA_JA_HEADER_INPUT}\n\n### 指示:\n要約してください。\n\n### 入力:\n今日は晴れ。\n\n### 応答:\n")
    assert "### 入力:" not in alpaca_ja_prompt("指示", "  ")  # a blank input is no input


def test_the_2309_template_answers_after_henntou_and_stops_at_the_next_section(tmp_path):
    assert instruction_prompt("alpaca_ja_2309", "要約してください。", "今日は晴れ。") == (
        f"{ALPACA_2309_HEADER_INPUT}\n\n### 指示:\n要約してください。\n\n### 入力:\n今日は晴れ。\n\n### 返答:\n")
    assert instruction_prompt("alpaca_ja_2309", "挨拶して") == f"{ALPACA_2309_HEADER}\n\n### 指示:\n挨拶して\n\n### 返答:\n"
    assert stops("alpaca_ja_2309") == ("### 指示:", "### 入力:", "### 返答:") and stops("chat") == ()
    assert render(None, "alpaca_ja_2309", [{"role": "user", "content": "一"}, {"role": "assistant", "content": "二"},
                                           {"role": "user", "content": "三"}]).endswith(
        "### 返答:\n二\n\n### 指示:\n三\n\n### 返答:\n")
    recs = [{"messages": [{"role": "user", "content": "訳して: cat"}, {"role": "assistant", "content": "猫"}],
             "instruction": "英語を日本語に訳してください。", "input": "cat"}]
    [ex] = load_examples(write_records(tmp_path / "t.jsonl", recs), "alpaca_ja_2309")
    assert ex == {"prompt": instruction_prompt("alpaca_ja_2309", "英語を日本語に訳してください。", "cat"), "completion": "猫"}
    with pytest.raises(ValueError, match="alpaca_ja_2309"):
        instruction_prompt("alpaca", "x")


def test_lora_targets_by_architecture():
    assert lora_targets("auto", "gpt_neox") == ["query_key_value"]
    assert lora_targets("auto", "llama") == "all-linear"
    assert lora_targets(["q_proj"], "gpt_neox") == ["q_proj"] and lora_targets("all-linear", "gpt_neox") == "all-linear"
    assert TrainParams(base_model="m").train_on_inputs is False


def test_load_examples_chat_puts_every_earlier_turn_in_the_prompt(tmp_path):
    rec = {"messages": [{"role": "system", "content": "丁寧に。"}, {"role": "user", "content": "一"},
                        {"role": "assistant", "content": "二"}, {"role": "user", "content": "三"},
                        {"role": "assistant", "content": "四"}], "id": "x1"}
    [ex] = load_examples(write_records(tmp_path / "t.jsonl", [rec]), "chat")
    assert [m["content"] for m in ex["prompt"]] == ["丁寧に。", "一", "二", "三"]
    assert ex["completion"] == [{"role": "assistant", "content": "四"}]


def test_load_examples_alpaca_uses_instruction_and_input_fields(tmp_path):
    recs = [
        {"messages": [{"role": "user", "content": "翻訳して: cat"}, {"role": "assistant", "content": "猫"}],
         "instruction": "英語を日本語に翻訳してください。", "input": "cat"},
        {"messages": [{"role": "user", "content": "挨拶して"}, {"role": "assistant", "content": "こんにちは"}]},
    ]
    a, b = load_examples(write_records(tmp_path / "t.jsonl", recs), "alpaca_ja")
    assert a == {"prompt": alpaca_ja_prompt("英語を日本語に翻訳してください。", "cat"), "completion": "猫"}
    assert b == {"prompt": alpaca_ja_prompt("挨拶して"), "completion": "こんにちは"}


@pytest.mark.parametrize("line2, template, field, words", [
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "chat",
     "messages.1.role", "last message"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}, "chat",
     "messages.1.role", "Input should be"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant"}]}, "chat",
     "messages.1.content", "required"),
    ({"messages": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]}, "chat",
     "messages", "no user message"),
    ({"text": "plain"}, "chat", "messages", "required"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                   {"role": "assistant", "content": "b"}]}, "alpaca_ja", "messages", "exactly one user"),
])
def test_bad_records_name_file_line_and_field(tmp_path, line2, template, field, words):
    path = write_records(tmp_path / "bad.jsonl", [qa_records(1)[0], line2])
    with pytest.raises(DataError) as e:
        load_examples(path, template)
    assert (e.value.path, e.value.line, e.value.field) == (str(path), 2, field)
    assert words in e.value.problem


def test_empty_or_broken_files_are_data_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no training records"):
        load_examples(tmp_path / "empty.jsonl", "chat")
    (tmp_path / "torn.jsonl").write_text(json.dumps(qa_records(1)[0]) + "\n{\"messages\": [\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_examples(tmp_path / "torn.jsonl", "chat")
    assert e.value.line == 2


@pytest.mark.parametrize("n, fraction, expected", [(100, 0.05, 5), (10, 0.05, 1), (1, 0.5, 0), (50, 0.0, 0),
                                                     (3, 0.9, 2), (1000, 0.1, 100)])
def test_split_eval(n, fraction, expected):
    assert split_eval(n, fraction) == expected


def test_params_defaults_follow_qlora_and_reject_unknown_fields():
    p = TrainParams(base_model="m")
    assert (p.lora_r, p.lora_alpha, p.lora_dropout, p.target_modules, p.load_in_4bit) == (64, 16, 0.05, "all-linear",
                                                                                           True)
    with pytest.raises(ValueError, match="lora_rank"):
        TrainParams(base_model="m", lora_rank=8)
    with pytest.raises(ValueError, match="lr_scheduler"):
        TrainParams(base_model="m", lr_scheduler="linear")
    with pytest.raises(ValueError, match="lora_r"):
        TrainParams(base_model="m", lora_r=0)


def test_load_job_resolves_paths_from_the_yaml_and_applies_overrides(tmp_path):
    cfg = tmp_path / "cfg" / "job.yaml"
    cfg.parent.mkdir()
    cfg.write_text("base_model: some/model\ntrain_file: ../data/train.jsonl\nout_dir: /abs/out\nlora_r: 8\n")
    job = load_job(cfg, ["max_steps=7", "template=alpaca_ja"])
    assert job.train_file == (tmp_path / "data" / "train.jsonl").resolve()
    assert job.out_dir == Path("/abs/out")
    assert (job.lora_r, job.max_steps, job.template) == (8, 7, "alpaca_ja")


def test_load_job_errors_name_the_file_and_field(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("base_model: m\ntrain_file: t.jsonl\nout_dir: o\nlearning_rate: fast\n")
    with pytest.raises(DataError) as e:
        load_job(cfg)
    assert (e.value.path, e.value.field) == (str(cfg), "learning_rate")
    cfg.write_text("base_model: m\nout_dir: o\n")
    with pytest.raises(DataError) as e:
        load_job(cfg)
    assert e.value.field == "train_file"
    cfg.write_text("base_model: [unclosed\n")
    with pytest.raises(DataError, match="invalid YAML"):
        load_job(cfg)


def test_last_checkpoint_skips_unfinished_ones(tmp_path):
    for step, done in [(2, True), (10, True), (12, False)]:
        (tmp_path / f"checkpoint-{step}").mkdir()
        if done:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert last_checkpoint(tmp_path / "missing") is None


# ---------------------------------------------------------------- with the tiny model


def test_prompt_tokens_are_masked(tiny_model, tmp_path):
    from jinstruct.train.qlora import make_trainer

    recs = [{"messages": [{"role": "system", "content": "丁寧に答えてください。"},
                          {"role": "user", "content": QA[0][0]}, {"role": "assistant", "content": QA[0][1]}]},
            qa_records(2)[1]]
    path = write_records(tmp_path / "t.jsonl", recs)
    for template, answers in [("chat", [QA[0][1] + "<|end|>\n", QA[1][1] + "<|end|>\n"]),
                              ("alpaca_ja", None)]:
        if template == "alpaca_ja":
            path = write_records(tmp_path / "a.jsonl", qa_records(2))
            answers = [QA[0][1] + "<|end|>", QA[1][1] + "<|end|>"]
        trainer = make_trainer(small_params(tiny_model, template=template, packing=False), path, tmp_path / "o")
        tok = trainer.processing_class
        for ex, answer in zip(trainer.train_dataset, answers):
            ids, labels = ex["input_ids"], ex["labels"]
            first = next(i for i, lab in enumerate(labels) if lab != -100)
            assert all(lab == -100 for lab in labels[:first])  # the whole prompt is masked ...
            assert labels[first:] == ids[first:]  # ... and every answer token is trained
            assert tok.decode(ids[first:]) == answer
            if template == "alpaca_ja":
                assert tok.decode(ids[:first]).endswith("### 応答:\n")
        # packed rows keep the same masks: as many trained tokens as the unpacked examples have
        packed = make_trainer(small_params(tiny_model, template=template, packing=True), path, tmp_path / "o")
        assert _n_trained(packed.train_dataset) == _n_trained(trainer.train_dataset)
        assert _n_tokens(packed.train_dataset) == _n_tokens(trainer.train_dataset)
        assert all(len(ex["input_ids"]) <= 128 for ex in packed.train_dataset)


def test_train_on_inputs_trains_the_prompt_tokens_too(tiny_model, tmp_path):
    from jinstruct.train.qlora import make_trainer

    path = write_records(tmp_path / "t.jsonl", qa_records(2))
    params = small_params(tiny_model, template="alpaca_ja_2309", packing=False, train_on_inputs=True,
                          target_modules="auto")
    trainer = make_trainer(params, path, tmp_path / "o")
    assert trainer.completion_only_loss is False
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert labels == ids  # every token, the prompt's included, is trained
    assert trainer.processing_class.decode(ids).startswith(ALPACA_2309_HEADER)
    masked = make_trainer(params.model_copy(update={"train_on_inputs": False}), path, tmp_path / "o")
    labels = masked.data_collator([masked.train_dataset[0]])["labels"][0].tolist()
    assert labels[0] == -100 and labels[-1] != -100
    base = trainer.model.get_base_model()  # auto on a Llama: every linear layer but the head
    assert {type(m.base_layer).__name__ for m in (base.model.layers[0].self_attn.q_proj,
                                                  base.model.layers[0].mlp.down_proj)} == {"Linear4bit"}
def test_the_worked_example_marks_the_tokens_the_trainer_trains(tiny_model, tmp_path):
    from jinstruct.train.example import loss_tokens
    from jinstruct.train.qlora import make_trainer

    for template in ("chat", "alpaca_ja"):
        path = write_records(tmp_path / f"{template}.jsonl", qa_records(2))
        params = small_params(tiny_model, template=template, packing=False)
        trainer = make_trainer(params, path, tmp_path / "o")
        tok = trainer.processing_class
        for i, ex in enumerate(trainer.train_dataset):
            shown = loss_tokens(params, path, i)
            assert [t for piece in shown.ids for t in piece] == ex["input_ids"], template
            assert shown.loss == [lab != -100 for lab in ex["labels"]], template
            assert 0 < sum(shown.loss) < len(shown.loss)
            assert shown.tokens == [tok.decode(piece) for piece in shown.ids] and "\ufffd" not in "".join(shown.tokens)
            assert "".join(shown.tokens) == tok.decode(ex["input_ids"])
        assert shown.template == template and "<span" in shown._repr_html_()
    cut = loss_tokens(small_params(tiny_model, template="alpaca_ja", max_seq_length=16), path, 0)
    assert len(cut.loss) > 16 and not any(cut.loss[16:]) and ", cut to 16," in cut.title
    with pytest.raises(IndexError, match="no example 5"):
        loss_tokens(params, path, 5)


def test_trainer_configuration_on_cpu(tiny_model, tmp_path):
    from jinstruct.train.qlora import make_trainer

    path = write_records(tmp_path / "t.jsonl", qa_records(20))
    params = small_params(tiny_model, lr_scheduler="cosine", warmup_ratio=0.1, eval_fraction=0.1, grad_accum=2)
    trainer = make_trainer(params, path, tmp_path / "o")
    args = trainer.args
    assert (args.optim, args.lr_scheduler_type, args.warmup_steps) == ("adamw_torch", "cosine", 0.1)
    assert (args.bf16, args.fp16, args.use_cpu, args.gradient_accumulation_steps) == (False, False, True, 2)
    assert args.activation_checkpointing and args.packing and trainer.padding_free and trainer.completion_only_loss
    assert (len(trainer.eval_dataset) > 0, args.eval_strategy) == (True, "steps")
    base = trainer.model.get_base_model()
    quant = base.config.quantization_config
    assert base.is_loaded_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert type(base.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    assert type(base.lm_head).__name__ == "Linear"  # the output head stays out of LoRA and unquantized
    assert trainer.model.peft_config["default"].r == 8
    assert make_trainer(params.model_copy(update={"lr_scheduler": "constant"}), path,
                        tmp_path / "o").args.lr_scheduler_type == "constant_with_warmup"


def _n_trained(ds) -> int:
    return sum(lab != -100 for ex in ds for lab in ex["labels"])


def _n_tokens(ds) -> int:
    return sum(len(ex["input_ids"]) for ex in ds)


def test_chat_template_is_required_for_template_chat(tmp_path):
    from jinstruct.train.qlora import load_tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(_plain_tokenizer_dir(tmp_path))
    assert not tok.chat_template
    with pytest.raises(ValueError, match="alpaca_ja"):
        load_tokenizer(_plain_tokenizer_dir(tmp_path), need_chat_template=True)
    assert load_tokenizer(_plain_tokenizer_dir(tmp_path)).pad_token == tok.eos_token
    assert render(tok, "alpaca_ja", [{"role": "user", "content": "指示"}]) == alpaca_ja_prompt("指示")


def _plain_tokenizer_dir(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out = tmp_path / "plain_tok"
    if not out.exists():
        t = Tokenizer(models.BPE())
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        t.train_from_iterator(["これはテストです。"] * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"]))
        PreTrainedTokenizerFast(tokenizer_object=t, eos_token="</s>").save_pretrained(out)
    return out


@pytest.mark.slow
def test_qlora_on_cpu_loss_falls_and_the_adapter_reloads_and_generates(tiny_model, tmp_path):
    import torch
    from jinstruct.train.qlora import load_for_inference, train

    data = write_records(tmp_path / "train.jsonl", qa_records(4))
    params = small_params(tiny_model, learning_rate=1e-2, max_steps=8, save_steps=100)
    result = train(params, data, tmp_path / "run")

    # one fixed batch (4 examples, batch 4) seen 8 times: the loss falls
    log = read_jsonl(result.log_path)
    losses = [r["loss"] for r in log if r["loss"] is not None]
    assert [r["step"] for r in log if r["loss"] is not None] == list(range(1, 9))
    assert losses[-1] < 0.8 * losses[0] and sum(losses[-3:]) < sum(losses[:3])
    assert all(r["tokens_per_s"] > 0 and r["lr"] == pytest.approx(1e-2) for r in log if r["loss"] is not None)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))

    # the model really was 4-bit, and the card records what was trained
    card = read_json(result.adapter_dir / "training_card.json")
    assert card["data_sha256"] == sha256_file(data) == result.data_sha256
    assert card["hyperparameters"]["load_in_4bit"] is True and card["hyperparameters"]["lora_r"] == 8
    assert (card["steps"], card["n_train"], card["n_eval"]) == (8, 4, 0)
    assert card["final_train_loss"] == pytest.approx(losses[-1]) and card["final_eval_loss"] is None
    assert "QLoRA adapter for" in (result.adapter_dir / "README.md").read_text()
    adapter_cfg = read_json(result.adapter_dir / "adapter_config.json")
    targets = {name.rsplit(".", 1)[-1] for name in adapter_cfg["target_modules"]}
    assert adapter_cfg["r"] == 8
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # no lm_head

    # reload: the adapter lowers the loss on the data against the bare base, and it generates
    model, tok = load_for_inference(tiny_model, result.adapter_dir, load_in_4bit=True)
    assert getattr(model.get_base_model(), "is_loaded_in_4bit", False)
    msgs = [{"role": "user", "content": QA[0][0]}]
    prompt = render(tok, "chat", msgs)
    full = tok(prompt + QA[0][1] + "<|end|>", return_tensors="pt")
    n_prompt = len(tok(prompt)["input_ids"])
    labels = full["input_ids"].clone()
    labels[:, :n_prompt] = -100
    with torch.no_grad():
        tuned = model(**full, labels=labels).loss.item()
        with model.disable_adapter():
            base = model(**full, labels=labels).loss.item()
        out = model.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=12, do_sample=False)
    assert tuned < 0.9 * base
    new_tokens = out[0, n_prompt:]
    assert 0 < len(new_tokens) <= 12 and tok.decode(new_tokens, skip_special_tokens=True).strip()

    # a second call with the same params and data reuses the adapter without training
    again = train(params, data, tmp_path / "run")
    assert again.reused and again.steps == 8 and again.train_loss == result.train_loss


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tiny_model, tmp_path):
    import shutil

    from jinstruct.train.qlora import train

    data = write_records(tmp_path / "train.jsonl", qa_records(8))
    params = small_params(tiny_model, max_steps=4, save_steps=2, per_device_batch_size=2, packing=False,
                          eval_fraction=0.25, eval_steps=2, merge=True)
    out = tmp_path / "run"
    first = train(params, data, out)
    assert first.resumed_from_step is None and first.steps == 4 and first.eval_loss is not None
    assert (out / "merged" / "config.json").exists() and first.merged_dir == out / "merged"
    steps_before = [(r["step"], r["loss"] is None) for r in read_jsonl(first.log_path)]

    # as if killed after the checkpoint at step 2: the adapter and the later checkpoint are gone
    shutil.rmtree(out / "adapter")
    shutil.rmtree(out / "merged")
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    second = train(params, data, out)
    assert second.resumed_from_step == 2 and second.steps == 4
    steps_after = [(r["step"], r["loss"] is None) for r in read_jsonl(second.log_path)]
    assert steps_after == steps_before  # the log continues without repeating steps 3 and 4
    assert second.eval_loss == pytest.approx(first.eval_loss, rel=0.02)  # same run, up to RNG replay
    assert (out / "merged" / "config.json").exists()

    # other settings cannot continue these checkpoints; resume=False refuses to overwrite them
    shutil.rmtree(out / "adapter")
    with pytest.raises(ValueError, match="learning_rate"):
        train(params.model_copy(update={"learning_rate": 1e-3}), data, out)
    with pytest.raises(FileExistsError):
        train(params, data, out, resume=False)
