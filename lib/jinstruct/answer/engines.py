"""Answering the benchmark (notebook 05): a model's answers to every question, in FastChat's answer format.

Two ways to produce them, one file format (`answers/<model_id>.jsonl`, see `jinstruct.formats.fastchat.Answer`):

- `answer_with_transformers`: a local causal LM (a base model, with a QLoRA adapter or not; see
  `load_answer_model`) through transformers. Prompts are batched with left padding, sorted by length so that
  a batch holds prompts of similar length, and rendered with the template the model was trained with:
  `chat` (the tokenizer's chat template), `alpaca_ja` (`### 指示:` / `### 応答:`) or `alpaca_ja_2309`
  (`### 返答:`). Sampling is greedy for a category whose temperature is 0 and plain temperature sampling (no
  top-k) otherwise; each sampled batch gets a seed derived from `seed` and the (question, turn, choice) it holds.
- `answer_with_client`: any OpenAI-compatible endpoint through the project's LLM client (a baseline model
  behind an API, or vLLM serving a tuned model); the client's cache makes a repeated run free.
- `answer_with_vllm`: a local model (base, or base + QLoRA adapter) served for the duration by vLLM
  (`jinstruct.llm.vllm_server`) and answered through the client: the adapter is applied to the unquantised base
  (vLLM's LoRA), in the chat template the tokenizer carries. The adapter is served under its name plus a hash of
  its weights, so a retrained adapter never gets the cached answers of the one before.

Both follow FastChat's `gen_model_answer.py`: the temperature comes from the question's category
(`jinstruct.answer.records.temperature_for`), a multi-turn question is answered turn by turn with the model's own
earlier answers fed back, and `num_choices` independent samples can be drawn. Answers are appended to the
file as each group of questions is finished, so a killed run keeps what it wrote; a rerun answers only the
questions that have no complete answer yet (`jinstruct.answer.records.missing_answers`), and at the end the file
is rewritten atomically in question order with one answer per question.

Resume respects the settings: each answer carries `settings_id`, a digest of what produced it (the generator: model,
adapter, template, max tokens, seed, top_p; the question's text and its sampling temperature; choices, system
prompt). An answer whose settings differ is answered again, and the old one is moved to `superseded` (when given);
an answer without a `settings_id` (a file placed by hand) is taken as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from jinstruct.progress import bar as progress_bar
from jinstruct.answer.records import TEMPERATURES, make_answer, missing_answers, temperature_for, turn_messages
from jinstruct.formats.fastchat import Answer, Question, QuestionId, append_records, write_records
from jinstruct.llm.settings import EndpointSettings
from jinstruct.train.templates import Template, render, stops
from jinstruct.io import DataError, DataWarning, append_jsonl, iter_jsonl, validation_error

if TYPE_CHECKING:
    from jinstruct.llm import LLMClient
    from jinstruct.llm.vllm_server import VLLMSettings



@dataclass(frozen=True)
class TurnPrompt:
    """One generation to make: turn `turn` (1-based) of a question, for sample `choice`."""

    question_id: QuestionId
    turn: int
    choice: int
    messages: list[dict[str, str]]
    temperature: float

    @property
    def key(self) -> str:
        return f"{self.question_id}\x00{self.turn}\x00{self.choice}"


@dataclass(frozen=True)
class Generated:
    """What came back for one TurnPrompt: the text, or None and why not."""

    text: str | None
    error: str | None = None
    truncated: bool = False  # stopped at the token limit


Generate = Callable[[Sequence[TurnPrompt]], list[Generated]]


@dataclass
class AnswerReport:
    """What one answering run did."""

    model_id: str
    path: Path
    questions: int
    already_answered: int  # reused: answered before under the same settings
    redone: int = 0  # answered again because their settings changed
    answered: int = 0
    truncated: int = 0  # new answers with a turn cut at the token limit
    failed: dict[str, str] = field(default_factory=dict)  # question_id -> why it has no answer
    seconds: float = 0.0

    def __str__(self) -> str:
        text = (f"{self.model_id}: {self.questions} questions, {self.already_answered} reused (same settings), "
                f"{self.redone} redone (settings changed), {self.answered} answered now ({self.truncated} cut at the token limit), "
                f"{len(self.failed)} failed, {self.seconds:.1f} s -> {self.path}")
        for qid, why in list(self.failed.items())[:10]:
            text += f"\n  question {qid}: {why}"
        return text


# ---- the answer file ------------------------------------------------------------------------------------------


def read_answer_file(path: str | Path, model_id: str | None = None) -> dict[str, Answer]:
    """The answers already in a file being written: {str(question_id): answer}. A line cut off by a kill is
    dropped, and a question answered twice keeps its last line (a resumed run may append a newer answer).
    An answer of another model is a DataError."""
    path = Path(path)
    out: dict[str, Answer] = {}
    if not path.exists():
        return out
    if _torn(path):
        last = path.read_bytes().count(b"\n") + 1
        warnings.warn(DataWarning(path, last, None, "the last line is cut off (a run killed while writing it): "
                                  "it is dropped and its question answered again"), stacklevel=2)
    for line, obj in iter_jsonl(path, tolerate_torn_tail=True):
        try:
            answer = Answer.model_validate(obj)
        except ValidationError as e:
            raise validation_error(path, line, e) from None
        if model_id is not None and answer.model_id not in (None, model_id):
            raise DataError(path, line, "model_id", f"answer of model {answer.model_id!r} in the file of {model_id!r}")
        if answer.model_id is None and model_id is not None:
            answer.model_id = model_id
        out.pop(str(answer.question_id), None)
        out[str(answer.question_id)] = answer
    return out


def _rewrite(path: Path, questions: Sequence[Question], answers: Mapping[str, Answer]) -> None:
    """The file, atomically: one answer per question in question order, then answers to other questions."""
    order = [str(q.question_id) for q in questions]
    known = set(order)
    ordered = [answers[k] for k in order if k in answers]
    ordered += [a for k, a in answers.items() if k not in known]
    write_records(path, ordered)


def _torn(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as f:
        f.seek(-1, 2)
        return f.read(1) != b"\n"


# ---- the driver -----------------------------------------------------------------------------------------------


def settings_ids(questions: Sequence[Question], generator: Mapping[str, Any], num_choices: int,
                 temperatures: Mapping[str, float], system: str | None) -> dict[str, str]:
    """{str(question_id): digest of what produces its answer}: the generator's identity, the question's turns and
    sampling temperature, the number of choices and the system prompt."""
    out = {}
    for q in questions:
        blob = json.dumps({"generator": generator, "turns": q.turns, "temperature": temperature_for(q.category, temperatures),
                           "choices": num_choices, "system": system}, sort_keys=True, ensure_ascii=False, default=str)
        out[str(q.question_id)] = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
    return out


def _set_aside(existing: dict[str, Answer], ids: Mapping[str, str], superseded: Path | None) -> int:
    """Drop from `existing` the answers made under other settings (moved to `superseded` when given)."""
    stale = [k for k, a in existing.items()
             if k in ids and getattr(a, "settings_id", None) not in (None, ids[k])]
    if stale and superseded is not None:
        append_jsonl(superseded, (existing[k].record() for k in stale))
    for k in stale:
        del existing[k]
    return len(stale)


def answer_questions(questions: Sequence[Question], generate: Generate, model_id: str, out_path: str | Path,
                     num_choices: int = 1, temperatures: Mapping[str, float] = TEMPERATURES,
                     system: str | None = None, group_size: int = 32, superseded: str | Path | None = None
                     ) -> AnswerReport:
    """Answer every question that has no complete answer in `out_path` yet (or one made under other settings, see
    the module docstring: moved to `superseded` when given), with `generate` (see `TransformersGenerator`,
    `ClientGenerator`), `group_size` questions at a time; each finished group is appended to the file. A question
    whose generation failed gets no answer (a rerun tries it again) and is listed in the report."""
    if num_choices < 1:
        raise ValueError(f"num_choices must be at least 1, got {num_choices}")
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}")
    start = time.monotonic()
    path = Path(out_path)
    identity = generate.identity() if hasattr(generate, "identity") else {}
    ids = settings_ids(questions, identity, num_choices, temperatures, system)
    existing = read_answer_file(path, model_id)
    redone = _set_aside(existing, ids, Path(superseded) if superseded is not None else None)
    if _torn(path) or redone:  # appending after a cut-off line would glue the next record onto it
        _rewrite(path, questions, existing)
    todo = set(map(str, missing_answers(questions, existing.values())))
    pending = [q for q in questions if str(q.question_id) in todo]
    report = AnswerReport(model_id=model_id, path=path, questions=len(questions),
                          already_answered=len(questions) - len(pending), redone=redone)
    for i in range(0, len(pending), group_size):
        group = pending[i: i + group_size]
        finished = _answer_group(group, generate, model_id, num_choices, temperatures, system, report)
        for a in finished:
            a.settings_id = ids[str(a.question_id)]  # type: ignore[attr-defined]  (an extra field FastChat ignores)
        if finished:
            append_records(path, finished)
            existing.update((str(a.question_id), a) for a in finished)
    if pending or path.exists():
        _rewrite(path, questions, existing)
    report.seconds = time.monotonic() - start
    return report


def _answer_group(group: Sequence[Question], generate: Generate, model_id: str, num_choices: int,
                  temperatures: Mapping[str, float], system: str | None, report: AnswerReport) -> list[Answer]:
    """All turns of all choices of a group of questions; the finished answers."""
    turns: dict[tuple[str, int], list[str]] = {(str(q.question_id), c): [] for q in group for c in range(num_choices)}
    cut: set[str] = set()
    failed: dict[str, str] = {}
    for turn in range(1, max(len(q.turns) for q in group) + 1):
        prompts = [
            TurnPrompt(q.question_id, turn, c, turn_messages(q, turns[(str(q.question_id), c)], system),
                       temperature_for(q.category, temperatures))
            for q in group if len(q.turns) >= turn and str(q.question_id) not in failed
            for c in range(num_choices)
        ]
        if not prompts:
            break
        results = generate(prompts)
        if len(results) != len(prompts):
            raise RuntimeError(f"the generator returned {len(results)} results for {len(prompts)} prompts")
        for p, g in zip(prompts, results):
            qid = str(p.question_id)
            if g.text is None:
                failed.setdefault(qid, f"turn {p.turn}, choice {p.choice}: {g.error or 'no text'}")
                continue
            turns[(qid, p.choice)].append(g.text)
            if g.truncated:
                cut.add(qid)
    report.failed.update(failed)
    finished = []
    for q in group:
        qid = str(q.question_id)
        if qid in failed:
            continue
        finished.append(make_answer(q.question_id, model_id, [turns[(qid, c)] for c in range(num_choices)]))
    report.answered += len(finished)
    report.truncated += len(cut - set(failed))
    return finished


# ---- transformers -----------------------------------------------------------------------------------------------


def load_answer_model(base_model: str, adapter_dir: str | Path | None = None, load_in_4bit: bool = False,
                      compute_dtype: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode: the base model with a trained QLoRA adapter attached (the tokenizer
    saved with the adapter), or the base model alone when `adapter_dir` is None."""
    from jinstruct.train.qlora import _cuda, load_base_model, load_for_inference, load_tokenizer, resolve_attn, resolve_dtype

    if adapter_dir is not None:
        return load_for_inference(base_model, Path(adapter_dir), load_in_4bit, compute_dtype)
    model = load_base_model(base_model, load_in_4bit, resolve_dtype(compute_dtype), resolve_attn("auto"),
                            device_map="auto" if _cuda() else None)
    model.eval()
    return model, load_tokenizer(base_model)


