"""Translating user instructions into Japanese, through the LLM client or DeepL, with protected spans kept.

Protected spans (code, URLs, e-mail addresses, numbers, `{name}` / `<URL>` placeholders and LMSYS's `NAME_1`) are
masked exactly as seed tasks are (`jinstruct.seeds.translate.mask_spans`: each becomes a marker ⟦k⟧), the masked
text is translated, and the spans are put back and checked (`restore_spans`): each must come back exactly once.
The outcome of each instruction is "ok", "flagged" (translated, kept, with its problems listed: a lost or repeated
span, no Japanese in the translation) or "failed" (left out: the call failed, the reply was cut off or not the
asked JSON). An instruction already in Japanese is kept as it is (`translation: "none"`).

- LLM: one request per instruction, the prompt `prompts/translate_instruction_ja.txt`, then the masked text as
  JSON; the reply is constrained to `{"instruction": str}`. The client's cache makes a re-run free.
- DeepL: the official `deepl` package (`DEEPL_AUTH_KEY` from the environment), many texts per call, with XML tag
  handling: each marker goes as an empty element `<m i="k"/>`, which DeepL keeps in place and never translates.
  DeepL's answers are kept in the project's response cache under their own keys, so they too are paid once.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jinstruct import paths
from jinstruct.llm.request import ChatRequest, ChatResult
from jinstruct.seeds.translate import marker, mask_spans, restore_spans

DEFAULT_PROMPT = paths.prompt_path("translate_instruction_ja.txt")
DEEPL_KEY_ENV = "DEEPL_AUTH_KEY"
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
_WORDS = re.compile(r"[A-Za-z]{2,}")
_XML_MARKER = re.compile(r'<m\s+i="(\d+)"\s*/>')

Status = Literal["ok", "flagged", "failed"]


@dataclass(frozen=True)
class Translated:
    """One instruction's translation: the Japanese text (None when it failed), how and how it went."""

    text: str | None
    status: Status
    translation: Literal["llm", "deepl", "none"]
    problems: list[str] = field(default_factory=list)


def load_prompt(path: str | os.PathLike[str] = DEFAULT_PROMPT) -> str:
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"{path}: the translation prompt is empty")
    return text


def instruction_schema(max_chars: int | None = None) -> dict[str, Any]:
    string: dict[str, Any] = {"type": "string"} if max_chars is None else {"type": "string", "maxLength": max_chars}
    return {"type": "object", "properties": {"instruction": string}, "required": ["instruction"],
            "additionalProperties": False}


def translation_request(text: str, prompt: str, *, model: str | None = None, max_tokens: int | None = None,
                        max_chars: int | None = None, tag: str = "") -> ChatRequest:
    """The request that translates one instruction (`max_chars`: a cap on the reply for tiny local models only;
    `max_tokens=None`: 256 plus one per character of the masked JSON, about twice what a translation takes)."""
    masked, _ = mask_spans(text)
    payload = json.dumps({"instruction": masked}, ensure_ascii=False)
    return ChatRequest(messages=[{"role": "user", "content": f"{prompt}\n\n{payload}"}], model=model, temperature=0.0,
                       max_tokens=max_tokens or 256 + len(payload), json_schema=instruction_schema(max_chars), tag=tag)


def check_translation(source: str, translated_masked: str) -> tuple[str, list[str]]:
    """The translation with the spans put back, and what is wrong with it (nothing: [])."""
    _, spans = mask_spans(source)
    restored, seen = restore_spans(translated_masked, dict(enumerate(spans)))
    problems = []
    for k, span in enumerate(spans):
        if seen[k] == 0:
            problems.append(f"lost {span!r}")
        elif seen[k] > 1:
            problems.append(f"{span!r} appears {seen[k]} times")
    problems += [f"unknown marker {marker(k)} left in" for k in sorted(seen) if k >= len(spans)]
    words = _WORDS.findall(mask_spans(source)[0])
    if len(words) >= 3 and restored.strip() and not _JAPANESE.search(restored):
        problems.append("no Japanese in the translation (left untranslated?)")
    return restored, problems


