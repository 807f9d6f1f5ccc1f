"""FastChat llm_judge formats: loading published-style files, writing what FastChat reads, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jinstruct.answer.records import answer_id, make_answer, missing_answers, temperature_for, turn_messages
from jinstruct.formats.fastchat import (
    Answer,
    Choice,
    PairwiseJudgment,
    Question,
    SingleJudgment,
    append_records,
    file_safe,
    judgment_path,
    load_answer_dir,
    load_answers,
    load_judge_prompts,
    load_pairwise_judgments,
    load_questions,
    load_single_judgments,
    reference_turns,
    write_records,
)
from jinstruct.io import DataError

DATA = Path(__file__).parent / "data" / "fastchat"


def write_lines(path: Path, *objs: object) -> Path:
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    return path


def test_questions_load_with_categories_turns_and_references():
    qs = load_questions(DATA / "question.jsonl")
    assert [q.question_id for q in qs] == [1, 2, 3, 4, 5, 6]
    assert qs[0].category == "writing" and len(qs[0].turns) == 2
    assert qs[2].reference == ["5050"]
    assert qs[0].reference is None
    assert reference_turns(qs[2]) == ["5050"]
    assert reference_turns(qs[0]) is None
    ref = Answer(question_id=1, model_id="gpt-4", choices=[Choice(turns=["参考1", "参考2"])])
    assert reference_turns(qs[0], ref) == ["参考1", "参考2"]


def test_question_records_round_trip_without_added_fields(tmp_path):
    qs = load_questions(DATA / "question.jsonl")
    out = write_records(tmp_path / "q.jsonl", qs)
    original = [json.loads(line) for line in (DATA / "question.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == original


def test_bad_question_names_file_line_and_field(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", {"question_id": 1, "category": "a", "turns": ["x"]},
                       {"question_id": 2, "category": "a", "turns": []})
    with pytest.raises(DataError) as e:
        load_questions(path)
    assert (e.value.path, e.value.line, e.value.field) == (str(path), 2, "turns")

    path = write_lines(tmp_path / "q2.jsonl", {"question_id": 1, "turns": ["x"]})
    with pytest.raises(DataError) as e:
        load_questions(path)
    assert (e.value.line, e.value.field) == (1, "category")


def test_duplicate_question_id_is_an_error(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", {"question_id": 7, "category": "a", "turns": ["x"]},
                       {"question_id": 7, "category": "b", "turns": ["y"]})
    with pytest.raises(DataError, match="duplicate id 7 .first on line 1") as e:
        load_questions(path)
    assert (e.value.line, e.value.field) == (2, "question_id")


def test_answers_take_model_id_from_the_file_name_like_fastchat(tmp_path):
    folder = tmp_path / "model_answer"
    folder.mkdir()
    write_lines(folder / "base-7b.jsonl", {"question_id": 1, "answer_id": "x", "choices": [{"index": 0, "turns": ["答え"]}],
                                           "tstamp": 1.0})
    write_lines(folder / "tuned.jsonl", {"question_id": 1, "model_id": "tuned", "choices": [{"turns": ["a", "b"]}]})
    answers = load_answer_dir(folder)
    assert set(answers) == {"base-7b", "tuned"}
    assert answers["base-7b"][1].model_id == "base-7b"
    assert answers["tuned"][1].turns == ["a", "b"]


def test_second_answer_to_a_question_is_an_error(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", *[{"question_id": 3, "model_id": "m", "choices": [{"turns": ["a"]}]}] * 2)
    with pytest.raises(DataError) as e:
        load_answers(path)
    assert (e.value.line, e.value.field) == (2, "question_id")


def test_fastchat_pairwise_judgment_file_loads():
    js = load_pairwise_judgments(DATA / "gpt-4_pair.jsonl")
    assert len(js) == 11
    first = js[0]
    assert (first.question_id, first.model_1, first.model_2) == (1, "tuned", "base")
    assert (first.g1_winner, first.g2_winner, first.judge, first.turn) == ("model_1", "model_1", ("gpt-4", "pair-v2"), 1)
    assert js[1].turn == 2 and js[1].judge == ("gpt-4", "pair-v2-multi-turn")


def test_published_per_pair_file_with_judge_model_fields_loads():
    js = load_pairwise_judgments(DATA / "pairwise_calm_davinci.jsonl")
    assert [j.judge for j in js] == [("gpt-4", "pair"), ("gpt-4", "pair")]
    assert [j.turn for j in js] == [1, 1]  # no turn field: single-turn benchmark
    assert js[1].g1_winner == "tie" and js[1].g2_winner == "model_2"
    assert js[0].question == "時間管理のこつは？"  # extra fields are kept


def test_single_judgment_file_loads_and_error_score_is_flagged():
    js = load_single_judgments(DATA / "gpt-4_single.jsonl")
    assert len(js) == 9
    assert [j.score for j in js if j.model == "tuned"] == [8, 5, 6, -1, 7]
    assert [j.is_error for j in js].count(True) == 1
    assert isinstance(js[0].score, int) and js[6].score == 4.5


def test_bad_winner_names_file_line_and_field(tmp_path):
    good = json.loads((DATA / "gpt-4_pair.jsonl").read_text(encoding="utf-8").splitlines()[0])
    path = write_lines(tmp_path / "p.jsonl", good, good | {"g2_winner": "A"})
    with pytest.raises(DataError) as e:
        load_pairwise_judgments(path)
    assert (e.value.path, e.value.line, e.value.field) == (str(path), 2, "g2_winner")
    assert "p.jsonl, line 2: field 'g2_winner'" in str(e.value)


def test_missing_judge_is_an_error(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", {"question_id": 1, "model": "m", "score": 3})
    with pytest.raises(DataError) as e:
        load_single_judgments(path)
    assert (e.value.line, e.value.field) == (1, "judge")


def test_judgments_written_are_fastchat_records(tmp_path):
    j = PairwiseJudgment(question_id=5, model_1="a", model_2="b", g1_winner="model_1", g2_winner="tie",
                         judge=("gpt-4", "pair-v2"), g1_user_prompt="u1", g1_judgment="[[A]]",
                         g2_user_prompt="u2", g2_judgment="[[C]]", turn=1, tstamp=12.5)
    s = SingleJudgment(question_id=5, model="a", judge=("gpt-4", "single-v1"), user_prompt="u", judgment="[[7]]",
                       score=7, turn=1, tstamp=1.0)
    write_records(tmp_path / "p.jsonl", [j])
    write_records(tmp_path / "s.jsonl", [s])
    rec = json.loads((tmp_path / "p.jsonl").read_text(encoding="utf-8"))
    assert list(rec) == ["question_id", "model_1", "model_2", "g1_winner", "g2_winner", "judge", "g1_user_prompt",
                         "g1_judgment", "g2_user_prompt", "g2_judgment", "turn", "tstamp"]
    assert rec["judge"] == ["gpt-4", "pair-v2"]
    srec = json.loads((tmp_path / "s.jsonl").read_text(encoding="utf-8"))
    assert list(srec) == ["question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"]
    assert srec["score"] == 7 and isinstance(srec["score"], int)
    assert load_pairwise_judgments(tmp_path / "p.jsonl") == [j]


def test_appended_judgments_survive_a_torn_last_line(tmp_path):
    path = tmp_path / "gpt-4_single.jsonl"
    s = SingleJudgment(question_id=1, model="a", judge=("gpt-4", "single-v1"), score=6)
    append_records(path, [s])
    append_records(path, [s.model_copy(update={"question_id": 2})])
    with path.open("a", encoding="utf-8") as f:
        f.write('{"question_id": 3, "model": "a", "jud')  # a kill mid-write
    assert [j.question_id for j in load_single_judgments(path, tolerate_torn_tail=True)] == [1, 2]
    with pytest.raises(DataError) as e:
        load_single_judgments(path)
    assert e.value.line == 3


def test_judge_prompt_files_load_and_bad_templates_are_named(tmp_path):
    prompts = load_judge_prompts(DATA / "judge_prompts_en.jsonl")
    assert len(prompts) == 8 and prompts["pair-v2"].type == "pairwise"
    assert prompts["single-v1"].output_format == "[[rating]]"

    line = json.loads((DATA / "judge_prompts_en.jsonl").read_text(encoding="utf-8").splitlines()[0])
    path = write_lines(tmp_path / "p.jsonl", line, line | {"name": "x", "prompt_template": "{question} {answr_a}"})
    with pytest.raises(DataError, match="answr_a") as e:
        load_judge_prompts(path)
    assert (e.value.line, e.value.field) == (2, "prompt_template")

    path = write_lines(tmp_path / "d.jsonl", line, line)
    with pytest.raises(DataError, match="duplicate prompt name 'pair-v2'") as e:
        load_judge_prompts(path)
    assert (e.value.line, e.value.field) == (2, "name")

    path = write_lines(tmp_path / "t.jsonl", line | {"type": "pair"})
    with pytest.raises(DataError) as e:
        load_judge_prompts(path)
    assert e.value.field == "type"


def test_judgment_file_names():
    assert file_safe("meta-llama/Llama-3.1-8B") == "meta-llama--Llama-3.1-8B"
    assert file_safe("gpt-4") == "gpt-4"
    assert judgment_path("runs/x/judgments", "org/judge", "pair") == Path("runs/x/judgments/org--judge_pair.jsonl")


# ---- answer records (jinstruct.answer.records) ----------------------------------------------------------------------


def test_answer_records_from_generated_texts(tmp_path):
    a = make_answer(3, "tuned-7b", [["第一の答え", "第二の答え"]], tstamp=1700000000.5)
    assert a.record() == {"question_id": 3, "answer_id": a.answer_id, "model_id": "tuned-7b",
                          "choices": [{"index": 0, "turns": ["第一の答え", "第二の答え"]}], "tstamp": 1700000000.5}
    assert len(a.answer_id) == 22
    assert a.answer_id == make_answer(3, "tuned-7b", [["第一の答え", "第二の答え"]]).answer_id  # stable
    assert a.answer_id != answer_id("tuned-7b", 3, [["第一の答え", "別の答え"]])
    assert a.answer_id != answer_id("base-7b", 3, [["第一の答え", "第二の答え"]])
    assert make_answer(1, "m", [["x"], ["y"]]).choices[1].index == 1  # several samples
    write_records(tmp_path / "tuned-7b.jsonl", [a])
    assert load_answers(tmp_path / "tuned-7b.jsonl") == [a]
    with pytest.raises(TypeError, match="list of turn lists"):
        make_answer(1, "m", ["x"])


def test_temperatures_follow_fastchat_and_map_our_categories():
    assert [temperature_for(c) for c in ("writing", "roleplay", "math", "coding", "reasoning", "extraction",
                                         "stem", "humanities")] == [0.7, 0.7, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1]
    assert temperature_for("coding-math") == 0.0 and temperature_for("fermi") == 0.0
    assert temperature_for("common sense") == temperature_for("common_sense") == temperature_for("common-sense") == 0.1
    assert temperature_for("knowledge") == temperature_for("generic") == temperature_for("counterfactual") == 0.1
    assert temperature_for("something-new") == 0.7  # FastChat's default
    assert temperature_for("writing", {"writing": 1.0}) == 1.0


def test_turn_messages_feed_back_the_models_own_answers():
    q = Question(question_id=1, category="writing", turns=["詩を書いて", "俳句にして"])
    assert turn_messages(q, []) == [{"role": "user", "content": "詩を書いて"}]
    assert turn_messages(q, ["春の詩"], system="日本語で答えてください。") == [
        {"role": "system", "content": "日本語で答えてください。"},
        {"role": "user", "content": "詩を書いて"}, {"role": "assistant", "content": "春の詩"},
        {"role": "user", "content": "俳句にして"}]
    with pytest.raises(ValueError, match="has 2 turn"):
        turn_messages(q, ["a", "b"])


def test_missing_answers_lists_unanswered_and_half_answered_questions():
    qs = load_questions(DATA / "question.jsonl")
    have = [make_answer(1, "m", [["only turn 1"]]), make_answer("2", "m", [["x"]]), make_answer(3, "m", [["y"]])]
    assert missing_answers(qs, have) == [1, 4, 5, 6]
