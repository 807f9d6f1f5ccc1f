"""Benchmarks by name or folder, pinned downloads into the user cache, ja-vicuna's layouts, published answers.

Offline throughout: a "download" is an httpx MockTransport serving small files written for the project in the real
layouts (tests/data/ja_vicuna), never the real files; a registry entry with the real pins is only used to check the
offline error.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import httpx
import pytest

from jinstruct.download import ChecksumError, DownloadError
from jinstruct.formats import benchmarks as bm
from jinstruct.formats.fastchat import answer_files, load_answer_dir, load_benchmark, load_pairwise_judgments
from jinstruct.judge.prompts import choose_prompt, load_prompts, pairwise_tasks

JV = Path(__file__).parent / "data" / "ja_vicuna"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Server:
    """Serves the files of `folder` at `<base>/<path>`, counting the requests; `offline` fails every request."""

    def __init__(self, base: str, folder: Path, offline: bool = False):
        self.calls: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            url = str(request.url)
            self.calls.append(url)
            if offline:
                raise httpx.ConnectError("Name or service not known")
            path = folder / url.removeprefix(base + "/")
            return httpx.Response(200, content=path.read_bytes()) if path.is_file() else httpx.Response(404)

        self.client = httpx.Client(transport=httpx.MockTransport(handler))


def stand_in() -> bm.Remote:
    """The ja-vicuna entry with our small files' checksums (same repository, commit, folder and file paths)."""
    files = tuple(bm.Pinned(f.path, sha(JV / f.path)) for f in bm.JA_VICUNA.files)
    davinci = bm.JA_VICUNA.answers["openai--text-davinci-003"]
    return dataclasses.replace(bm.JA_VICUNA, files=files,
                               answers={"openai--text-davinci-003": bm.Pinned(davinci.path, sha(JV / davinci.path))})


