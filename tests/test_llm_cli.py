"""`python -m jinstruct cache stats|export` through the module's register_cli."""

from __future__ import annotations

import argparse
import json

import pytest
from fake_openai import fake_client
from jinstruct.llm import ChatRequest
from jinstruct.llm.cli import register_cli


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="jinstruct")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cache_stats_and_export(tmp_path, capsys):
    client, _ = fake_client(tmp_path)
    with client:
        results = client.chat_many([ChatRequest.user(f"統計{i}", max_tokens=30) for i in range(3)])
    cache = str(tmp_path / "cache.sqlite3")

    assert run_cli("cache", "stats", "--cache", cache) == 0
    out = capsys.readouterr().out
    assert "3 answers" in out and "fake-model" in out

    assert run_cli("cache", "stats", "--cache", cache, "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["answers"] == 3
    assert stats["models"][0]["completion_tokens"] == sum(r.usage.completion_tokens for r in results)

    out_file = tmp_path / "export.jsonl"
    assert run_cli("cache", "export", "--cache", cache, "--out", str(out_file)) == 0
    rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert {r["key"] for r in rows} == {r.key for r in results}
    by_key = {r.key: r for r in results}
    for row in rows:
        assert row["response"]["choices"][0]["message"]["content"] == by_key[row["key"]].text
        assert row["request"]["body"]["messages"][0]["content"].startswith("統計")

    assert run_cli("cache", "export", "--cache", cache, "--model", "no-such-model") == 0
    assert capsys.readouterr().out == ""


def test_a_missing_cache_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no LLM cache at"):
        run_cli("cache", "stats", "--cache", str(tmp_path / "none.sqlite3"))


def test_export_into_a_pipe_that_closes_early_ends_quietly(tmp_path):
    import subprocess
    import sys

    client, _ = fake_client(tmp_path)
    with client:
        client.chat_many([ChatRequest.user(f"パイプ{i}" * 200, max_tokens=30) for i in range(200)])
    cmd = f"{sys.executable} -m jinstruct cache export --cache {tmp_path / 'cache.sqlite3'} | head -n 1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert json.loads(proc.stdout)["key"]


def test_the_help_names_the_cache_the_configs_use_and_the_version_prints():
    import subprocess
    import sys

    from jinstruct import __version__
    from jinstruct.llm.cache import default_cache_path
    from jinstruct.paths import project_root

    help_text = subprocess.run([sys.executable, "-m", "jinstruct", "cache", "stats", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert "runs/llm_cache.sqlite" in " ".join(help_text.split())
    assert default_cache_path() == project_root() / "runs" / "llm_cache.sqlite"
    version = subprocess.run([sys.executable, "-m", "jinstruct", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"jinstruct {__version__}"
