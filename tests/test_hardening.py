"""Issue 18, defect by defect: a person's post-edits survive a re-run, budgets and ledgers count every attempt, a
run is locked, resume respects the config, a request is paid once, the manifest keeps what a killed attempt made,
errors can be retried, Retry-After is bounded, and each input gap has its clear error (file, line, field).

Runner tests run small notebooks (as tests/test_runner.py does) against the fault-injecting endpoint served on a
local port (`fake_openai.serve_fake`)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from fake_openai import FakeState, fake_client, serve_fake, server_stats

from jinstruct.answer.engines import answer_with_client, read_answer_file
from jinstruct.answer.records import make_answer
from jinstruct.formats.fastchat import Question, load_answer_dir, load_questions
from jinstruct.formats.layout import RunLayout
from jinstruct.formats.seed_task import load_seed_tasks
from jinstruct.generate.self_instruct import SelfInstructRecipe, generate_self_instruct
from jinstruct.io import DataError, DataWarning, atomic_write_text, iter_jsonl, read_json
from jinstruct.judge.engine import judge_single
from jinstruct.judge.prompts import load_prompts, single_tasks
from jinstruct.llm import ChatRequest
from jinstruct.llm.ledger import cost_usd
from jinstruct.llm.settings import ModelPrice
from jinstruct.run.config import ConfigError
from jinstruct.run.lock import RunLock, RunLocked
from jinstruct.run.runner import Runner
from jinstruct.run.schema import load_config
from jinstruct.seeds.editing import edit_seeds
from jinstruct.seeds.english import english_seeds

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "seeds" / "ja_seed_tasks.jsonl"
PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}
PARAMS = "config_path = None\nrun_dir = None\noverrides = {}\n"
QUICK_FAULTS = ("429", "429bare", "500", "garbage", "empty")  # hangs are tested in test_faults.py


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(c) for c in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def config(path: Path, url: str, **endpoint: Any) -> Path:
    fake = {"base_url": url, "model": "fake-model", "api_key_env": None, "concurrency": 4, "max_retries": 0,
            "backoff_base_s": 0.01, "backoff_max_s": 0.05, "pricing": {"fake-model": PRICE}, **endpoint}
    data = {"name": "hard", "llm": {"cache": str(path.parent / "cache.sqlite3"), "endpoints": {"fake": fake}},
            "seeds": {"endpoint": "fake"}, "generate": {"endpoint": "fake"}, "judge": {"endpoint": "fake"}}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def runner(tmp: Path, **kw: Any) -> Runner:
    return Runner(tmp / "cfg.yaml", notebooks_dir=tmp / "notebooks", runs_dir=tmp / "runs", log=lambda m: None, **kw)


def charged_usd(stats: dict[str, Any]) -> float:
    price = ModelPrice(**PRICE)
    return sum(cost_usd(price, p, c) for p, c in stats["usage"])


def sheet_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def write_sheet(path: Path, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode("utf-8-sig"))


# ---- 1. a person's post-edits are never overwritten -----------------------------------------------------------


def stage_01(tmp: Path, layout: RunLayout, **kw: Any) -> Any:
    client, _ = fake_client(tmp, stage="01_seed_editing")
    with client:
        return edit_seeds(english_seeds("sample", limit=3), client, layout, max_tokens=400,
                          **{"shipped_seeds": SHIPPED, **kw})


def test_rerunning_stage_01_keeps_every_edit_of_the_sheet(tmp_path):
    layout = RunLayout(tmp_path / "run")
    stage_01(tmp_path, layout)
    sheet = layout.postedit_sheet
    rows = sheet_rows(sheet)
    for r in rows:  # a person edits every cell, in place, as notebook 01 says
        r["edited"] = "人手で直した: " + r["machine"]
    write_sheet(sheet, rows)
    edited = sheet.read_bytes()

    # the repro: run 01 again, pointing seeds.edited_sheet at the edited sheet; then once more without it
    again = stage_01(tmp_path, layout, edited_sheet=sheet)
    assert sheet.read_bytes() == edited, "the edits are intact"
    assert again.edited_sheet == sheet and again.sheet == sheet
    fields = [f for t in again.seeds for f in [t.instruction] + [x for i in t.instances for x in (i.input, i.output)]]
    assert fields and all(f.startswith("人手で直した: ") for f in fields), "and they are what the seeds hold"
    stage_01(tmp_path, layout)
    assert sheet.read_bytes() == edited


def test_a_sheet_of_another_translation_is_kept_and_the_new_export_versioned(tmp_path):
    layout = RunLayout(tmp_path / "run")
    stage_01(tmp_path, layout)
    rows = sheet_rows(layout.postedit_sheet)
    rows[0]["machine"], rows[0]["edited"] = "別の機械翻訳", "人の訳"
    write_sheet(layout.postedit_sheet, rows)
    before = layout.postedit_sheet.read_bytes()
    with pytest.warns(DataWarning, match=r"postedit_sheet\.csv: made from another machine translation.*"
                                         r"postedit_sheet\.2\.csv"):
        result = stage_01(tmp_path, layout)
    assert layout.postedit_sheet.read_bytes() == before
    assert result.sheet == layout.seeds / "postedit_sheet.2.csv" and result.sheet.exists()
    with pytest.warns(DataWarning):
        assert stage_01(tmp_path, layout).sheet == result.sheet, "the same export is not written twice"


def test_a_bad_seeds_file_stops_stage_01_before_it_writes_anything(tmp_path):
    layout = RunLayout(tmp_path / "run")
    stage_01(tmp_path, layout)
    files = [layout.machine_translated, layout.translation_report, layout.postedit_sheet, layout.post_edited,
             layout.japanese_seeds]
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    bad = tmp_path / "bad_seeds.jsonl"
    bad.write_text(SHIPPED.read_text(encoding="utf-8").splitlines()[0] + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad_seeds\.jsonl, line 2"):
        stage_01(tmp_path, layout, shipped_seeds=bad)
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before


# ---- 2. budgets and ledgers count every attempt ---------------------------------------------------------------

SPEND = """
from jinstruct.run import Stage
from jinstruct.llm import BudgetExceeded, ChatRequest
st = Stage.open("01_spend", config_path, run_dir, overrides)
client = st.client("fake")
try:
    client.chat_many([ChatRequest.user(f"支出{i}", max_tokens=20) for i in range(40)])
