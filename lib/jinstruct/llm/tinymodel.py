"""Tiny Japanese chat models built offline and deterministically, for the tiny config, the tests and the demo.

`build_tiny_model()` trains a byte-level BPE tokenizer on the project's own Japanese text (the hand-written
corpus under data/corpus plus the strings of any .jsonl under data/seeds and data/bench), builds a small Llama
from a config with a fixed seed, pre-trains it on CPU for a minute or so on the corpus (and JSON renderings of
it) in the chat template, and saves both as an ordinary Hugging Face model directory. The directory name
carries a hash of every input, so the model is built once per distinct input and a changed seed file gives
a new model rather than a stale one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jinstruct.io import DataError, iter_jsonl, write_json
from jinstruct.paths import cache_dir, data_dir, resolve_path

try:  # POSIX advisory lock; the atomic rename alone already keeps concurrent builders safe
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

BUILDER_VERSION = 1  # part of the cache key: bump it when a change here changes what gets built


def corpus_path() -> Path:
    """The project's own Japanese text the tiny tokenizer and model learn from."""
    return data_dir() / "corpus" / "ja_tiny_corpus.txt"


def extra_text_dirs() -> tuple[Path, ...]:
    """Folders whose JSONL texts (seed tasks, benchmark questions) are added to the corpus."""
    return data_dir() / "seeds", data_dir() / "bench"

PAD, END, SYSTEM, USER, ASSISTANT = "<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [PAD, END, SYSTEM, USER, ASSISTANT]

# Each message is "<|role|>\n" + content + "<|end|>\n". The assistant's content and its <|end|> sit inside
# {% generation %} so that transformers' return_assistant_tokens_mask (TRL's assistant_only_loss) trains the
# model both to answer and to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\\n' }}{% generation %}{{ message['content'] }}{{ '<|end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- elif message['role'] == 'system' or message['role'] == 'user' -%}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{%- else -%}"
    "{{ raise_exception('unsupported role: ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)