def _batch_seed(seed: int, prompts: Sequence[TurnPrompt]) -> int:
    digest = hashlib.sha256(f"{seed}\x01{sorted(p.key for p in prompts)}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _cut_at_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    hits = [text.find(s) for s in stops if s and s in text]
    return (text[: min(hits)], True) if hits else (text, False)


@contextlib.contextmanager
def _left_padding(tokenizer: Any) -> Iterator[None]:
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = side


class TransformersGenerator:
    """Generates with a local transformers model: batches of prompts of similar length (left padded), one
    sampling setting per batch; greedy at temperature 0, temperature sampling with `top_p` (no top-k) above.

    template: what the model was trained with ("chat", "alpaca_ja", "alpaca_ja_2309"). stop: strings that end an
    answer (default: none for chat, where the end-of-turn token stops it; the next `### 指示:` for the others).
    """

    def __init__(self, model: Any, tokenizer: Any, template: Template = "chat", max_new_tokens: int = 512,
                 batch_size: int = 8, seed: int = 0, top_p: float = 1.0, stop: Sequence[str] | None = None,
                 progress: bool = True, model_identity: Mapping[str, Any] | None = None, desc: str = ""):
        if tokenizer.pad_token is None:
            raise ValueError("the tokenizer has no pad token (load it with jinstruct.train.qlora.load_tokenizer)")
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.max_new_tokens, self.batch_size, self.seed, self.top_p = max_new_tokens, batch_size, seed, top_p
        self.stop = tuple(stop) if stop is not None else stops(template)
        self.progress, self.desc = progress, desc
        self.model_identity = dict(model_identity) if model_identity is not None else {
            "model": getattr(getattr(model, "config", None), "_name_or_path", type(model).__name__)}

    def identity(self) -> dict[str, Any]:
        """What decides the answers (recorded as each answer's settings_id): the model, template and sampling."""
        return {"engine": "transformers", **self.model_identity, "template": self.template,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed, "top_p": self.top_p, "stop": list(self.stop)}

    def __call__(self, prompts: Sequence[TurnPrompt]) -> list[Generated]:
        texts = [render(self.tokenizer, self.template, p.messages) for p in prompts]
        add_special = self.template != "chat"  # a chat template writes its own BOS
        lengths = [len(self.tokenizer(t, add_special_tokens=add_special)["input_ids"]) for t in texts]
        # Longest first (a batch too large for memory fails at once), one temperature per batch.
        order = sorted(range(len(prompts)), key=lambda i: (prompts[i].temperature, -lengths[i], i))
        batches: list[list[int]] = []
        for i in order:
            last = batches[-1] if batches else []
            if last and len(last) < self.batch_size and prompts[last[0]].temperature == prompts[i].temperature:
                last.append(i)
            else:
                batches.append([i])
        out: list[Generated | None] = [None] * len(prompts)
        turn = f"turn {prompts[0].turn}" if prompts else ""
        bar = progress_bar(total=len(prompts), desc=f"{self.desc} {turn}".strip(), unit="answer",
                           disable=not self.progress)
        for batch in batches:
            for i, g in zip(batch, self._generate([texts[i] for i in batch], [prompts[i] for i in batch], add_special)):
                out[i] = g
            bar.update(len(batch))
        bar.close()
        return [g for g in out if g is not None]

    def _generate(self, texts: list[str], prompts: list[TurnPrompt], add_special: bool) -> list[Generated]:
        import torch

        tok, model = self.tokenizer, self.model
        with _left_padding(tok):
            inputs = tok(texts, return_tensors="pt", padding=True, add_special_tokens=add_special)
        device = getattr(model, "device", None) or next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        temperature = prompts[0].temperature
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": tok.pad_token_id}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=self.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False)
        if self.stop:
            kwargs.update(stop_strings=list(self.stop), tokenizer=tok)
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(_batch_seed(self.seed, prompts))
            output = model.generate(**inputs, **kwargs)
        new = output[:, inputs["input_ids"].shape[1]:]
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        results = []
        for row in new.tolist():
            # generate pads finished rows; a row that never produced an end token ran to the limit
            ended = any(t in eos_ids for t in row)
            text, stopped = _cut_at_stops(tok.decode(row, skip_special_tokens=True), self.stop)
            truncated = not ended and not stopped and len(row) >= self.max_new_tokens
            results.append(Generated(text.strip(), truncated=truncated))
        return results


def answer_with_transformers(questions: Sequence[Question], model: Any, tokenizer: Any, model_id: str,
                             out_path: str | Path, template: Template = "chat", max_new_tokens: int = 512,
                             batch_size: int = 8, seed: int = 0, num_choices: int = 1,
                             temperatures: Mapping[str, float] = TEMPERATURES, top_p: float = 1.0,
                             system: str | None = None, stop: Sequence[str] | None = None,
                             group_size: int = 32, progress: bool = True,
                             model_identity: Mapping[str, Any] | None = None,
                             superseded: str | Path | None = None) -> AnswerReport:
    """Answer the questions with a local model (see `load_answer_model`) into `out_path` (FastChat format),
    resuming what is there under the same settings. `model_identity` names the model for that check (default: its
    `name_or_path`; pass the base model and a digest of the adapter so that a retrained adapter answers again)."""
    generate = TransformersGenerator(model, tokenizer, template, max_new_tokens, batch_size, seed, top_p, stop,
                                     progress, model_identity, desc=model_id)
    return answer_questions(questions, generate, model_id, out_path, num_choices, temperatures, system, group_size,
                            superseded)


# ---- an OpenAI-compatible endpoint ------------------------------------------------------------------------------


def endpoint_identity(model: str | None, max_tokens: int, seed: int | None, top_p: float | None,
                      extra_body: Any) -> dict[str, Any]:
    """What decides an endpoint's answers (recorded as each answer's settings_id): the model and sampling."""
    return {"engine": "endpoint", "model": model, "max_tokens": max_tokens, "seed": seed, "top_p": top_p,
            "extra_body": extra_body}


@dataclass(frozen=True)
class _AlreadyAnswered:
    """A generator for answers that are all there: it carries their identity and is never asked to generate."""

    settings: dict[str, Any]

    def identity(self) -> dict[str, Any]:
        return self.settings

    def __call__(self, prompts: Sequence[TurnPrompt]) -> list[Generated]:
        raise RuntimeError(f"{len(prompts)} prompt(s) left to answer: the answers are not all there")


class ClientGenerator:
    """Generates through the LLM client: one request per prompt, the choice as its sample index (so the
    samples are distinct and each is cached), `seed` sent to endpoints that take one."""

    def __init__(self, client: LLMClient, max_tokens: int = 1024, seed: int | None = 0, top_p: float | None = None,
                 model: str | None = None, desc: str = "answers"):
        self.client, self.max_tokens, self.seed, self.top_p = client, max_tokens, seed, top_p
        self.model, self.desc = model, desc

    def identity(self) -> dict[str, Any]:
        """What decides the answers (recorded as each answer's settings_id): the model and sampling."""
        settings = getattr(self.client, "settings", None)
        return endpoint_identity(self.model or getattr(self.client, "model", None), self.max_tokens, self.seed,
                                 self.top_p, getattr(settings, "extra_body", None))

    def __call__(self, prompts: Sequence[TurnPrompt]) -> list[Generated]:
        from jinstruct.llm import ChatRequest

        requests = [ChatRequest(messages=p.messages, model=self.model, temperature=p.temperature, top_p=self.top_p,
                                max_tokens=self.max_tokens, seed=self.seed, sample_index=p.choice,
                                tag=f"answer q{p.question_id} t{p.turn} c{p.choice}")
                    for p in prompts]
        turn = prompts[0].turn if prompts else 1
        results = self.client.chat_many(requests, desc=f"{self.desc} (turn {turn})")
        return [Generated(None, r.error) if r.error is not None else Generated(r.text.strip(), truncated=r.truncated)
                for r in results]


def answer_with_client(questions: Sequence[Question], client: LLMClient, model_id: str, out_path: str | Path,
                       max_tokens: int = 1024, seed: int | None = 0, num_choices: int = 1,
                       temperatures: Mapping[str, float] = TEMPERATURES, top_p: float | None = None,
                       system: str | None = None, model: str | None = None, group_size: int = 256,
                       superseded: str | Path | None = None) -> AnswerReport:
    """Answer the questions through an OpenAI-compatible endpoint into `out_path` (FastChat format), resuming
    what is there under the same settings. `model` overrides the endpoint's default model name; `model_id` names
    the answers."""
    generate = ClientGenerator(client, max_tokens, seed, top_p, model, desc=model_id)
    return answer_questions(questions, generate, model_id, out_path, num_choices, temperatures, system, group_size,
                            superseded)


# ---- vLLM serving a local model ----------------------------------------------------------------------------------


def adapter_fingerprint(adapter_dir: str | Path) -> str:
    """The first 12 hex digits of the sha256 of an adapter's weights and config."""
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        path = Path(adapter_dir) / name
        if path.exists():
            h.update(name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def answer_with_vllm(questions: Sequence[Question], base_model: str, model_id: str, out_path: str | Path, *,
                     adapter_dir: str | Path | None, lora_r: int = 8, settings: VLLMSettings,
                     cache_path: str | Path, run_dir: str | Path | None = None, stage: str = "05_answering",
                     template: Template = "chat", max_tokens: int = 1024, seed: int | None = 0,
                     num_choices: int = 1, temperatures: Mapping[str, float] = TEMPERATURES,
                     system: str | None = None, log_path: str | Path | None = None) -> AnswerReport:
    """Serve `base_model` (with `adapter_dir` as a LoRA module) with vLLM, answer the questions through it into
    `out_path` (FastChat format, resuming what is there), and stop the server."""
    from jinstruct.llm import open_client
    from jinstruct.llm.vllm_server import VLLMServer, lora_rank

    if template != "chat":
        raise ValueError(f"model {model_id!r}: engine vllm answers in the tokenizer's chat template; a model trained "
                         f"with template {template!r} needs engine transformers")
    base_name = Path(base_model).name or base_model
    served = f"{model_id}@{adapter_fingerprint(adapter_dir)}" if adapter_dir is not None else base_name
    done = _AlreadyAnswered(endpoint_identity(served, max_tokens, seed, None, EndpointSettings.model_fields[
        "extra_body"].get_default(call_default_factory=True)))
    ids = settings_ids(questions, done.identity(), num_choices, temperatures, system)
    existing = read_answer_file(out_path, model_id)
    if not missing_answers(questions, existing.values()) and all(
            getattr(existing.get(k), "settings_id", None) in (None, v) for k, v in ids.items()):
        return answer_questions(questions, done, model_id, out_path, num_choices, temperatures, system)  # no server
    loras = {served: str(adapter_dir)} if adapter_dir is not None else None
    server = VLLMServer(base_model, base_name, loras=loras, max_lora_rank=lora_rank(lora_r), dtype=settings.dtype,
                        max_model_len=settings.max_model_len, kv_cache_gib=settings.kv_cache_gib,
                        version=settings.version, extra_args=settings.extra_args, log_path=log_path,
                        start_timeout_s=settings.start_timeout_s)
    with server:
        endpoint = server.endpoint(served, concurrency=settings.concurrency)
        with open_client(endpoint, run_dir, stage, cache_path, progress=False) as client:
            return answer_with_client(questions, client, model_id, out_path, max_tokens=max_tokens, seed=seed,
                                      num_choices=num_choices, temperatures=temperatures, system=system)
