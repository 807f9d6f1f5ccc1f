"""Stage 02, generation: the recipes that make instruction records (self-instruct, machine-translated Alpaca, existing
datasets through task templates, human-written instructions with judged responses), chosen from a registry by the
config's `generate.recipe`."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "RECIPES": "recipes",
    "FromDatasets": "from_datasets",
    "load_templates": "from_datasets",
    "GenerateSection": "recipes",
    "describe": "recipes",
    "estimate_generation": "recipes",
    "estimate_parts": "recipes",
    "human_instructions_report": "human_instructions",
    "generated_frame": "self_instruct",
    "load_generated": "self_instruct",
    "plot_kept_vs_generated": "self_instruct",
    "request_series": "self_instruct",
    "run_generation": "recipes",
    "size": "recipes",
    "size_key": "recipes",
    "take_prefix": "reuse",
    "worked_example": "example",
})
__all__ = sorted(__dir__())