def read_llm_translation(source: str, result: ChatResult) -> Translated:
    """The translation of `source` from the client's result."""
    if result.error is not None:
        return Translated(None, "failed", "llm", [f"request failed: {result.error}"])
    if "length" in result.finish_reasons:
        return Translated(None, "failed", "llm", ["reply cut off at max_tokens"])
    try:
        obj = result.parsed if result.parsed is not None else json.loads(result.text)
    except json.JSONDecodeError as e:
        return Translated(None, "failed", "llm", [f"reply is not JSON ({e.msg})"])
    text = obj.get("instruction") if isinstance(obj, dict) else None
    if not isinstance(text, str) or not text.strip():
        return Translated(None, "failed", "llm", ["the reply has no translated instruction"])
    restored, problems = check_translation(source, text)
    return Translated(restored.strip(), "flagged" if problems else "ok", "llm", problems)


# ----- DeepL --------------------------------------------------------------------------------------------------


def to_deepl_xml(text: str) -> str:
    """The masked text as DeepL's XML: escaped, each marker ⟦k⟧ an empty element <m i="k"/>."""
    masked, _ = mask_spans(text)
    escaped = html.escape(masked, quote=False)
    return re.sub(r"⟦(\d+)⟧", lambda m: f'<m i="{m.group(1)}"/>', escaped)


def from_deepl_xml(xml: str) -> str:
    """DeepL's XML reply back to masked text (markers as ⟦k⟧)."""
    return html.unescape(_XML_MARKER.sub(lambda m: marker(int(m.group(1))), xml))


def deepl_translator(server_url: str | None = None) -> Any:
    """A `deepl.Translator` with the key from DEEPL_AUTH_KEY (never a config value)."""
    key = os.environ.get(DEEPL_KEY_ENV)
    if not key:
        raise RuntimeError(f"translation through DeepL needs the environment variable {DEEPL_KEY_ENV} (the API key)")
    import deepl

    return deepl.Translator(key, server_url=server_url)


def deepl_key(xml: str, target: str, formality: str | None) -> str:
    canonical = json.dumps({"engine": "deepl", "text": xml, "target": target, "formality": formality},
                           ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def translate_with_deepl(texts: Sequence[str], translator: Any, cache: Any = None, *, target_lang: str = "JA",
                         formality: str | None = None) -> list[Translated]:
    """Translate `texts` in one DeepL call (cached answers are not sent again); `cache` is the project's
    `ResponseCache` (None: no cache)."""
    xmls = [to_deepl_xml(t) for t in texts]
    keys = [deepl_key(x, target_lang, formality) for x in xmls]
    answers: dict[int, str] = {}
    if cache is not None:
        for i, key in enumerate(keys):
            if (hit := cache.get(key)) is not None:
                answers[i] = hit["text"]
    todo = [i for i in range(len(texts)) if i not in answers]
    if todo:
        options: dict[str, Any] = {"target_lang": target_lang, "tag_handling": "xml", "ignore_tags": ["m"]}
        if formality is not None:
            options["formality"] = formality
        try:
            results = translator.translate_text([xmls[i] for i in todo], **options)
        except Exception as e:  # a failed call fails its texts; nothing is cached, a re-run sends them again
            why = f"DeepL failed: {type(e).__name__}: {e}"
            return [Translated(None, "failed", "deepl", [why]) if i in todo else _deepl_result(texts[i], answers[i])
                    for i in range(len(texts))]
        for i, r in zip(todo, results, strict=True):
            answers[i] = r.text
            if cache is not None:
                cache.put(keys[i], "deepl", json.dumps({"text": xmls[i], "target": target_lang}, ensure_ascii=False),
                          {"text": r.text})
    return [_deepl_result(t, answers[i]) for i, t in enumerate(texts)]


def _deepl_result(source: str, xml: str) -> Translated:
    restored, problems = check_translation(source, from_deepl_xml(xml))
    if not restored.strip():
        return Translated(None, "failed", "deepl", ["DeepL returned an empty translation"])
    return Translated(restored.strip(), "flagged" if problems else "ok", "deepl", problems)