def base_url(bench: bm.Remote) -> str:
    return f"https://raw.githubusercontent.com/{bench.repo}/{bench.commit}/{bench.folder}"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("JINSTRUCT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_paper_benchmark_is_pinned_as_the_issue_states():
    jv = bm.REGISTRY["ja-vicuna"]
    assert (jv.repo, jv.commit, jv.folder) == ("ku-nlp/ja-vicuna-qa-benchmark",
                                               "128a862da6a4478c3e80ab3c3b716d1417380751", "data/jp_bench")
    assert {f.path: f.sha256 for f in jv.files} == {
        "question.jsonl": "0a66a22e6c07773c35bfd2c12c1226ff2873d3e7b70981b9dec7ca8efb72b5d0",
        "judge_prompts.jsonl": "429c07ec35405812b26e10273520d8cd6ffe923808ab6021d431d9ae537be684",
        "reference_answer/gpt-4/results.jsonl": "078918a9138607b91e4614097c1f6b1208e9563616ef4a1cc0339aa6526e4427",
    }
    assert jv.answers["openai--text-davinci-003"] == bm.Pinned(
        "model_answer/openai--text-davinci-003/results.jsonl",
        "a50d7e090324f91e2c36c6d2cd6663b3d61c0b9ac252bd04962a19348915b334")
    mt = bm.REGISTRY["ja-mt-bench"]
    assert mt.repo == "lm-sys/FastChat" and mt.folder == "fastchat/llm_judge/data/japanese_mt_bench"
    assert all(f.sha256 is None for f in mt.files)  # not checked by the project: the user pins them


def test_names_and_folders_resolve():
    assert bm.benchmark_folder("ja_qa80") == bm.benchmark_folder("data/bench/ja_qa80")
    assert (bm.benchmark_folder("ja_qa80") / "question.jsonl").is_file()
    assert bm.benchmark_folder(JV) == JV
    with pytest.raises(FileNotFoundError, match="no question.jsonl.*ja-mt-bench"):
        bm.benchmark_folder(JV / "model_answer")
    with pytest.raises(KeyError, match="unknown benchmark 'nope'"):
        bm.benchmark_folder(bm.BenchmarkRef(name="nope"))


def test_ja_vicuna_is_downloaded_once_checked_and_read_in_its_layout(cache):
    bench = stand_in()
    server = Server(base_url(bench), JV)
    folder = bm.benchmark_folder("ja-vicuna", registry={"ja-vicuna": bench}, http=server.client)
    assert folder == cache / "benchmarks" / "ja-vicuna" / bench.commit / "data" / "jp_bench"
    assert len(server.calls) == 3 and server.calls[0] == (
        "https://raw.githubusercontent.com/ku-nlp/ja-vicuna-qa-benchmark/128a862da6a4478c3e80ab3c3b716d1417380751/"
        "data/jp_bench/question.jsonl")
    assert (folder / "reference_answer" / "gpt-4" / "results.jsonl").read_bytes() == (
        JV / "reference_answer" / "gpt-4" / "results.jsonl").read_bytes()
    # the second time the cache answers, checked again; no request
    offline = Server(base_url(bench), JV, offline=True)
    assert bm.benchmark_folder("ja-vicuna", registry={"ja-vicuna": bench}, http=offline.client) == folder
    assert offline.calls == []
    prompts = bm.judge_prompts_file("ja-vicuna", registry={"ja-vicuna": bench}, http=offline.client)
    assert prompts == folder / "judge_prompts.jsonl"


def test_a_changed_cached_file_is_refused(cache):
    bench = stand_in()
    bm.benchmark_folder("ja-vicuna", registry={"ja-vicuna": bench}, http=Server(base_url(bench), JV).client)
    question = bench.local(bench.files[0])
    question.write_bytes(question.read_bytes() + b"\n")
    with pytest.raises(ChecksumError, match="cached; delete it to download again.*checksum mismatch"):
        bm.benchmark_folder("ja-vicuna", registry={"ja-vicuna": bench})


def test_offline_names_each_url_sha256_and_where_to_put_it(cache):
    bench = bm.JA_VICUNA  # the real pins
    offline = Server(base_url(bench), JV, offline=True)
    with pytest.raises(DownloadError) as err:
        bm.benchmark_folder("ja-vicuna", http=offline.client)
    text = str(err.value)
    assert "3 file(s) could not be downloaded" in text
    for f in bench.files:
        assert bench.url(f) in text and f.sha256 in text and str(bench.local(f)) in text
    assert not list(cache.rglob("*.jsonl"))


def test_an_unpinned_benchmark_file_is_refused_with_its_sha256_until_pinned(cache):
    # Japanese MT-Bench: the project pins the commit only; stand-in files in FastChat's layout
    mt = dataclasses.replace(bm.JA_MT_BENCH, files=(bm.Pinned("question.jsonl", None),
                                                    bm.Pinned("reference_answer/gpt-4/results.jsonl", None)))
    server = Server(base_url(mt), JV)
    with pytest.raises(ChecksumError) as err:
        bm.benchmark_folder("ja-mt-bench", registry={"ja-mt-bench": mt}, http=server.client)
    assert sha(JV / "question.jsonl") in str(err.value) and "no sha256 is pinned" in str(err.value)
    assert "sha256: {question.jsonl: <sha256>}" in str(err.value)
    assert not list(cache.rglob("*.jsonl"))  # nothing unpinned is kept
    ref = bm.BenchmarkRef(name="ja-mt-bench", sha256={f.path: sha(JV / f.path) for f in mt.files})
    folder = bm.benchmark_folder(ref, registry={"ja-mt-bench": mt}, http=server.client)
    assert (folder / "question.jsonl").read_bytes() == (JV / "question.jsonl").read_bytes()


def test_load_benchmark_reads_references_in_both_layouts(tmp_path):
    questions, refs = load_benchmark(JV)
    assert [q.category for q in questions] == ["generic", "coding", "math", "writing"]
    assert sorted(refs) == [2, 3] and refs[3].model_id == "gpt-4"
    fastchat_layout = tmp_path / "bench"
    (fastchat_layout / "reference_answer").mkdir(parents=True)
    (fastchat_layout / "question.jsonl").write_bytes((JV / "question.jsonl").read_bytes())
    (fastchat_layout / "reference_answer" / "gpt-4.jsonl").write_bytes(
        (JV / "reference_answer" / "gpt-4" / "results.jsonl").read_bytes())
    assert sorted(load_benchmark(fastchat_layout)[1]) == [2, 3]
    assert len(load_benchmark(fastchat_layout, per_category=1)[0]) == 4


def test_answer_folders_in_ja_vicuna_and_fastchat_layouts():
    files = answer_files(JV / "model_answer")
    assert {m: p.relative_to(JV / "model_answer").as_posix() for m, p in files.items()} == {
        "calm": "calm/results.jsonl", "openai--text-davinci-003": "openai--text-davinci-003/results.jsonl",
        "rinna": "rinna.jsonl"}
    answers = load_answer_dir(JV / "model_answer")
    assert answers["rinna"][1].model_id == "rinna"  # FastChat's: named by the file
    assert answers["calm"][3].turns == ["両辺から5を引いて3で割ると x = 5 です。"]


def test_ja_vicuna_prompt_names_play_fastchats_roles():
    prompts = load_prompts(JV / "judge_prompts.jsonl")
    assert choose_prompt(prompts, "pairwise", reference=False, multi_turn=False).name == "pair"
    assert choose_prompt(prompts, "pairwise", reference=True, multi_turn=False).name == "pair-math"
    assert choose_prompt(prompts, "single", reference=False, multi_turn=False).name == "single"
    assert choose_prompt(prompts, "single", reference=True, multi_turn=False).name == "single-math"
    questions, refs = load_benchmark(JV)
    tasks = pairwise_tasks(questions, load_answer_dir(JV / "model_answer"), ["calm", "openai--text-davinci-003"],
                           prompts, baseline="openai--text-davinci-003", reference_answers=refs)
    assert [t.g1.prompt.name for t in tasks] == ["pair", "pair-math", "pair-math", "pair"]
    assert "dict.fromkeys" in tasks[1].g1.user_prompt  # coding: judged against the GPT-4 reference


def test_ja_vicuna_v2_pairwise_files_load():
    js = load_pairwise_judgments(JV / "model_judgment" / "gpt-4_pair.jsonl")
    assert js[0].judge == ("gpt-4", "pair") and js[0].turn == 1 and js[0].verdict_rule is None
    assert js[0].question == "朝型の生活に切り替えるこつを教えてください。"  # extra fields are kept


def test_published_answers_by_name_url_or_path(cache):
    bench = stand_in()
    server = Server(base_url(bench), JV)
    path = bm.published_answers("ja-vicuna:openai--text-davinci-003", registry={"ja-vicuna": bench},
                                http=server.client)
    assert path.read_bytes() == (JV / "model_answer" / "openai--text-davinci-003" / "results.jsonl").read_bytes()
    with pytest.raises(KeyError, match="no published answers of 'calm'"):
        bm.published_answers("ja-vicuna:calm", registry={"ja-vicuna": bench})
    # a URL: refused until its sha256 is pinned, then fetched once into the cache
    url = base_url(bench) + "/model_answer/calm/results.jsonl"
    with pytest.raises(ChecksumError, match="answers_sha256"):
        bm.published_answers(url, http=server.client)
    pinned = bm.published_answers(url, sha(JV / "model_answer" / "calm" / "results.jsonl"), http=server.client)
    assert pinned.is_relative_to(cache / "answers") and pinned.name == "results.jsonl"
    with pytest.raises(DownloadError, match="no sha256 pinned.*answers"):
        bm.published_answers(url.replace("calm", "other"), http=Server(base_url(bench), JV, offline=True).client)
    # a path: used as it is, checked when a sha256 is given
    local = JV / "model_answer" / "rinna.jsonl"
    assert bm.published_answers(str(local)) == local
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        bm.published_answers(str(local), "0" * 64)


def test_ja_mt_bench_two_turns_and_the_multi_turn_prompts(cache):
    """Japanese MT-Bench in FastChat's layout (stand-in files, pinned by the user): both turns are judged, turn 2
    with the multi-turn prompts, math and reasoning against the GPT-4 reference."""
    from jinstruct.answer.records import make_answer
    from jinstruct.judge.prompts import single_tasks

    mt_files = Path(__file__).parent / "data" / "ja_mt_bench"
    mt = bm.JA_MT_BENCH
    assert [f.path for f in mt.files] == ["question.jsonl", "reference_answer/gpt-4.jsonl"]
    ref = bm.BenchmarkRef(name="ja-mt-bench", sha256={f.path: sha(mt_files / f.path) for f in mt.files})
    folder = bm.benchmark_folder(ref, registry={"ja-mt-bench": mt}, http=Server(base_url(mt), mt_files).client)
    questions, refs = load_benchmark(folder)
    assert [len(q.turns) for q in questions] == [2, 2, 2] and sorted(refs) == [2, 3]
    answers = {"m": {q.question_id: make_answer(q.question_id, "m", [["一つ目", "二つ目"]]) for q in questions}}
    tasks = single_tasks(questions, answers, ["m"], load_prompts(), reference_answers=refs)
    assert [(t.question.question_id, t.turn, t.input.prompt.name) for t in tasks] == [
        (1, 1, "single-v1"), (1, 2, "single-v1-multi-turn"),
        (2, 1, "single-math-v1"), (2, 2, "single-math-v1-multi-turn"),
        (3, 1, "single-math-v1"), (3, 2, "single-math-v1-multi-turn")]
    assert "5050です。" in tasks[3].input.user_prompt and "二つ目" in tasks[3].input.user_prompt
