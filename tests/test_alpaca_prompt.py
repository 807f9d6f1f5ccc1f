"""`generate.self_instruct.prompt: alpaca`: stanford_alpaca's own prompt.txt (pinned download), its completion cue and
stop sequences. Offline: a small stand-in prompt written for the test is placed in a temporary cache."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from jinstruct.download import ChecksumError, DownloadError
from jinstruct.formats.seed_task import Instance, SeedTask, write_seed_tasks
from jinstruct.generate.self_instruct import ALPACA_COMMIT, SelfInstruct, fetch_alpaca_prompt
from jinstruct.llm.request import ChatResult

STAND_IN = "Write twenty varied tasks for a language model (a stand-in written for the tests).\n\nList of 20 tasks:"


def seeds(tmp: Path) -> Path:
    tasks = [SeedTask(id=f"seed_task_{i}", name=f"t{i}", instruction=f"指示 {i}:\n 二行目",
                      instances=[Instance(input="" if i % 2 else f"入力{i}", output=f"出力{i}")],
                      is_classification=False) for i in range(5)]
    return write_seed_tasks(tmp / "seeds.jsonl", tasks)


@pytest.fixture
def prompt_file(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("JINSTRUCT_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "cache" / "alpaca" / ALPACA_COMMIT[:12] / "prompt.txt"
    target.parent.mkdir(parents=True)
    target.write_text(STAND_IN, encoding="utf-8")
    return target


def test_alpaca_prompt_cue_and_stops(tmp_path, prompt_file):
    pin = hashlib.sha256(prompt_file.read_bytes()).hexdigest()
    cfg = SelfInstruct.Config(prompt="alpaca", prompt_sha256=pin, num_demos=3)
    recipe = SelfInstruct.recipe(cfg, seeds(tmp_path), seed=0)
    request = recipe.request(0)
    text = request.messages[0]["content"]
    assert text.startswith(STAND_IN + "\n###\n1. Instruction: ")
    assert text.endswith("\n###\n4. Instruction:")  # the completion cue: the model goes on from here
    assert text.count("###\n") == 4 and "Input:\n<noinput>\n" in text
    assert len(re.findall(r"^\d\. Instruction: 指示 \d: 二行目$", text, re.MULTILINE)) == 3  # on one line
    assert "二行目:" not in text and "\n 二行目" not in text
    assert request.stop == ["\n20", "20."]  # Alpaca's stops
    assert SelfInstruct.describe(cfg).endswith("(stanford_alpaca's prompt)")
    # the reply continues the cue; it is put back before parsing
    reply = (" 敬語に直してください。\n4. Input:\n明日行く。\n4. Output:\n明日参ります。\n###\n"
             "5. Instruction: 日本一高い山は？\n5. Input:\n<noinput>\n5. Output:\n富士山です。")
    parsed = recipe.parse(ChatResult(request=request, index=0, texts=[reply], finish_reasons=["stop"]))
    assert [(t.instruction, t.input, t.output) for t in parsed.tasks] == [
        ("敬語に直してください。", "明日行く。", "明日参ります。"), ("日本一高い山は？", "", "富士山です。")]


def test_the_project_prompt_is_unchanged_by_the_option(tmp_path):
    recipe = SelfInstruct.recipe(SelfInstruct.Config(num_demos=3), seeds(tmp_path), seed=0)
    assert recipe.style == "project" and recipe.request(0).stop[0] == "\n20."
    assert "4番から20番までのタスク" in recipe.request(0).messages[0]["content"]


def test_alpaca_prompt_is_refused_unpinned_or_changed(tmp_path, prompt_file):
    with pytest.raises(ChecksumError, match="no sha256 is pinned.*prompt_sha256"):
        fetch_alpaca_prompt(None)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        fetch_alpaca_prompt("0" * 64)
    with pytest.raises(ValueError, match="structured mode"):
        SelfInstruct.recipe(SelfInstruct.Config(prompt="alpaca", structured=True,
                                                prompt_sha256=hashlib.sha256(STAND_IN.encode()).hexdigest()),
                            seeds(tmp_path), seed=0)


def test_alpaca_prompt_offline_says_where_to_put_it(tmp_path, monkeypatch):
    import httpx

    monkeypatch.setenv("JINSTRUCT_CACHE", str(tmp_path / "empty"))
    offline = httpx.Client(transport=httpx.MockTransport(lambda r: (_ for _ in ()).throw(httpx.ConnectError("no"))))
    with pytest.raises(DownloadError) as err:
        fetch_alpaca_prompt("ab" * 32, http=offline)
    text = str(err.value)
    assert f"tatsu-lab/stanford_alpaca/{ALPACA_COMMIT}/prompt.txt" in text and "ab" * 32 in text
    assert str(tmp_path / "empty" / "alpaca" / ALPACA_COMMIT[:12] / "prompt.txt") in text
