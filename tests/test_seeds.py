"""Seed task files: loading with clear errors, writing, and fetching the official English seeds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from jinstruct.io import DataError
from jinstruct.formats.seed_task import Instance, SeedTask, load_seed_tasks, task_fields, with_fields, write_seed_tasks
from jinstruct.seeds.english import (
    ChecksumError,
    DownloadError,
    english_sample_path,
    english_seeds,
    fetch_official_seeds,
)


def content_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record(i: int, **changes: object) -> dict[str, object]:
    r: dict[str, object] = {
        "id": f"seed_task_{i}",
        "name": f"task_{i}",
        "instruction": f"Do thing number {i}.",
        "instances": [{"input": "", "output": f"Done {i}."}],
        "is_classification": False,
    }
    r.update(changes)
    return r


def write_lines(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_load_reads_every_field(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "s.jsonl",
        [
            record(0),
            record(
                1,
                instances=[{"input": "晴れ", "output": "sunny"}, {"input": "雨", "output": "rainy"}],
                is_classification=True,
            ),
        ],
    )
    tasks = load_seed_tasks(path)
    assert [t.id for t in tasks] == ["seed_task_0", "seed_task_1"]
    assert tasks[1].instances == [Instance(input="晴れ", output="sunny"), Instance(input="雨", output="rainy")]
    assert tasks[1].is_classification is True
    assert tasks[0].instances[0].input == ""


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"instances": [{"input": "x"}]}, "instances.0.output", "Field required"),
        ({"instruction": "   "}, "instruction", "must not be empty"),
        ({"instruction": ""}, "instruction", "must not be empty"),
        ({"is_classification": "yes"}, "is_classification", "boolean"),
        ({"is_classification": 1}, "is_classification", "boolean"),
        ({"instances": []}, "instances", "at least 1"),
        ({"instances": [{"input": 3, "output": "x"}]}, "instances.0.input", "string"),
        ({"instuction": "typo"}, "instuction", "Extra inputs"),
    ],
)
def test_bad_line_names_file_line_and_field(tmp_path: Path, changes: dict[str, object], field: str, words: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [record(0), record(1), record(2, **changes)])
    with pytest.raises(DataError) as err:
        load_seed_tasks(path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 3, field)
    assert words in err.value.problem
    assert str(path) in str(err.value) and "line 3" in str(err.value)


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dup.jsonl", [record(0), record(1), record(0, name="again")])
    with pytest.raises(DataError) as err:
        load_seed_tasks(path)
    assert (err.value.line, err.value.field) == (3, "id")
    assert "seed_task_0" in err.value.problem and "first on line 1" in err.value.problem


def test_invalid_json_and_empty_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(record(0)) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        load_seed_tasks(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no seed tasks"):
        load_seed_tasks(empty)


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    tasks = [
        SeedTask.model_validate(record(0, instruction="敬語に直してください。")),
        SeedTask.model_validate(record(1)),
    ]
    path = write_seed_tasks(tmp_path / "out" / "seeds.jsonl", tasks)
    assert load_seed_tasks(path) == tasks
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert "敬語に直してください。" in first  # readable, not \u escapes
    assert list(json.loads(first)) == ["id", "name", "instruction", "instances", "is_classification"]
    assert not list(path.parent.glob(".*.tmp"))
    with pytest.raises(ValueError, match="duplicate"):
        write_seed_tasks(tmp_path / "dup.jsonl", [tasks[0], tasks[0]])


def test_task_fields_and_with_fields() -> None:
    task = SeedTask.model_validate(record(0, instances=[{"input": "a", "output": "b"}, {"input": "", "output": "d"}]))
    assert list(task_fields(task)) == [
        ("instruction", "Do thing number 0."),
        ("instances.0.input", "a"),
        ("instances.0.output", "b"),
        ("instances.1.input", ""),
        ("instances.1.output", "d"),
    ]
    changed = with_fields(task, {"instances.1.output": "D", "instruction": "やって"})
    assert changed.instruction == "やって" and changed.instances[1].output == "D" and changed.instances[0].output == "b"
    assert changed.id == task.id and task.instances[1].output == "d"
    with pytest.raises(KeyError):
        with_fields(task, {"instances.2.input": "x"})
    with pytest.raises(ValueError):
        with_fields(task, {"instruction": " "})


# --- the official English seeds ---------------------------------------------------------------------------


def official_like(n: int = 175) -> bytes:
    return "".join(json.dumps(record(i)) + "\n" for i in range(n)).encode()


class Server:
    """An httpx client whose every GET answers `content` (or raises `fail`), counting the calls."""

    def __init__(self, content: bytes = b"", status: int = 200, fail: Exception | None = None):
        self.calls: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            self.calls.append(str(request.url))
            if fail is not None:
                raise fail
            return httpx.Response(status, content=content)

        self.client = httpx.Client(transport=httpx.MockTransport(handler))


def test_fetch_downloads_verifies_and_caches(tmp_path: Path) -> None:
    data = official_like()
    server = Server(data)
    path = fetch_official_seeds(tmp_path, sha256=content_sha256(data), http=server.client)
    assert path.read_bytes() == data and len(load_seed_tasks(path)) == 175
    assert server.calls == ["https://raw.githubusercontent.com/yizhongw/self-instruct/main/data/seed_tasks.jsonl"]
    # The second call reads the cache (and checks it again) without the network.
    again = fetch_official_seeds(tmp_path, sha256=content_sha256(data), http=Server(fail=RuntimeError("no")).client)
    assert again == path


def test_fetch_checksum_mismatch_is_an_error_and_nothing_is_kept(tmp_path: Path) -> None:
    server = Server(official_like())
    with pytest.raises(ChecksumError) as err:
        fetch_official_seeds(tmp_path, sha256="0" * 64, http=server.client)
    assert "checksum mismatch" in str(err.value) and "0" * 64 in str(err.value)
    assert content_sha256(official_like()) in str(err.value)
    assert not list(tmp_path.iterdir())


def test_fetch_checks_the_line_count(tmp_path: Path) -> None:
    data = official_like(174)
    with pytest.raises(ChecksumError, match="expected 175 seed tasks.*found 174"):
        fetch_official_seeds(tmp_path, sha256=content_sha256(data), http=Server(data).client)


def test_a_download_that_is_not_seed_tasks_is_not_kept(tmp_path: Path) -> None:
    data = b"".join(json.dumps(record(i, instruction="")).encode() + b"\n" for i in range(175))
    with pytest.raises(DataError, match="line 1: field 'instruction'"):
        fetch_official_seeds(tmp_path, sha256=None, http=Server(data).client)
    assert not list(tmp_path.iterdir())


def test_a_bad_cached_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "self_instruct_seed_tasks.jsonl").write_bytes(official_like(3))
    with pytest.raises(ChecksumError, match="cached; delete it to download again.*checksum mismatch"):
        fetch_official_seeds(tmp_path, http=Server(fail=RuntimeError("unused")).client)


@pytest.mark.parametrize(
    "server",
    [
        lambda: Server(fail=httpx.ConnectError("Name or service not known")),
        lambda: Server(b"Not Found", status=404),
    ],
)
def test_offline_official_is_an_error_never_the_sample(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DownloadError) as err:
        english_seeds("official", cache_dir=tmp_path, http=server().client)
    assert "source='sample'" in str(err.value) and "self_instruct_seed_tasks.jsonl" in str(err.value)


def test_english_sample_ships_and_loads() -> None:
    tasks = english_seeds("sample")
    assert tasks == load_seed_tasks(english_sample_path())
    assert len(tasks) >= 10
    assert english_seeds("sample", limit=3) == tasks[:3]
    with pytest.raises(ValueError, match="unknown English seed source"):
        english_seeds("other")  # type: ignore[arg-type]


def test_kind_counts_split_as_self_instruct_does():
    from jinstruct.formats.seed_task import Instance, SeedTask, kind_counts

    def task(i: int, inputs: list[str], cls: bool = False) -> SeedTask:
        return SeedTask(id=f"t{i}", name=f"n{i}", instruction="指示", is_classification=cls,
                        instances=[Instance(input=x, output="答え") for x in inputs])

    tasks = [task(0, [""]), task(1, ["", " "]), task(2, ["入力"]), task(3, ["", "入力"]), task(4, ["文"], cls=True)]
    assert kind_counts(tasks) == {"tasks": 5, "classification": 1, "empty input": 2, "with input": 2}


def test_the_official_pin_is_the_plain_sha256_of_the_upstream_file() -> None:
    from jinstruct.seeds import english

    # the upstream file: 110,934 bytes with LF line endings; its plain sha256 is pinned, with no normalisation
    assert english.OFFICIAL_SHA256 == "7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48"
    assert english.OFFICIAL_LINES == 175
    assert "UNVERIFIED" not in Path(english.__file__).read_text(encoding="utf-8")


def test_a_crlf_copy_of_the_pinned_file_is_refused(tmp_path: Path) -> None:
    # no CRLF normalisation: the same records with Windows line endings are another file
    data = official_like()
    crlf = data.replace(b"\n", b"\r\n")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        fetch_official_seeds(tmp_path, sha256=content_sha256(data), http=Server(crlf).client)
    assert not list(tmp_path.iterdir())
