"""Judge messages: the prompt chosen per category and turn, placeholders filled, references for coding-math."""

from __future__ import annotations

from pathlib import Path

import pytest

from jinstruct.answer.records import make_answer
from jinstruct.formats.fastchat import Question, load_pairwise_judgments, load_questions, write_records
from jinstruct.judge.prompts import (
    FASTCHAT_NAMES,
    choose_prompt,
    judged_turns,
    load_prompts,
    pairwise_input,
    pairwise_record,
    pairwise_tasks,
    prompt_for,
    single_input,
    single_record,
    single_tasks,
    template_fields,
)

DATA = Path(__file__).parent / "data" / "fastchat"


@pytest.fixture(scope="module")
def en():
    return load_prompts(DATA / "judge_prompts_en.jsonl")


@pytest.fixture(scope="module")
def questions():
    return {q.question_id: q for q in load_questions(DATA / "question.jsonl")}


def test_pairwise_single_turn_fills_question_and_both_answers(en):
    x = pairwise_input(en["pair-v2"], ["春の詩を{書いて}"], ["回答A"], ["回答B"])
    assert x.user_prompt == "Q: 春の詩を{書いて}\nA: 回答A\nB: 回答B"  # braces in values are kept as they are
    assert x.messages == [{"role": "system", "content": en["pair-v2"].system_prompt},
                          {"role": "user", "content": x.user_prompt}]
    assert x.prompt.name == "pair-v2"


def test_swapped_order_shows_the_other_answer_first(en):
    g1 = pairwise_input(en["pair-v2"], ["q"], ["first model"], ["second model"])
    g2 = pairwise_input(en["pair-v2"], ["q"], ["second model"], ["first model"])
    assert g1.user_prompt.index("first model") < g1.user_prompt.index("second model")
    assert g2.user_prompt.index("second model") < g2.user_prompt.index("first model")


def test_multi_turn_pairwise_shows_both_turns_of_both_answers(en):
    x = pairwise_input(en["pair-v2-multi-turn"], ["q1", "q2"], ["a1", "a2"], ["b1", "b2"], turn=2)
    assert x.user_prompt == ("<A>\nQ1: q1\nA1: a1\nQ2: q2\nA2: a2\n</A>\n"
                             "<B>\nQ1: q1\nA1: b1\nQ2: q2\nA2: b2\n</B>")


def test_reference_guided_prompts_get_the_reference(en):
    x = pairwise_input(en["pair-math-v1"], ["1+1は？"], ["2"], ["3"], reference=["2です"])
    assert "Reference: 2です" in x.user_prompt
    y = single_input(en["single-math-v1-multi-turn"], ["q1", "q2"], ["a1", "a2"], reference=["r1", "r2"], turn=2)
    assert "R1: r1\nQ2: q2\nR2: r2" in y.user_prompt and "A2: a2" in y.user_prompt


def test_missing_reference_or_turns_are_clear_errors(en):
    with pytest.raises(ValueError, match="needs a reference answer"):
        pairwise_input(en["pair-math-v1"], ["q"], ["a"], ["b"])
    with pytest.raises(ValueError, match="needs a reference answer"):
        single_input(en["single-math-v1-multi-turn"], ["q1", "q2"], ["a1", "a2"], reference=["only one"], turn=2)
    with pytest.raises(ValueError, match="answer_b has 1 turn"):
        pairwise_input(en["pair-v2-multi-turn"], ["q1", "q2"], ["a1", "a2"], ["b1"], turn=2)
    with pytest.raises(ValueError, match="not a multi-turn prompt"):
        pairwise_input(en["pair-v2"], ["q1", "q2"], ["a1", "a2"], ["b1", "b2"], turn=2)
    with pytest.raises(ValueError, match="is single, not pairwise"):
        pairwise_input(en["single-v1"], ["q"], ["a"], ["b"])
    with pytest.raises(TypeError, match="list of turns"):
        single_input(en["single-v1"], "q", ["a"])
    with pytest.raises(ValueError, match="turn must be 1 or 2"):
        single_input(en["single-v1"], ["q"] * 3, ["a"] * 3, turn=3)


def test_single_prompt_with_literal_braces_and_system_message(en):
    x = single_input(en["single-v1"], ["質問"], ["回答"])
    assert x.user_prompt == "Q: 質問\nAnswer: 回答\nSet literal braces like {this}."
    assert x.messages[0]["role"] == "system"


