"""The shipped ja_qa80 benchmark, its reference answers and the Japanese judge prompts are well formed."""

import json
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from jinstruct.paths import data_dir, prompt_path

BENCH_DIR = data_dir() / "bench" / "ja_qa80"
QUESTIONS = BENCH_DIR / "question.jsonl"
REFERENCES = BENCH_DIR / "reference_answer" / "reference.jsonl"
JUDGE_PROMPTS = prompt_path("judge_prompts_ja.jsonl")

CATEGORIES = ["writing", "roleplay", "knowledge", "common-sense", "fermi", "counterfactual", "coding-math", "generic"]
KANA = re.compile(r"[\u3041-\u3096\u30a1-\u30fa]")

# FastChat's placeholder names per judge prompt.
EXPECTED_FIELDS = {
    "pair-v2": {"question", "answer_a", "answer_b"},
    "pair-v2-multi-turn": {"question_1", "question_2", "answer_a_1", "answer_a_2", "answer_b_1", "answer_b_2"},
    "pair-math-v1": {"question", "ref_answer_1", "answer_a", "answer_b"},
    "pair-math-v1-multi-turn": {
        "question_1", "question_2", "ref_answer_1", "ref_answer_2",
        "answer_a_1", "answer_a_2", "answer_b_1", "answer_b_2",
    },
    "single-v1": {"question", "answer"},
    "single-math-v1": {"question", "ref_answer_1", "answer"},
    "single-v1-multi-turn": {"question_1", "question_2", "answer_1", "answer_2"},
    "single-math-v1-multi-turn": {"question_1", "question_2", "ref_answer_1", "ref_answer_2", "answer_1", "answer_2"},
}


def read_lines(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), f"{path} has a blank line"
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    return records


def fields(template: str) -> list[str]:
    return [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return read_lines(QUESTIONS)


@pytest.fixture(scope="module")
def prompts() -> dict[str, dict]:
    records = read_lines(JUDGE_PROMPTS)
    by_name = {p["name"]: p for p in records}
    assert len(by_name) == len(records), "duplicate prompt names"
    return by_name


def test_questions_ids_and_categories(questions):
    assert len(questions) == 80
    assert [q["question_id"] for q in questions] == list(range(1, 81))
    assert all(set(q) == {"question_id", "category", "turns"} for q in questions)
    assert Counter(q["category"] for q in questions) == {c: 10 for c in CATEGORIES}
    # category blocks in the listed order: ids 1-10 writing, 11-20 roleplay, ...
    for i, q in enumerate(questions):
        assert q["category"] == CATEGORIES[i // 10], q["question_id"]


def test_question_turns_are_japanese(questions):
    for q in questions:
        turns = q["turns"]
        assert isinstance(turns, list) and len(turns) == 1, q["question_id"]
        text = turns[0]
        assert isinstance(text, str) and text == text.strip() and len(text) >= 20, q["question_id"]
        assert len(KANA.findall(text)) >= 10, q["question_id"]
    assert len({q["turns"][0] for q in questions}) == 80


def test_references_cover_exactly_coding_math(questions):
    refs = read_lines(REFERENCES)
    coding_math = [q["question_id"] for q in questions if q["category"] == "coding-math"]
    assert coding_math == list(range(61, 71))
    assert [r["question_id"] for r in refs] == coding_math
    assert len({r["answer_id"] for r in refs}) == 10
    for r in refs:
        assert set(r) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
        assert r["model_id"] == "reference" and r["tstamp"] == 0
        assert isinstance(r["answer_id"], str) and r["answer_id"]
        assert len(r["choices"]) == 1 and r["choices"][0]["index"] == 0
        turns = r["choices"][0]["turns"]
        assert len(turns) == 1 and len(KANA.findall(turns[0])) >= 10, r["question_id"]


def test_reference_python_code_runs():
    refs = {r["question_id"]: r["choices"][0]["turns"][0] for r in read_lines(REFERENCES)}
    blocks = {qid: re.findall(r"```python\n(.*?)```", text, flags=re.S) for qid, text in refs.items()}
    assert [qid for qid, b in blocks.items() if b] == [61, 62, 64, 65]
    for qid, code in blocks.items():
        for block in code:
            exec(compile(block, f"<reference {qid}>", "exec"), {"__name__": f"reference_{qid}"})


def test_reference_final_answers():
    refs = {r["question_id"]: r["choices"][0]["turns"][0] for r in read_lines(REFERENCES)}
    assert "159通り" in refs[65]
    assert "k = 5" in refs[66]
    assert "1/8" in refs[67]
    assert "4.8" in refs[68]
    assert "533個" in refs[69]
    assert "4割増し" in refs[70]


def test_judge_prompts_placeholders_and_formats(prompts):
    assert set(prompts) == set(EXPECTED_FIELDS)
    for name, p in prompts.items():
        assert set(p) == {"name", "type", "system_prompt", "prompt_template", "description", "category", "output_format"}
        found = fields(p["prompt_template"])
        assert set(found) == EXPECTED_FIELDS[name], name
        assert all(spec == "" and conv is None for _, n, spec, conv in string.Formatter().parse(p["prompt_template"]) if n)
        assert fields(p["system_prompt"]) == [], name  # the system prompt is sent as is, never formatted
        expected_type = "pairwise" if name.startswith("pair-") else "single"
        assert p["type"] == expected_type
        assert p["output_format"] == ("[[A]]" if expected_type == "pairwise" else "[[rating]]")
        assert p["category"] == ("math" if "-math-" in name else "general")
        values = {f: f"<{f}>" for f in EXPECTED_FIELDS[name]}
        rendered = p["prompt_template"].format(**values)
        assert all(v in rendered for v in values.values())


def test_judge_system_prompts_state_the_rules(prompts):
    for name, p in prompts.items():
        system = p["system_prompt"]
        assert len(KANA.findall(system)) >= 100, name
        assert "日本語で書かれていない" in system and "不自然" in system, name
        assert "長さ" in system and "客観的" in system, name
        if p["type"] == "pairwise":
            assert "順番" in system, name
            assert all(tag in system for tag in ("[[A]]", "[[B]]", "[[C]]")), name
        else:
            assert "Rating: [[5]]" in system and "1から10" in system, name
        if "-math-" in name:
            assert "参考解答" in system and "正確" in system, name
        else:
            assert all(w in system for w in ("有用性", "関連性", "正確性", "深さ", "創造性", "詳しさ")), name
        if name.endswith("multi-turn"):
            assert "2つ目" in system, name