except BudgetExceeded as e:
    print(e)
st.close()
"""


def test_a_budget_holds_over_every_attempt_and_the_manifest_books_what_was_charged(tmp_path):
    notebook(tmp_path / "notebooks" / "01_spend.ipynb", SPEND)
    budget = 0.5
    with serve_fake(fault_rate=0.3, fault_kinds=QUICK_FAULTS) as url:
        config(tmp_path / "cfg.yaml", url, budget_usd=budget, max_retries=3)
        runner(tmp_path).run()
        first = server_stats(url)
        runner(tmp_path, force=True).run()  # a second attempt: before, the ledger was deleted and it spent again
        second = server_stats(url)
        manifest = read_json(tmp_path / "runs" / "hard" / "manifest.json")["stages"]["01_spend"]["llm"]
        assert charged_usd(second) <= budget and len(second["usage"]) == len(first["usage"])
        assert manifest["cost_usd"] == pytest.approx(charged_usd(second))
        assert manifest["calls"] == second["calls"] and manifest["failed_calls"] == sum(second["injected"].values())
        assert manifest["not_sent"] > 0 and len(manifest["attempts"]) == 2

        runner(tmp_path, force=True, reset_budget=True).run()  # the explicit way to spend more
        third = server_stats(url)
    manifest = read_json(tmp_path / "runs" / "hard" / "manifest.json")["stages"]["01_spend"]["llm"]
    assert budget < charged_usd(third) <= 2 * budget
    assert manifest["cost_usd"] == pytest.approx(charged_usd(third)) and manifest["calls"] == third["calls"]
    assert manifest["budget_since_usd"] == pytest.approx(charged_usd(second))


def test_a_killed_clients_calls_are_in_the_ledger(tmp_path):
    """The call log is appended as each call ends: what a killed process spent counts though it never saved."""
    child = ("import os, sys\nsys.path.insert(0, sys.argv[2])\nfrom pathlib import Path\n"
             "from fake_openai import fake_client\nfrom jinstruct.llm import ChatRequest\n"
             "client, state = fake_client(Path(sys.argv[1]), pricing={'fake-model': {'input_per_mtok': 1.0, "
             "'output_per_mtok': 2.0}})\nclient.chat_many([ChatRequest.user(f'k{i}') for i in range(3)])\n"
             "client.ledger.save = lambda *a, **k: None  # killed before the totals are saved again\n"
             "client.chat_many([ChatRequest.user(f'k{i}') for i in range(3, 7)])\n"
             "os._exit(0)  # as a kill: no close\n")
    subprocess.run([sys.executable, "-c", child, str(tmp_path), str(ROOT / "tests")], check=True, timeout=120)
    from jinstruct.llm.ledger import load_ledger

    record = load_ledger(tmp_path / "run" / "ledger" / "test.json")
    assert record is not None and record.calls == 7 and record.cost_usd > 0


# ---- 3. a run holds a lock ------------------------------------------------------------------------------------

SLOW = """
import time
from pathlib import Path
out = Path(run_dir) / "data" / "slow.txt"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("started")
release = Path(run_dir).parent.parent / "release"
for _ in range(1200):  # until the test has tried its second runner
    if release.exists():
        break
    time.sleep(0.1)