def test_empty_system_prompt_sends_only_the_user_message():
    other = load_prompts(DATA / "judge_prompts_other_names.jsonl")
    x = single_input(other["single"], ["q"], ["a"])
    assert x.messages == [{"role": "user", "content": "[質問]\nq\n[回答]\na"}]


def test_prompt_choice_follows_fastchat_categories_and_turns(en, questions):
    writing, coding_math = questions[1], questions[3]
    assert prompt_for(en, "pairwise", writing).name == "pair-v2"
    assert prompt_for(en, "pairwise", writing, turn=2).name == "pair-v2-multi-turn"
    assert prompt_for(en, "pairwise", coding_math, reference=coding_math.reference).name == "pair-math-v1"
    assert prompt_for(en, "single", coding_math, reference=["r"]).name == "single-math-v1"
    assert prompt_for(en, "single", writing, turn=2).name == "single-v1-multi-turn"
    math2 = Question(question_id=9, category="math", turns=["q1", "q2"], reference=["r1", "r2"])
    assert prompt_for(en, "single", math2, turn=2, reference=math2.reference).name == "single-math-v1-multi-turn"
    for cat in ("math", "reasoning", "coding", "coding-math"):
        q = Question(question_id=1, category=cat, turns=["q"])
        assert prompt_for(en, "pairwise", q, reference=["r"]).name == "pair-math-v1"


def test_reference_category_without_reference(en, questions):
    with pytest.raises(ValueError, match="question 3 .category 'coding-math'. needs a reference"):
        prompt_for(en, "pairwise", questions[3])
    assert prompt_for(en, "pairwise", questions[3], require_reference=False).name == "pair-v2"


def test_prompt_files_with_other_names_are_matched_by_their_templates(questions):
    other = load_prompts(DATA / "judge_prompts_other_names.jsonl")  # ku-nlp's names: pair, pair-math, ...
    assert choose_prompt(other, "pairwise", reference=False, multi_turn=False).name == "pair"
    assert choose_prompt(other, "pairwise", reference=True, multi_turn=False).name == "pair-math"
    assert choose_prompt(other, "single", reference=True, multi_turn=False).name == "single-math"
    with pytest.raises(KeyError, match="no pairwise, multi-turn judge prompt"):
        choose_prompt(other, "pairwise", reference=False, multi_turn=True)


def test_judged_turns():
    assert judged_turns(Question(question_id=1, category="x", turns=["a"])) == [1]
    assert judged_turns(Question(question_id=1, category="x", turns=["a", "b"])) == [1, 2]


def test_unknown_placeholder_is_rejected():
    with pytest.raises(ValueError, match="unknown placeholder"):
        template_fields("{question} {answer_c}")
    with pytest.raises(ValueError, match="malformed template"):
        template_fields("{question")


def test_project_japanese_prompts_cover_every_fastchat_judge():
    ja = load_prompts()
    assert set(FASTCHAT_NAMES.values()) <= set(ja)
    q = Question(question_id=1, category="coding-math", turns=["1から10までの和は？", "では1から100までは？"],
                 reference=["参照一", "参照二"])
    for (kind, guided, multi), name in FASTCHAT_NAMES.items():
        prompt = prompt_for(ja, kind, q if guided else q.model_copy(update={"category": "writing"}),
                            turn=2 if multi else 1, reference=q.reference)
        assert prompt.name == name
        answer_turns = ["答えは55です。", "答えは5050です。"]
        x = (pairwise_input(prompt, q.turns, answer_turns, ["わかりません。", "不明です。"], q.reference, 2 if multi else 1)
             if kind == "pairwise" else single_input(prompt, q.turns, answer_turns, q.reference, 2 if multi else 1))
        assert "答えは55です。" in x.user_prompt
        assert "{" not in x.user_prompt.replace("{{", "")  # every placeholder filled
        assert ("答えは5050です。" in x.user_prompt) == multi
        assert ("参照一" in x.user_prompt) == guided  # reference-guided only for coding-math
        assert ("参照二" in x.user_prompt) == (guided and multi)


# ---- matches and records --------------------------------------------------------------------------------------


def answers_for(models, questions):
    return {m: {q.question_id: make_answer(q.question_id, m, [[f"{m}の答え{q.question_id}-{t + 1}" for t in range(len(q.turns))]],
                                           tstamp=0.0) for q in questions.values()} for m in models}


