"""The translated baseline: English Alpaca records through the real client, scripted translations over ASGI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import jinstruct.generate.translate as at
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jinstruct.generate.translate import (
    AlpacaRecord,
    ChecksumError,
    DownloadError,
    english_alpaca,
    estimate_translation,
    fetch_alpaca,
    load_alpaca,
    translate_alpaca,
)
from jinstruct.io import DataError, read_jsonl
from jinstruct.llm import EndpointSettings, LLMClient, ResponseCache


def translator_app(log: list[str]) -> FastAPI:
    """Translates by prefixing each field with 【訳】 and keeping the ⟦k⟧ markers; records about compound interest lose
    their first marker (flagged), poems come back cut off (failed)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        content = body["messages"][-1]["content"]
        task = json.loads(content.split("\n\n")[-1])
        log.append(task["instruction"])
        inst = task["instances"][0]
        out = {"instruction": "【訳】" + task["instruction"],
               "instances": [{"input": "【訳】" + inst["input"] if inst["input"] else "", "output": "【訳】" + inst["output"]}]}
        if "compound" in task["instruction"]:
            out["instances"][0]["output"] = out["instances"][0]["output"].replace("⟦", "(", 1)
        reason = "length" if "poem" in task["instruction"] else "stop"
        text = json.dumps(out, ensure_ascii=False)
        reply_id = "chatcmpl-" + hashlib.sha256(task["instruction"].encode()).hexdigest()[:12]
        return JSONResponse({"id": reply_id, "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": reason}],
                             "usage": {"prompt_tokens": len(content), "completion_tokens": len(text)}})

    return app


def client_for(tmp: Path, log: list[str], concurrency: int = 3) -> LLMClient:
    settings = EndpointSettings(base_url="http://translator.test/v1", model="scripted-mt", api_key_env=None,
                                concurrency=concurrency, max_retries=0, structured_retries=0)
    return LLMClient(settings, tmp / "cache.sqlite3", stage="02_generation", run_dir=tmp, progress=False,
                     asgi_app=translator_app(log))


def translate(tmp: Path, records, log: list[str] | None = None, **kw):
    client = client_for(tmp, [] if log is None else log)
    try:
        return translate_alpaca(records, client, tmp / "translated.jsonl", progress=False, **kw)
    finally:
        client.close()


# ----- the English data --------------------------------------------------------------------------------------


def test_the_shipped_sample_loads():
    records = english_alpaca("sample")
    assert len(records) == 40 and all(r.instruction and r.output for r in records)
    assert any(r.input for r in records) and any(not r.input for r in records)
    assert english_alpaca("sample", limit=5) == records[:5]
    with pytest.raises(ValueError, match="unknown Alpaca source"):
        english_alpaca("everything")  # type: ignore[arg-type]


def test_bad_records_name_file_position_and_field(tmp_path):
    array = tmp_path / "alpaca_data.json"
    array.write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "input": ""}]))
    with pytest.raises(DataError, match=r"alpaca_data\.json: field 'output': record 2: Field required"):
        load_alpaca(array)
    lines = tmp_path / "alpaca.jsonl"
    lines.write_text('{"instruction": "a", "output": "b"}\n{"instruction": 3, "output": "b"}\n')
    with pytest.raises(DataError, match=r"alpaca\.jsonl, line 2: field 'instruction'"):
        load_alpaca(lines)
    lines.write_text('{"instruction": "a", "output": "b", "extra": 1}\n')
    with pytest.raises(DataError, match="extra"):
        load_alpaca(lines)