"""


def test_a_second_runner_on_the_same_run_refuses_and_names_the_holder(tmp_path):
    notebook(tmp_path / "notebooks" / "01_slow.ipynb", SLOW)
    (tmp_path / "cfg.yaml").write_text("name: locked\n")
    cmd = [sys.executable, "-m", "jinstruct", "run", "--config", str(tmp_path / "cfg.yaml"),
           "--notebooks", str(tmp_path / "notebooks"), "--runs-dir", str(tmp_path / "runs")]
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    started = tmp_path / "runs" / "locked" / "data" / "slow.txt"
    deadline = time.monotonic() + 120
    while not started.exists():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    (tmp_path / "release").touch()
    assert second.returncode == 1
    assert f"is in use by pid {first.pid} on " in second.stderr and "run.lock" in second.stderr
    assert first.wait(timeout=120) == 0
    assert not (tmp_path / "runs" / "locked" / "run.lock").exists(), "released on exit"


def test_a_lock_left_by_a_dead_runner_is_taken_over(tmp_path):
    path = tmp_path / "run" / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom jinstruct.run.lock import RunLock\n"
                               "RunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(60)", str(path)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
        RunLock(path).acquire()
    from jinstruct.run.lock import check_unlocked

    with pytest.raises(RunLocked, match="notebook opened by hand"):
        check_unlocked(path)
    holder.kill()
    holder.wait()
    with RunLock(path) as lock:  # kill -9 frees a flock: the lock is stale and taken over
        assert lock.stale is not None and lock.stale["pid"] == holder.pid
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_file_written_twice_over_is_refused_by_stage_03(tmp_path):
    from jinstruct.filter.stage import load_records

    rec = {"id": "si-000001", "instruction": "説明してください。", "input": "", "output": "はい。", "recipe": "x",
           "source": [], "model": "m"}
    path = tmp_path / "generated.jsonl"
    path.write_text(json.dumps(rec, ensure_ascii=False) + "\n" + json.dumps(rec, ensure_ascii=False) + "\n")
    with pytest.raises(DataError, match=r"generated\.jsonl, line 2: field 'id': duplicate id 'si-000001' "
                                        r"\(first on line 1\)"):
        load_records(path)


# ---- 4. resume respects the config ----------------------------------------------------------------------------

QUESTIONS = [Question(question_id=i, category="writing", turns=[f"質問{i}を書いて"]) for i in range(1, 5)]


def test_answers_are_redone_when_max_tokens_changes(tmp_path):
    out = tmp_path / "answers" / "m.jsonl"
    client, state = fake_client(tmp_path)
    with client:
        answer_with_client(QUESTIONS, client, "m", out, max_tokens=200)
        assert all(len(a.turns[0]) > 8 for a in read_answer_file(out).values())
        report = answer_with_client(QUESTIONS, client, "m", out, max_tokens=8)  # --set answer.max_new_tokens=8
    assert all(len(a.turns[0]) <= 8 for a in read_answer_file(out).values()), "the answers are the new setting's"
    assert (report.already_answered, report.answered) == (0, 4)
    assert "4 redone (settings changed)" in str(report)
    again, _ = fake_client(tmp_path, state, stage="again")
    with again:
        same = answer_with_client(QUESTIONS, again, "m", out, max_tokens=8)
    assert (same.already_answered, same.redone, same.answered) == (4, 0, 0)


def test_answers_replaced_by_a_new_setting_are_kept_aside(tmp_path):
    out, old = tmp_path / "answers" / "m.jsonl", tmp_path / "superseded" / "m.jsonl"
    client, _ = fake_client(tmp_path)
    with client:
        answer_with_client(QUESTIONS, client, "m", out, max_tokens=200)
        before = {a.question_id: a.turns[0] for a in read_answer_file(out).values()}
        answer_with_client(QUESTIONS, client, "m", out, max_tokens=8, superseded=old)
    assert {a["question_id"]: a["choices"][0]["turns"][0] for _, a in iter_jsonl(old)} == before


def judged(tmp: Path, client: Any, max_tokens: int, **kw: Any) -> Any:
    answers = {m: {q.question_id: make_answer(q.question_id, m, [[f"{m}の答え"]]) for q in QUESTIONS}
               for m in ("a", "b")}
    tasks = single_tasks(QUESTIONS, answers, ["a", "b"], load_prompts())
    return judge_single(client, tasks, tmp, max_tokens=max_tokens, mode="json", judge_name="j", echo=False, **kw)


def test_judgments_are_redone_when_the_judges_settings_change(tmp_path):
    client, _ = fake_client(tmp_path)
    with client:
        judged(tmp_path, client, 64)
        again = judged(tmp_path, client, 64)
        changed = judged(tmp_path, client, 48)  # --set judge.max_tokens=48
    assert (again.already_judged, again.judged) == (8, 0)
    assert (changed.already_judged, changed.judged) == (0, 8) and changed.redone == 8
    lines = [json.loads(x) for x in (tmp_path / "j_single.jsonl").read_text().splitlines()]
    assert len(lines) == 8, "one line per graded answer"


def test_judgments_replaced_by_a_new_setting_are_kept_aside(tmp_path):
    client, _ = fake_client(tmp_path)
    with client:
        judged(tmp_path, client, 64)
        judged(tmp_path, client, 48, superseded_dir=tmp_path / "superseded")
    assert len((tmp_path / "superseded" / "j_single.jsonl").read_text().splitlines()) == 8


def test_generation_does_not_resume_under_another_endpoint_model(tmp_path):
    recipe = SelfInstructRecipe.from_seeds(load_seed_tasks(SHIPPED), seed=0, max_tokens=1000)
    out = tmp_path / "generated.jsonl"
    client, _ = fake_client(tmp_path, FakeState(tasks=True), model="model-a")
    with client:
        generate_self_instruct(recipe, client, out, 12, progress=False)
    client, _ = fake_client(tmp_path, FakeState(tasks=True), model="model-b")
    with client, pytest.raises(ValueError, match="endpoint_model='model-a'"):
        generate_self_instruct(recipe, client, out, 12, progress=False)


def test_generation_starts_over_when_the_endpoint_model_changes_keeping_the_old_output(tmp_path):
    recipe = SelfInstructRecipe.from_seeds(load_seed_tasks(SHIPPED), seed=0, max_tokens=1000)
    out = tmp_path / "generated.jsonl"
    for model in ("model-a", "model-b"):
        client, _ = fake_client(tmp_path, FakeState(tasks=True), model=model)
        with client:
            stats = generate_self_instruct(recipe, client, out, 12, progress=False,
                                           supersede_dir=tmp_path / "superseded")
    assert stats.settings_changed == ["endpoint_model"] and stats.resumed_from_records == 0
    assert {r["model"] for _, r in iter_jsonl(out)} == {"model-b"}
    moved = Path(stats.superseded) / "generated.jsonl"
    assert {r["model"] for _, r in iter_jsonl(moved)} == {"model-a"}


# ---- 7. errors can be retried ---------------------------------------------------------------------------------

JUDGE = """
from jinstruct.run import Stage
from jinstruct.answer.records import make_answer
from jinstruct.formats.fastchat import Question
from jinstruct.judge.engine import judge_single
from jinstruct.judge.prompts import load_prompts, single_tasks
st = Stage.open("01_judge", config_path, run_dir, overrides)
questions = [Question(question_id=i, category="writing", turns=[f"質問{i}"]) for i in range(1, 13)]
answers = {m: {q.question_id: make_answer(q.question_id, m, [[f"{m}の答え{q.question_id}"]]) for q in questions}
           for m in ("a", "b")}