def test_pairwise_tasks_against_a_baseline(en, questions):
    answers = answers_for(["tuned", "base", "other"], questions)
    tasks = pairwise_tasks(list(questions.values()), answers, ["tuned", "base", "other"], en, baseline="base")
    # 6 questions, question 1 has two turns: 7 (question, turn) x 2 models against the baseline
    assert len(tasks) == 14
    assert {(t.model_1, t.model_2) for t in tasks} == {("tuned", "base"), ("other", "base")}
    t1 = next(t for t in tasks if t.key == ("1", 2, "tuned", "base"))
    assert t1.g1.prompt.name == "pair-v2-multi-turn"
    assert t1.g1.user_prompt.index("tunedの答え1-2") < t1.g1.user_prompt.index("baseの答え1-2")
    assert t1.g2.user_prompt.index("baseの答え1-2") < t1.g2.user_prompt.index("tunedの答え1-2")
    t3 = next(t for t in tasks if t.key == ("3", 1, "tuned", "base"))
    assert t3.g1.prompt.name == "pair-math-v1" and "Reference: 5050" in t3.g1.user_prompt


def test_all_pairs_and_single_tasks(en, questions):
    qs = [questions[2], questions[3]]
    answers = answers_for(["a", "b", "c"], questions)
    tasks = pairwise_tasks(qs, answers, ["a", "b", "c"], en)
    assert [(t.model_1, t.model_2) for t in tasks[:3]] == [("a", "b"), ("a", "c"), ("b", "c")]
    single = single_tasks(list(questions.values()), answers, ["a"], en, multi_turn=False)
    assert len(single) == 6 and {t.turn for t in single} == {1}
    assert next(t for t in single if t.key == ("4", 1, "a")).input.prompt.name == "single-math-v1"


def test_missing_answers_and_references_stop_planning(en, questions):
    answers = answers_for(["a", "b"], questions)
    del answers["b"][5]
    with pytest.raises(ValueError, match="model 'b' has no answer to question 5"):
        pairwise_tasks(list(questions.values()), answers, ["a", "b"], en)
    with pytest.raises(ValueError, match="no answers of model 'z'"):
        single_tasks([questions[1]], answers, ["z"], en)
    math_q = Question(question_id=9, category="math", turns=["1+1?"])
    answers = {"a": {9: make_answer(9, "a", [["2"]])}, "b": {9: make_answer(9, "b", [["3"]])}}
    with pytest.raises(ValueError, match="needs a reference"):
        pairwise_tasks([math_q], answers, ["a", "b"], en)
    ref = {9: make_answer(9, "gpt-4", [["2です"]])}  # a reference_answer/<judge>.jsonl record
    task = pairwise_tasks([math_q], answers, ["a", "b"], en, reference_answers=ref)[0]
    assert "Reference: 2です" in task.g1.user_prompt


def test_records_from_replies_map_the_swapped_order_back(en, questions, tmp_path):
    answers = answers_for(["tuned", "base"], questions)
    task = pairwise_tasks([questions[2]], answers, ["tuned", "base"], en, baseline="base")[0]
    # both orders prefer tuned: game 1 says A (tuned first), game 2 says B (tuned second)
    rec = pairwise_record(task, "judge-x", "Aが良い。[[A]]", '{"reasoning": "後者", "verdict": "B"}', tstamp=5.0)
    assert (rec.g1_winner, rec.g2_winner) == ("model_1", "model_1")
    assert rec.judge == ("judge-x", "pair-v2", "verdict:last") and rec.verdict_rule == "last"
    assert rec.turn == 1 and rec.tstamp == 5.0
    assert rec.g1_user_prompt == task.g1.user_prompt and rec.g2_judgment.startswith('{"reasoning"')
    bad = pairwise_record(task, "judge-x", "わかりません", "[[C]]")
    assert (bad.g1_winner, bad.g2_winner) == ("error", "tie")
    write_records(tmp_path / "judge-x_pair.jsonl", [rec, bad])
    assert load_pairwise_judgments(tmp_path / "judge-x_pair.jsonl") == [rec, bad]

    stask = single_tasks([questions[2]], answers, ["tuned"], en)[0]
    assert single_record(stask, "judge-x", "Rating: [[7]]").score == 7
    assert single_record(stask, "judge-x", "評価できません").score == -1
    assert single_record(stask, "judge-x", '{"reasoning": "良い", "rating": 9}').score == 9
