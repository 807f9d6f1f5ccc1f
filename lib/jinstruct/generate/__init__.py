"""Stage 02, generation: the recipes that make instruction records (self-instruct, machine-translated Alpaca, ...),
chosen from a registry by the config's `generate.recipe`."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "RECIPES": "recipes",
    "GenerateSection": "recipes",
    "describe": "recipes",
    "estimate_generation": "recipes",
    "generated_frame": "self_instruct",
    "load_generated": "self_instruct",
    "plot_kept_vs_generated": "self_instruct",
    "request_series": "self_instruct",
    "run_generation": "recipes",
    "worked_example": "example",
})
__all__ = sorted(__dir__())