report = judge_single(st.client("fake"), single_tasks(questions, answers, ["a", "b"], load_prompts()),
                      st.dir(st.layout.judgments), mode="json", max_tokens=64, max_attempts=1, judge_name="j",
                      retry_errors=st.cfg.judge.retry_errors)
st.report_errors(report.errors_left, "judgments recorded as errors")
st.close()
"""


def test_judgments_recorded_as_errors_are_reported_and_retried(tmp_path):
    notebook(tmp_path / "notebooks" / "01_judge.ipynb", JUDGE)
    log: list[str] = []
    with serve_fake(fault_rate=0.25, fault_kinds=QUICK_FAULTS) as url:
        config(tmp_path / "cfg.yaml", url, max_retries=0)  # a transient failure is not retried by the client
        first = runner(tmp_path).run()
        errors = sum(server_stats(url)["injected"].values())
        assert errors > 0 and first[0].status == f"ok with {errors} error{'s' if errors > 1 else ''}"
        stage = read_json(tmp_path / "runs" / "hard" / "manifest.json")["stages"]["01_judge"]
        assert stage["status"] == first[0].status and stage["errors"] == errors
        again = Runner(tmp_path / "cfg.yaml", notebooks_dir=tmp_path / "notebooks", runs_dir=tmp_path / "runs",
                       log=log.append).run()
        assert again[0].status == "skipped" and "--retry-errors" in log[-2]
        sent = server_stats(url)["calls"]
        retried = runner(tmp_path, retry_errors=True).run()
        assert server_stats(url)["calls"] - sent == errors, "exactly the errors are sent again"
    assert retried[0].status == "ok"
    path = tmp_path / "runs" / "hard" / "judgments" / "j_single.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 24 and all(r["score"] != -1 for r in lines)


# ---- 8. Retry-After is honoured up to backoff_max_s -----------------------------------------------------------


def test_a_retry_after_beyond_backoff_max_fails_at_once_quoting_the_server(tmp_path):
    client, state = fake_client(tmp_path, FakeState(retry_after="100000"), backoff_max_s=2.0)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(client.chat(ChatRequest.user("待って [429x1]"))), daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(timeout=20)
    assert not t.is_alive() and time.monotonic() - t0 < 10, "no stall"
    client.close()
    assert out[0].error is not None and state.calls == 1
    assert "'retry-after: 100000'" in out[0].error and "backoff_max_s=2" in out[0].error


# ---- 9. input gaps --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ("  endpoint: local\n  name: tiny-judge", "  endpoint: locl\n  name: tiny-judge", "judge.endpoint",
     "no endpoint 'locl' under llm.endpoints (have: local)"),
    ("  english_limit: 3\n  endpoint: local", "  english_limit: 3\n  endpoint: transl", "seeds.endpoint",
     "no endpoint 'transl'"),
    ("  endpoint: local\n  self_instruct:", "  endpoint: gen\n  self_instruct:", "generate.endpoint",
     "no endpoint 'gen'"),
    ("{model_id: tiny-sft, trained: tiny-sft}", "{model_id: tiny-sft, trained: tiny-sfx}", "answer.models.0.trained",
     "no train.models entry named 'tiny-sfx'"),
    ("{model_id: tiny-base, base_model: tiny}", "{model_id: tiny-base, endpoint: api}", "answer.models.1.endpoint",
     "no endpoint 'api'"),
    ("baseline: tiny-base ", "baseline: tiny-bse ", "judge.baseline", "'tiny-bse' is not a model_id of answer.models"),
])
def test_config_references_are_checked_at_load_with_file_line_and_key(tmp_path, old, new, key, words):
    text = (ROOT / "configs" / "tiny.yaml").read_text(encoding="utf-8")
    assert text.count(old) == 1
    path = tmp_path / "c.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    changed = next(x for x in new.split("\n") if x not in old.split("\n")).strip()
    line = next(i for i, x in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if changed in x)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"{path}, line {line}: key '{key}': {words}" in str(e.value)
    if ".models." not in key:  # an override is named as one
        with pytest.raises(ConfigError, match=rf"\(override\): key '{key}'"):
            load_config(ROOT / "configs" / "tiny.yaml", {key: "nothing-of-the-kind"})


def test_a_byte_order_mark_is_accepted(tmp_path):
    bom = b"\xef\xbb\xbf"
    q = tmp_path / "question.jsonl"
    q.write_bytes(bom + (ROOT / "data/bench/ja_qa80/question.jsonl").read_bytes())
    assert len(load_questions(q)) == 80
    s = tmp_path / "seeds.jsonl"
    s.write_bytes(bom + SHIPPED.read_bytes())
    assert len(load_seed_tasks(s)) == 175
    c = tmp_path / "c.yaml"
    c.write_bytes(bom + (ROOT / "configs/tiny.yaml").read_bytes())
    assert load_config(c).name == "tiny"
    j = tmp_path / "x.json"
    j.write_bytes(bom + b'{"a": 1}')
    assert read_json(j) == {"a": 1}


def test_an_empty_question_file_and_a_string_question_id_are_errors(tmp_path):
    empty = tmp_path / "question.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match=r"question\.jsonl: no questions in the file"):
        load_questions(empty)
    quoted = tmp_path / "quoted.jsonl"
    quoted.write_text('{"question_id": 1, "category": "writing", "turns": ["a"]}\n'
                      '{"question_id": "2", "category": "writing", "turns": ["b"]}\n')
    with pytest.raises(DataError, match=r"quoted\.jsonl, line 2: field 'question_id': '2' is not an integer"):
        load_questions(quoted)


def test_results_names_games_judged_twice_and_files_without_judgments(tmp_path, capsys):
    from jinstruct.__main__ import main

    line = {"question_id": 1, "model_1": "a", "model_2": "b", "g1_winner": "model_1", "g2_winner": "model_1",
            "judge": ["j", "pair-v2"], "turn": 1}
    path = tmp_path / "j_pair.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps({**line, "g1_winner": "tie"}) + "\n")
    assert main(["results", "pairwise", str(path), "--rounds", "0"]) == 0
    err = capsys.readouterr().err
    assert f"{path}, line 2: question 1 turn 1 (a vs b) by j was judged before (line 1)" in err
    empty = tmp_path / "empty_pair.jsonl"
    empty.write_text("")
    assert main(["results", "pairwise", str(empty)]) == 1
    assert f"{empty}: no pairwise judgments in the file" in capsys.readouterr().err


def test_a_torn_last_answer_line_is_named_not_dropped_silently(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(make_answer(1, "m", [["a"]]).record()) + "\n" + '{"question_id": 2, "mo')
    with pytest.warns(DataWarning, match=r"m\.jsonl, line 2: the last line is cut off"):
        assert list(read_answer_file(path, "m")) == ["1"]


def test_an_answer_file_of_another_model_is_an_error(tmp_path):
    (tmp_path / "tuned.jsonl").write_text(json.dumps(make_answer(1, "base", [["a"]]).record()) + "\n")
    with pytest.raises(DataError, match=r"tuned\.jsonl, line 1: field 'model_id': an answer of 'base' read as the "
                                        r"answers of 'tuned'"):
        load_answer_dir(tmp_path)


def _sheet(tmp: Path) -> tuple[Path, list[dict[str, str]], list[Any]]:
    from test_postedit import ENGLISH, MACHINE

    from jinstruct.seeds.postedit import export_sheet

    path = export_sheet(ENGLISH, MACHINE, tmp / "sheet.csv")
    return path, sheet_rows(path), MACHINE


def test_a_formula_in_an_edited_cell_is_kept_as_text_with_a_warning(tmp_path):
    from jinstruct.seeds.postedit import import_sheet

    path, rows, machine = _sheet(tmp_path)
    rows[3]["edited"] = "=1+1"
    write_sheet(path, rows)
    with pytest.warns(DataWarning, match=r"sheet\.csv, line \d+: field 'edited': '=1\+1' looks like a spreadsheet"):
        edited = import_sheet(path, machine)
    assert edited[1].instruction == "=1+1"


def test_a_changed_task_id_is_blamed_on_its_own_row(tmp_path):
    from jinstruct.seeds.postedit import import_sheet

    path, rows, machine = _sheet(tmp_path)
    i = next(k for k, r in enumerate(rows) if r["task_id"] == "t1" and r["field"] == "instruction")
    rows[i]["task_id"] = "t2"  # now reads "t2 instruction", which the next task's first row really is
    write_sheet(path, rows)
    text = path.read_bytes().decode("utf-8-sig")
    line = text[: text.index("\r\nt2,instruction,")].count("\n") + 2
    with pytest.raises(DataError) as e:
        import_sheet(path, machine)
    assert (e.value.line, e.value.field) == (line, "task_id")
    assert "its machine text is that of 't1 instruction'" in e.value.problem


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_take_the_mode_of_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "f.txt", "x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask
