"""The notebooks' worked examples: each is one library call that returns a displayable object whose data is right.

The LLM is a scripted stand-in with the client's interface (`chat`, `chat_many`, `stream`); notebook 04's example
is checked against the trainer itself in tests/test_train.py, and every example runs in the tiny pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace

import pytest

from jinstruct.answer.example import example_answers
from jinstruct.answer.records import make_answer
from jinstruct.filter.example import rejection_examples
from jinstruct.filter.heuristics import FilterParams
from jinstruct.formats.fastchat import Question, write_records
from jinstruct.formats.layout import RunLayout
from jinstruct.formats.seed_task import Instance, SeedTask, write_seed_tasks
from jinstruct.generate.example import request_example
from jinstruct.generate.self_instruct import SelfInstructRecipe
from jinstruct.generate.self_instruct_format import format_tasks
from jinstruct.judge.example import example_game
from jinstruct.llm.request import ChatRequest, ChatResult
from jinstruct.run.schema import AnswerModel, AnswerSection, JudgeSection
from jinstruct.seeds.example import edit_example, example_edit


class Scripted:
    """Answers every request with `reply(request)`; records what it was sent."""

    def __init__(self, reply: Callable[[ChatRequest], str]):
        self.reply, self.sent = reply, []

    def _result(self, i: int, request: ChatRequest) -> ChatResult:
        self.sent.append(request)
        return ChatResult(request=request, index=i, texts=[self.reply(request)], finish_reasons=["stop"])

    def chat(self, request: ChatRequest) -> ChatResult:
        return self._result(0, request)

    def chat_many(self, requests: Iterable[ChatRequest], desc: str = "", **kw) -> list[ChatResult]:
        return [self._result(i, r) for i, r in enumerate(requests)]

    def stream(self, requests: Iterable[ChatRequest], desc: str = "", **kw):
        yield from self.chat_many(requests)


def seed(task_id: str, instruction: str, output: str = "答えです。") -> SeedTask:
    return SeedTask(id=task_id, name=task_id, instruction=instruction, instances=[Instance(input="", output=output)],
                    is_classification=False)


# ---- 01 -----------------------------------------------------------------------------------------------------------


def test_01_one_seed_translated_then_post_edited(tmp_path: Path):
    english = seed("seed_task_0", "Name three rivers in Japan.", "Shinano, Tone, Ishikari.")
    shipped = write_seed_tasks(tmp_path / "ja.jsonl", [seed("seed_task_0", "日本の川を三つ挙げてください。",
                                                             "信濃川、利根川、石狩川。")])
    client = Scripted(lambda r: json.dumps({"instruction": "日本の川を三つ挙げなさい。",
                                            "instances": [{"input": "", "output": "信濃川、利根川、石狩川。"}]},
                                           ensure_ascii=False))
    example = example_edit(english, client, shipped_seeds=shipped)
    rows = example.fields.set_index("field")
    assert list(rows.index) == ["instruction", "instances.0.input", "instances.0.output"]
    assert rows.loc["instruction", "machine translation"] == "日本の川を三つ挙げなさい。"
    assert rows.loc["instruction", "post-edit"] == "日本の川を三つ挙げてください。"
    assert rows.loc["instruction", "english"] == "Name three rivers in Japan."
    assert rows["distance"].tolist() == [3, 0, 0]  # なさい -> てください: 3 characters
    assert rows.loc["instruction", "normalized"] == round(3 / 15, 3)
    assert example.title == "Seed seed_task_0: 3 fields, 1 changed by the post-edit, 3 characters edited"
    assert "<table" in example._repr_html_() and "日本の川を三つ挙げてください。" in str(example)
    assert len(client.sent) == 1 and "Name three rivers in Japan." in client.sent[0].messages[-1]["content"]


def test_01_a_persons_sheet_is_the_post_edit_when_there_is_one(tmp_path: Path):
    machine = seed("t1", "機械の翻訳。")
    sheet = tmp_path / "edited.csv"
    sheet.write_text("task_id,field,english,machine,edited,note\n"
                     "t1,instruction,MT,機械の翻訳。,人の翻訳。,\nt1,instances.0.input,,,,\n"
                     "t1,instances.0.output,A,答えです。,答えです。,\n", encoding="utf-8")
    client = Scripted(lambda r: json.dumps({"instruction": "機械の翻訳。", "instances": [{"input": "", "output": "答えです。"}]},
                                           ensure_ascii=False))
    example = example_edit(seed("t1", "MT", "A"), client, shipped_seeds=tmp_path / "unused.jsonl", edited_sheet=sheet)
    assert example.fields["post-edit"].tolist() == ["人の翻訳。", "", "答えです。"]
    assert example.source == f"edited sheet {sheet}"
    assert edit_example(seed("t1", "x"), machine, machine, "same").fields["distance"].sum() == 0


# ---- 02 -----------------------------------------------------------------------------------------------------------


def test_02_one_request_its_demonstrations_reply_and_scored_tasks():
    seeds = [seed(f"seed_task_{i}", text) for i, text in
             enumerate(["日本の首都はどこですか。", "俳句を一つ作ってください。", "次の文を英語に訳してください。",
                        "健康的な朝食を三つ提案してください。"])]
    recipe = SelfInstructRecipe.from_seeds(seeds, seed=0, num_demos=3)
    reply = format_tasks([
        ("日本の首都はどこですか。", "", "東京です。"),  # a seed, word for word: ROUGE-L 1.0
        ("好きな季節とその理由を説明してください。", "", "春です。"),  # new
        ("好きな季節とその理由を説明しなさい。", "", "秋です。"),  # close to the task before it in the reply
    ], start=4)
    client = Scripted(lambda r: reply)
    example = request_example(recipe, client, threshold=0.7)
    assert client.sent == [recipe.request(0)], "the run's first request, so the run pays for it once"
    assert example.demos["id"].tolist() == [d.id for d in recipe.demos(0)] and len(example.demos) == 3
    assert example.prompt == recipe.request(0).messages[-1]["content"] and example.reply == reply
    tasks = example.tasks
    assert tasks["kept"].tolist() == [False, True, False]
    assert tasks["rouge_l"].iloc[0] == 1.0 and tasks["most_similar"].iloc[0] == "seed_task_0: 日本の首都はどこですか。"
    assert tasks["rouge_l"].iloc[2] > 0.7 and tasks["most_similar"].iloc[2].startswith("task 2: 好きな季節")
    assert 0 < tasks["rouge_l"].iloc[1] <= 0.7
    assert example.title == "Request 0: 3 demonstrations in, 3 tasks parsed, 1 kept (ROUGE-L <= 0.7)"
    html = example._repr_html_()
    assert html.count("<table") == 2 and "好きな季節とその理由を説明してください。" in html


# ---- 03 -----------------------------------------------------------------------------------------------------------


def test_03_one_rejection_per_reason_beside_its_nearest_kept_neighbour():
    records = [
        {"id": "g1", "instruction": "日本の四季の特徴を説明してください。", "input": "", "output": "春夏秋冬です。"},
        {"id": "g2", "instruction": "、から始まる指示を書いてください。", "input": "", "output": "出力です。"},
        {"id": "g3", "instruction": "日本の四季の特徴を説明しなさい。", "input": "", "output": "四つあります。"},
        {"id": "g4", "instruction": "、もう一つ句読点で始まる指示です。", "input": "", "output": "出力です。"},
    ]
    example = rejection_examples(records, [{"id": "s1", "instruction": "俳句を作ってください。"}], FilterParams())
    rows = example.examples
    assert rows["reason"].tolist() == ["starts with punctuation", "too close by ROUGE-L"]  # the order checked
    assert rows["rejected instruction"].tolist() == ["、から始まる指示を書いてください。", "日本の四季の特徴を説明しなさい。"]
    assert rows["nearest kept"].iloc[1] == "g1: 日本の四季の特徴を説明してください。" and rows["rouge_l"].iloc[1] > 0.7
    assert rows["detail"].iloc[1].startswith("ROUGE-L")
    assert example.n_candidates == 4 and example.n_kept == 1
    assert example.title == "The filters on the first 4 candidates: 1 kept, 3 rejected for 2 reason(s)"
    assert rejection_examples(records, [], FilterParams(), first=1).examples.empty


# ---- 05 -----------------------------------------------------------------------------------------------------------


def test_05_one_question_answered_by_each_model_and_recorded(tmp_path: Path):
    question = Question(question_id=1, category="writing", turns=["自己紹介を書いてください。"])
    client = Scripted(lambda r: f"{r.model}です。よろしくお願いします。")
    models = [AnswerModel(model_id="api-a", endpoint="a"), AnswerModel(model_id="api-b", endpoint="b")]
    layout = RunLayout(tmp_path)

    def path(target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    stage = SimpleNamespace(cfg=SimpleNamespace(answer=AnswerSection(models=models, max_new_tokens=64)),
                            layout=layout, path=path, client=lambda name: client)
    example = example_answers(question, stage)
    rows = example.answers.set_index("model_id")
    assert list(rows.index) == ["api-a", "api-b"] and rows.loc["api-a", "model"] == "endpoint a"
    assert rows.loc["api-a", "prompt"] == "[user]\n自己紹介を書いてください。"
    assert rows["answer"].tolist() == ["Noneです。よろしくお願いします。"] * 2
    assert example.temperature == 0.7 and example.title == "Question 1 (writing, temperature 0.7) answered by 2 models"
    recorded = [json.loads(line) for line in layout.answer_file("api-a").read_text(encoding="utf-8").splitlines()]
    assert [a["question_id"] for a in recorded] == [1], "recorded: the full run answers the other questions only"


# ---- 06 -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order_2, winners, outcome", [
    ("[[A]]", ("model_1", "model_2"), "tie"),  # A both times: two different models, a position preference
    ("[[B]]", ("model_1", "model_1"), "model_1"),  # the same model both times: a win
])
def test_06_one_game_in_both_orders_and_the_tie_rule(tmp_path: Path, order_2, winners, outcome):
    question = Question(question_id=7, category="writing", turns=["手紙を書いてください。"])
    for model in ("tuned", "base"):
        write_records(tmp_path / "answers" / f"{model}.jsonl", [make_answer(7, model, [[f"{model}の手紙"]])])
    replies = {0: "Aのほうが丁寧です。[[A]]", 1: f"判定します。{order_2}"}

    def reply(request: ChatRequest) -> str:
        order_1 = request.messages[-1]["content"].index("tunedの手紙") < request.messages[-1]["content"].index("baseの手紙")
        return replies[0 if order_1 else 1]

    section = JudgeSection(baseline="base", single=False, max_attempts=1)
    example = example_game(section, Scripted(reply), [question], {}, tmp_path / "answers")
    assert (example.task.model_1, example.task.model_2) == ("tuned", "base")
    assert example.winners == winners and example.outcome == outcome
    orders = example.orders()
    assert orders["assistant A"].tolist() == ["tuned", "base"] and orders["judge's reply"].iloc[1] == replies[1]
    text = str(example)
    assert "FastChat's rule" in text and "tunedの手紙" in text and "[system]" in text
    assert ("Order 1 names tuned, order 2 names base: the game is a tie." in text if outcome == "tie"
            else "Order 1 names tuned, order 2 names tuned: the game is a win for tuned." in text)
    assert example.title.endswith("tie" if outcome == "tie" else "tuned wins")


def test_a_table_cell_keeps_its_line_breaks():
    import pandas as pd

    from jinstruct.show import render_html, render_text

    table = pd.DataFrame({"reply": ["1. 指示: 俳句\n2. 指示: 短歌 <b>"], "rouge_l": [0.41666]})
    page = render_html("t", [("h", table), ("", "a\nb")])
    assert "<td>1. 指示: 俳句\n2. 指示: 短歌 &lt;b&gt;</td><td>0.417</td>" in page and "\\n" not in page
    assert "white-space:pre-wrap" in page and "<pre>a\nb</pre>" in page
    assert render_text("t", [("h", table)]).startswith("t\n=\n\n-- h\n")