def _server(payload: bytes, calls: list[str]) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, content=payload)

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_fetch_pins_the_commit_counts_records_and_records_a_checksum(tmp_path):
    data = json.dumps([{"instruction": f"task {i}", "input": "", "output": "ok"} for i in range(3)]).encode()
    calls: list[str] = []
    path = fetch_alpaca(tmp_path, http=_server(data, calls), expected_records=3)
    assert calls == [at.ALPACA_URL] and at.ALPACA_COMMIT in at.ALPACA_URL
    assert path.read_bytes() == data and len(load_alpaca(path)) == 3
    recorded = path.with_name("alpaca_data.json.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(data).hexdigest()
    assert fetch_alpaca(tmp_path, http=_server(b"", calls), expected_records=3) == path and len(calls) == 1  # cached
    path.write_bytes(data.replace(b"task 1", b"task X"))  # the cached copy changes
    with pytest.raises(ChecksumError, match="sha256"):
        fetch_alpaca(tmp_path, expected_records=3)


def test_fetch_refuses_wrong_counts_and_checksums_and_reports_offline(tmp_path):
    data = json.dumps([{"instruction": "x", "input": "", "output": "y"}]).encode()
    with pytest.raises(ChecksumError, match="1 records, expected 52,002"):
        fetch_alpaca(tmp_path, http=_server(data, []))
    assert not (tmp_path / "alpaca_data.json").exists()
    with pytest.raises(ChecksumError, match="expected 00"):
        fetch_alpaca(tmp_path, http=_server(data, []), sha256="00", expected_records=1)

    def offline(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route to host")

    with pytest.raises(DownloadError, match="sample"):
        fetch_alpaca(tmp_path, http=httpx.Client(transport=httpx.MockTransport(offline)))


# ----- translation -------------------------------------------------------------------------------------------


def test_translates_in_source_order_with_protected_spans_restored(tmp_path):
    records = english_alpaca("sample")[:8] + [AlpacaRecord(instruction="Reply with the number 42 only.", output="42")]
    log: list[str] = []
    stats = translate(tmp_path, records, log)
    out = read_jsonl(tmp_path / "translated.jsonl")
    steps = read_jsonl(tmp_path / "translated.progress.jsonl")
    assert [s["source"] for s in steps] == list(range(len(records)))
    poem = next(i for i, r in enumerate(records) if "poem" in r.instruction)
    compound = next(i for i, r in enumerate(records) if "compound" in r.instruction)
    assert steps[poem]["status"] == "failed" and "cut off" in steps[poem]["problems"][0]
    assert steps[compound]["status"] == "flagged" and any("lost" in p for p in steps[compound]["problems"])
    assert [r["source"] for r in out] == [i for i in range(len(records)) if i != poem]
    for r in out:
        eng = records[r["source"]]
        assert r["recipe"] == "translate" and r["id"] == f"ja-alpaca-{r['source']:05d}"
        assert r["instruction"] == "【訳】" + eng.instruction and r["model"] == "scripted-mt" and r["request_id"]
        assert r["input"] == ("【訳】" + eng.input if eng.input else "")
        if r["source"] != compound:
            assert r["output"] == "【訳】" + eng.output and r["status"] == "ok" and r["problems"] == []
    assert "Reply with the number ⟦0⟧ only." in log  # sent masked, restored in the record
    assert not any("⟦" in r[k] for r in out for k in ("instruction", "input", "output"))
    assert stats.status == {"ok": 7, "flagged": 1, "failed": 1} and stats.written == 8 and stats.sent == 9


def test_flagged_can_be_left_out(tmp_path):
    records = english_alpaca("sample")[:4]
    translate(tmp_path, records, keep_flagged=False)
    out = read_jsonl(tmp_path / "translated.jsonl")
    assert all(r["status"] == "ok" for r in out) and len(out) == 2  # 0..3 minus the compound one and the poem


def test_blank_instructions_are_failed_and_never_sent(tmp_path):
    records = [AlpacaRecord(instruction="Name a fruit.", output="Apple"), AlpacaRecord(instruction="  ", output="x"),
               AlpacaRecord(instruction="Name a color.", output="Red"), AlpacaRecord(instruction="", output="y")]
    log: list[str] = []
    stats = translate(tmp_path, records, log)
    steps = read_jsonl(tmp_path / "translated.progress.jsonl")
    assert [s["status"] for s in steps] == ["ok", "failed", "ok", "failed"]
    assert sorted(log) == ["Name a color.", "Name a fruit."] and stats.status == {"ok": 2, "failed": 2}


def test_an_interrupted_translation_resumes_from_file_and_cache(tmp_path, monkeypatch):
    records = english_alpaca("sample")[:16]
    clean = tmp_path / "clean"
    clean.mkdir()
    translate(clean, records)
    real = at.read_translation
    calls = {"n": 0}

    def crash_after_six(task, result):
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt
        return real(task, result)

    monkeypatch.setattr(at, "read_translation", crash_after_six)
    first: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        translate(tmp_path, records, first)
    monkeypatch.setattr(at, "read_translation", real)
    steps = read_jsonl(tmp_path / "translated.progress.jsonl")
    assert len(steps) == 6
    answered = {json.loads(row["request"]["body"]["messages"][-1]["content"].split("\n\n")[-1])["instruction"]
                for row in ResponseCache(tmp_path / "cache.sqlite3").export()}
    second: list[str] = []
    stats = translate(tmp_path, records, second)
    assert stats.resumed_from == 6 and stats.done == 16 and stats.cached >= 1
    assert not set(second) & answered
    assert (tmp_path / "translated.jsonl").read_bytes() == (clean / "translated.jsonl").read_bytes()
    assert (tmp_path / "translated.progress.jsonl").read_text() .count("\n") == 16
    assert translate(tmp_path, records).processed == 0
    with pytest.raises(ValueError, match="source_sha256"):
        translate(tmp_path, records[:10])


def test_estimate_before_and_after(tmp_path):
    records = english_alpaca("sample")[:5]
    client = client_for(tmp_path, [])
    try:
        est = estimate_translation(records, client)
        assert est.requests == 5 and est.cached == 0 and est.completion_tokens > 0
        translate_alpaca(records[:2], client, tmp_path / "translated.jsonl", progress=False)
        assert estimate_translation(records, client).cached == 2
    finally:
        client.close()