_ROLES = {"S": "system", "U": "user", "A": "assistant"}
_VARIANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class TinyModelSpec:
    """Everything that decides the model besides the text; part of the cache key."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32  # vLLM's CPU backend needs head_dim >= 32
    max_position_embeddings: int = 4096
    train_steps: int = 400
    batch_size: int = 8
    block_size: int = 128
    learning_rate: float = 3e-3


SPEC = TinyModelSpec()


def parse_corpus(path: Path | None = None) -> list[list[dict[str, str]]]:
    """Read the corpus file into conversations (lists of OpenAI-style messages).

    Blank lines separate conversations; each line starts with "S: ", "U: " or "A: "; consecutive lines of one
    role are one message joined by newlines; lines starting with "#" are comments.
    """
    path = path if path is not None else corpus_path()
    conversations: list[list[dict[str, str]]] = []
    current: list[dict[str, str]] = []
    start = 0

    def close() -> None:
        if not current:
            return
        roles = [m["role"] for m in current]
        if "user" not in roles or roles[-1] != "assistant":
            raise DataError(path, start, None, "a conversation needs a user turn and must end with an assistant turn")
        if "system" in roles[1:]:
            raise DataError(path, start, None, "a system message may only come first")
        conversations.append(list(current))
        current.clear()

    for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.rstrip()
        if line.startswith("#"):
            continue
        if not line:
            close()
            continue
        tag, sep, text = line.partition(": ")
        if not sep or tag not in _ROLES or not text.strip():
            raise DataError(path, line_no, None, f"expected 'S: ', 'U: ' or 'A: ' followed by text, got {line[:30]!r}")
        if not current:
            start = line_no
        role = _ROLES[tag]
        if current and current[-1]["role"] == role:
            current[-1]["content"] += "\n" + text
        else:
            current.append({"role": role, "content": text})
    close()
    if not conversations:
        raise DataError(path, None, None, "no conversations found")
    return conversations


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        if obj.strip():
            yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


_KANJI_COUNTS = {1: "一", 2: "二", 3: "三"}
_SCORE_REASONS = {
    9: "質問に正確に答えていて、説明もわかりやすいです。",
    8: "丁寧で役に立つ回答です。",
    6: "内容は正しいですが、具体例が足りません。",
    4: "質問の一部にしか答えていません。",
    2: "内容に誤りがあり、質問に答えていません。",
}
_WINNER_REASONS = {
    "A": "回答Aのほうが具体的で、質問にきちんと答えています。",
    "B": "回答Bのほうが正確で、説明もわかりやすいです。",
    "tie": "どちらの回答も同じくらい適切です。",
}


def json_conversations(conversations: list[list[dict[str, str]]], seed: int) -> list[list[dict[str, str]]]:
    """Conversations whose answers are JSON, made from the corpus's own question/answer pairs.

    They teach the tiny model the shapes the pipeline asks for under structured outputs (lists of
    instruction records, a score with a reason, a pairwise verdict), so that constrained replies close
    their strings and arrays instead of running to the token limit.
    """
    import random

    rng = random.Random(seed)
    pairs = [(c[0]["content"], c[1]["content"]) for c in conversations if [m["role"] for m in c] == ["user", "assistant"]]
    out: list[list[dict[str, str]]] = []

    def dump(obj: Any) -> str:
        return json.dumps(obj, ensure_ascii=False)

    for i in range(0, len(pairs) - 2, 3):
        k = rng.choice([1, 2, 3])
        records = []
        for user, answer in pairs[i : i + k]:
            instruction, _, inp = user.partition("\n")
            records.append({"instruction": instruction, "input": inp, "output": answer})
        ask = rng.choice(["新しい指示を{}つ考えて、JSONで出力してください。", "指示と入力と出力の組を{}つ、JSONの配列で書いてください。"])
        out.append([{"role": "user", "content": ask.format(_KANJI_COUNTS[k])}, {"role": "assistant", "content": dump(records)}])
        user, answer = pairs[i + 1]
        score = rng.choice(sorted(_SCORE_REASONS))
        out.append([
            {"role": "user", "content": f"次の回答を一から十で採点し、JSONで出力してください。\n質問:{user}\n回答:{answer}"},
            {"role": "assistant", "content": dump({"score": score, "reason": _SCORE_REASONS[score]})},
        ])
        winner = rng.choice(sorted(_WINNER_REASONS))
        out.append([
            {"role": "user", "content": f"質問:{pairs[i + 2][0]}\n二つの回答のどちらがよいか、JSONで答えてください。"},
            {"role": "assistant", "content": dump({"winner": winner, "reason": _WINNER_REASONS[winner]})},
        ])
    return out


def _extra_files() -> list[Path]:
    return sorted(p for d in extra_text_dirs() if d.is_dir() for p in d.rglob("*.jsonl") if p.is_file())


def _read_inputs(corpus: Path, extra: list[Path]) -> tuple[list[str], list[list[dict[str, str]]]]:
    """(texts for the tokenizer, conversations for pre-training), in a fixed order.

    The seed tasks and benchmark files only shape the tokenizer; the model is pre-trained on the corpus
    alone (and its JSON renderings), so it stays small, quick to train and the same whatever data arrive.
    """
    conversations = parse_corpus(corpus)
    texts = [m["content"] for conv in conversations for m in conv]
    for path in extra:
        for _, rec in iter_jsonl(path):
            texts.extend(_strings(rec))
    return texts, conversations


def _cache_key(variant: str, corpus: Path, extra: list[Path]) -> str:
    import tokenizers
    import torch
    import transformers

    h = hashlib.sha256()
    meta = {
        "builder": BUILDER_VERSION,
        "variant": variant,
        "spec": asdict(SPEC),
        "template": CHAT_TEMPLATE,
        "versions": [torch.__version__, transformers.__version__, tokenizers.__version__],
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    for path in [corpus, *extra]:
        rel = path.relative_to(data_dir()) if path.is_relative_to(data_dir()) else Path(path.name)
        h.update(b"\0" + str(rel).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def _variant_seed(variant: str) -> int:
    return 0 if variant == "base" else int(hashlib.sha256(variant.encode()).hexdigest()[:8], 16)


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (transformers fast tokenizer) with the chat special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=END,
        pad_token=PAD,
        additional_special_tokens=[SYSTEM, USER, ASSISTANT],
        chat_template=CHAT_TEMPLATE,
        model_max_length=SPEC.max_position_embeddings,
        clean_up_tokenization_spaces=False,
    )


@contextlib.contextmanager
def _deterministic_torch() -> Iterator[None]:
    """One thread and deterministic kernels while building, so every machine gets the same bits."""
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def _pretrain(model: Any, stream: Any, seed: int) -> list[float]:
    """nanoGPT-style: random windows of the token stream, AdamW, cosine decay; returns the loss curve."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=SPEC.learning_rate, weight_decay=0.01, betas=(0.9, 0.95))
    block = min(SPEC.block_size, len(stream) - 1)
    warmup = max(1, SPEC.train_steps // 20)
    losses: list[float] = []
    model.train()
    for step in range(SPEC.train_steps):
        lr_scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / SPEC.train_steps))
        for group in opt.param_groups:
            group["lr"] = SPEC.learning_rate * max(lr_scale, 0.05)
        starts = torch.randint(0, len(stream) - block, (SPEC.batch_size,), generator=gen)
        x = torch.stack([stream[s : s + block] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _build(dest: Path, name: str, variant: str, texts: list[str], conversations: list[list[dict[str, str]]]) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    seed = _variant_seed(variant)
    # The JSON renderings are the same for every variant (fixed seed), so variants share one tokenizer.
    json_convs = json_conversations(conversations, seed=0)
    conversations = conversations + json_convs
    tokenizer = train_tokenizer(texts + [c[-1]["content"] for c in json_convs], SPEC.vocab_size)
    end_id, pad_id = tokenizer.convert_tokens_to_ids(END), tokenizer.convert_tokens_to_ids(PAD)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=SPEC.hidden_size,
        intermediate_size=SPEC.intermediate_size,
        num_hidden_layers=SPEC.num_hidden_layers,
        num_attention_heads=SPEC.num_attention_heads,
        num_key_value_heads=SPEC.num_key_value_heads,
        head_dim=SPEC.head_dim,
        max_position_embeddings=SPEC.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=end_id,
        pad_token_id=pad_id,
    )
    with _deterministic_torch():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        # The corpus and its JSON renderings, shuffled by the variant's seed, joined into one token stream.
        order = torch.randperm(len(conversations), generator=torch.Generator().manual_seed(seed)).tolist()
        ids: list[int] = []
        for i in order:
            ids.extend(tokenizer.apply_chat_template(conversations[i], tokenize=True, return_dict=False))
        losses = _pretrain(model, torch.tensor(ids, dtype=torch.long), seed)
    model.generation_config = GenerationConfig(eos_token_id=end_id, pad_token_id=pad_id)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    info = {
        "name": name,
        "variant": variant,
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens": len(ids),
        "conversations": len(conversations),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "spec": asdict(SPEC),
    }
    write_json(dest / "build_info.json", info)


def build_tiny_model(out_dir: Path | None = None, variant: str = "base") -> Path:
    """Build (once) the tiny Japanese chat model and return its directory.

    `out_dir` is the folder that holds built models (default `cache_dir()/models`); the model itself lands in
    `<out_dir>/tiny-ja-<variant>-<hash of every input>`. An existing directory of that name is returned as is.
    The build happens in a temporary directory renamed into place, under a file lock, so concurrent callers
    build it once and nobody ever sees half a model. Different `variant` names give different weights (other
    seed) from the same text; "base" is the default model.
    """
    if not _VARIANT_RE.match(variant):
        raise ValueError(f"variant must match {_VARIANT_RE.pattern}, got {variant!r}")
    root = Path(out_dir) if out_dir is not None else cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    extra = _extra_files()
    key = _cache_key(variant, corpus_path(), extra)
    final = root / f"tiny-ja-{variant}-{key}"
    if final.is_dir():
        return final
    with open(root / f".{final.name}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():  # another process finished it while we waited
            return final
        texts, conversations = _read_inputs(corpus_path(), extra)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
        try:
            _build(tmp, final.name, variant, texts, conversations)
            for f in tmp.iterdir():  # temp files and mkdtemp are private; a shared cache should be readable
                f.chmod(0o644)
            tmp.chmod(0o755)
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


TINY_ALIASES = {"tiny": "base", "tiny-base": "base"}


def resolve_model(name: str | os.PathLike[str]) -> str:
    """A model named in a config or on the command line, as `from_pretrained` takes it: `tiny` (also `tiny-base`,
    `tiny:<variant>`) is the project's own tiny model, built offline once; a path that exists relative to the
    project root is made absolute; anything else is a Hugging Face name, returned as it is."""
    name = str(name)
    if name in TINY_ALIASES or name.startswith("tiny:"):
        variant = TINY_ALIASES.get(name) or name.partition(":")[2] or "base"
        return str(build_tiny_model(variant=variant))
    local = Path(name).expanduser() if Path(name).expanduser().is_absolute() else resolve_path(name)
    return str(local) if local.exists() else name
