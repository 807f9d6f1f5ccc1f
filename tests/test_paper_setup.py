"""The paper's setup without the network: published answers copied as answers of their model, the verdict rule
recorded and honoured on resume, the paper configs, and their estimate on stand-in files in ja-vicuna's layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jinstruct.io import DataError

from jinstruct.answer.stage import copy_answers
from jinstruct.formats.fastchat import append_records, load_benchmark, load_pairwise_judgments
from jinstruct.judge.engine import pending_tasks, settings_id
from jinstruct.judge.grader import GraderSettings
from jinstruct.judge.prompts import load_prompts, pairwise_record, pairwise_tasks
from jinstruct.formats.fastchat import load_answer_dir
from jinstruct.paths import configs_dir
from jinstruct.run.config import ConfigError
from jinstruct.run.estimate import estimate_run, notes, table
from jinstruct.run.schema import load_config
from jinstruct.run.stage import Stage

JV = Path(__file__).parent / "data" / "ja_vicuna"
DAVINCI = JV / "model_answer" / "openai--text-davinci-003" / "results.jsonl"


def test_published_answers_are_copied_unchanged_and_checked_against_the_questions(tmp_path):
    questions, _ = load_benchmark(JV)
    out = tmp_path / "answers" / "openai--text-davinci-003.jsonl"
    out.parent.mkdir()
    report = copy_answers(DAVINCI, questions, "openai--text-davinci-003", out)
    assert out.read_bytes() == DAVINCI.read_bytes()
    assert (report.questions, report.already_answered, report.answered, report.failed) == (4, 4, 0, {})
    # a published file that misses a question says so; the judge would refuse that question
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(b"".join(DAVINCI.read_bytes().splitlines(keepends=True)[:3]))
    report = copy_answers(partial, questions, "openai--text-davinci-003", tmp_path / "partial" / "openai--text-davinci-003.jsonl")
    assert list(report.failed) == ["4"] and "not in the published answer file" in report.failed["4"]
    # the records keep the publisher's model_id, so the run's model id must be the publisher's: another is an error
    with pytest.raises(DataError, match=r"line 1: field 'model_id'.*use 'openai--text-davinci-003'"):
        copy_answers(partial, questions, "davinci", tmp_path / "answers" / "davinci.jsonl")
    assert not (tmp_path / "answers" / "davinci.jsonl").exists()
    answers = load_answer_dir(tmp_path / "answers")
    assert answers["openai--text-davinci-003"][1].model_id == "openai--text-davinci-003"


def test_an_answer_model_is_exactly_one_kind(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: c\nanswer:\n  models:\n    - {model_id: x, answers: a.jsonl, endpoint: e}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="exactly one of trained, base_model, endpoint, answers"):
        load_config(cfg)


def test_the_verdict_rule_is_recorded_and_a_change_reads_every_game_again(tmp_path):
    questions, refs = load_benchmark(JV)
    prompts = load_prompts(JV / "judge_prompts.jsonl")
    tasks = pairwise_tasks(questions, load_answer_dir(JV / "model_answer"), ["calm", "openai--text-davinci-003"],
                           prompts, baseline="openai--text-davinci-003", reference_answers=refs)
    path = tmp_path / "j_pair.jsonl"
    # "[[B]] ... [[A]]": FastChat's reading takes A (it looks for [[A]] first), the last verdict is A too here
    fastchat, last = GraderSettings(rule="fastchat"), GraderSettings(rule="last")
    records = []
    for t in tasks:  # as judging writes them: the verdict rule in `judge`, the settings they were judged under
        record = pairwise_record(t, "j", "[[B]]では不十分。[[A]]", "[[B]]", rule="fastchat")
        record.settings_id = settings_id("j", fastchat, [t.g1, t.g2])  # type: ignore[attr-defined]
        records.append(record)
    append_records(path, records)
    records = load_pairwise_judgments(path)
    assert {r.judge for r in records} == {("j", "pair", "verdict:fastchat"), ("j", "pair-math", "verdict:fastchat")}
    assert {r.verdict_rule for r in records} == {"fastchat"}
    assert pending_tasks(tasks, path, model="j", settings=fastchat) == []
    assert pending_tasks(tasks, path, model="j", settings=last) == tasks  # read again (the replies from the cache)


def test_paper_configs_are_the_papers_setup():
    paper = load_config(configs_dir() / "paper.yaml")
    assert paper.answer.benchmark == "ja-vicuna" and paper.judge.prompts == "ja-vicuna"
    assert paper.judge.baseline == "openai--text-davinci-003" and paper.judge.pairwise
    published = [m for m in paper.answer.models if m.answers]
    assert [(m.model_id, m.answers) for m in published] == [("openai--text-davinci-003",
                                                              "ja-vicuna:openai--text-davinci-003")]
    rejudge = load_config(configs_dir() / "paper_rejudge.yaml")
    assert rejudge.stages == "05-06" and not rejudge.train.models
    assert all(m.answers for m in rejudge.answer.models)  # nothing is generated: published files only
    assert load_config(configs_dir() / "tiny.yaml").answer.benchmark == "data/bench/ja_qa80"  # the offline default


def test_rejudge_estimate_on_stand_in_files(tmp_path):
    """The estimate of configs/paper_rejudge.yaml with its benchmark and answers swapped for the stand-in files: only
    stage 06 (its `stages`), 4 games x 2 orders against the baseline, no request sent."""
    calm = tmp_path / "calm.jsonl"
    shutil.copy(JV / "model_answer" / "calm" / "results.jsonl", calm)
    overrides = {
        "llm.cache": str(tmp_path / "cache.sqlite"),
        "answer.benchmark": str(JV),
        "judge.prompts": str(JV / "judge_prompts.jsonl"),
        "answer.models": [{"model_id": "openai--text-davinci-003", "answers": str(DAVINCI)},
                          {"model_id": "calm", "answers": str(calm)}],
    }
    st = Stage.open("estimate", configs_dir() / "paper_rejudge.yaml", tmp_path / "run", overrides)
    rows = estimate_run(st)
    assert [r.stage for r in rows] == ["06_judging"]
    (judging,) = rows
    assert judging.what == "4 games x 2 orders, 0 gradings"
    e = judging.estimate
    assert (e.requests, e.to_send, e.cached) == (8, 8, 0)
    assert e.completion_tokens == 8 * 2048 and e.cost_usd > 0
    assert "| 06_judging | gpt4" in table(rows) and notes(rows) == ""
    assert not (tmp_path / "run" / "answers").exists()  # estimating copies nothing


def test_paper_estimate_prices_the_tuned_model_with_the_baselines_answers(tmp_path):
    overrides = {"llm.cache": str(tmp_path / "cache.sqlite"), "answer.benchmark": str(JV),
                 "judge.prompts": str(JV / "judge_prompts.jsonl"),
                 "answer.models": [{"model_id": "llm-jp-13b-qlora", "trained": "llm-jp-13b-qlora"},
                                   {"model_id": "openai--text-davinci-003", "answers": str(DAVINCI)}]}
    st = Stage.open("estimate", configs_dir() / "paper.yaml", tmp_path / "run", overrides)
    rows = estimate_run(st, "06")
    (judging,) = rows
    assert "llm-jp-13b-qlora not answered yet: priced with openai--text-davinci-003's answers" in judging.what
    assert judging.estimate.requests == 4 * 2 + 4 * 2  # 4 games x 2 orders, and 2 models x 4 gradings


def test_estimate_names_what_is_missing(tmp_path):
    overrides = {"llm.cache": str(tmp_path / "cache.sqlite"), "answer.benchmark": str(JV),
                 "judge.prompts": str(JV / "judge_prompts.jsonl"),
                 "answer.models": [{"model_id": "x", "answers": str(tmp_path / "nowhere.jsonl")}],
                 "judge.baseline": None}
    st = Stage.open("estimate", configs_dir() / "paper_rejudge.yaml", tmp_path / "run", overrides)
    (judging,) = estimate_run(st)
    assert judging.estimate is None and "nowhere.jsonl: no such answer file" in judging.needs
    assert "06_judging needs:" in notes([judging])
