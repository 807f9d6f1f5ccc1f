"""Stage 01, seed editing: English seed tasks, machine translation with protected spans, the post-editing sheet,
the edits taken back, and the effort they cost."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "EffortReport": "postedit",
    "SeedEditing": "editing",
    "edit_seeds": "editing",
    "effort_report": "postedit",
    "english_seeds": "english",
    "example_edit": "example",
    "export_sheet": "postedit",
    "export_sheet_safely": "postedit",
    "fetch_official_seeds": "english",
    "import_sheet": "postedit",
    "kind_counts": "jinstruct.formats.seed_task",
    "load_seed_tasks": "jinstruct.formats.seed_task",
    "plot_edit_distance": "postedit",
    "save_effort": "editing",
    "translate_seed_tasks": "translate",
    "translation_requests": "translate",
})
__all__ = sorted(__dir__())
