"""Stage 02 in one call: grow the Japanese seeds into instructions (self-instruct), or machine-translate English
Alpaca-format data (the "Japanese-Alpaca" baseline), into `data/generated.jsonl`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinstruct.alpaca_translate import english_alpaca, estimate_translation, translate_alpaca
from jinstruct.generate import SelfInstructRecipe, generate_self_instruct
from jinstruct.llm import Estimate
from jinstruct.seeds import load_seed_tasks


def estimate_generation(section: Any, client: Any, seeds_path: Path, seed: int = 0) -> Estimate:
    """What the stage would send and cost, calling nothing (cached answers are free)."""
    if section.recipe == "self_instruct":
        return self_instruct_recipe(section, seeds_path, seed).estimate(client, section.target)
    records = english_alpaca(section.english, limit=section.english_limit)
    return estimate_translation(records, client, max_tokens=section.max_tokens,
                                max_field_chars=section.max_field_chars)


def self_instruct_recipe(section: Any, seeds_path: Path, seed: int = 0) -> SelfInstructRecipe:
    return SelfInstructRecipe.from_seeds(
        load_seed_tasks(seeds_path), seed=seed, num_demos=section.num_demos,
        num_generated_demos=section.num_generated_demos, temperature=section.temperature, top_p=section.top_p,
        max_tokens=section.max_tokens, structured=section.structured, max_tasks=section.max_tasks,
        max_field_chars=section.max_field_chars)


def run_generation(section: Any, client: Any, seeds_path: Path, out_path: Path, seed: int = 0) -> Any:
    """Run the configured recipe (a `settings.GenerateSection`), resuming `out_path`; returns its stats."""
    if section.recipe == "self_instruct":
        return generate_self_instruct(self_instruct_recipe(section, seeds_path, seed), client, out_path,
                                      section.target, threshold=section.threshold, tokens=section.tokens)
    records = english_alpaca(section.english, limit=section.english_limit)
    return translate_alpaca(records, client, out_path, max_tokens=section.max_tokens,
                            max_field_chars=section.max_field_chars)
