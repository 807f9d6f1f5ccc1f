# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   language_info:
#     codemirror_mode:
#       name: ipython
#       version: 3
#     file_extension: .py
#     mimetype: text/x-python
#     name: python
#     nbconvert_exporter: python
#     pygments_lexer: ipython3
#     version: 3.11.7
# ---

# %% [markdown]
# # 01 Seed editing: English seed tasks to post-edited Japanese seeds
#
# The method's only human step. The English self-instruct seed tasks are machine-translated through the LLM client
# (structure kept; code, numbers, URLs and placeholders protected), exported as a post-editing sheet (one row per field:
# English, machine translation, and an `edited` column to correct in a spreadsheet or in JupyterLab), and the edited
# sheet is validated and read back. The effort report measures the human work: tasks touched, characters changed,
# share of fields accepted as they were.
#
# On the tiny config the shipped Japanese seeds (`data/seeds/ja_seed_tasks.jsonl`) stand in for the human edits.
# To post-edit for real: run this notebook once, edit `seeds/postedit_sheet.csv` in the run folder, save it, and set
# `seeds.edited_sheet` to its path.
#
# **Reads**: English seeds (`seeds.english`: the shipped sample, or the official 175, checksum-pinned).
# **Writes** (in the run folder): `seeds/machine_translated.jsonl`, `seeds/translation_report.csv`,
# `seeds/postedit_sheet.csv`, `seeds/post_edited.jsonl`, `seeds/ja_seed_tasks.jsonl` (what generation uses),
# `seeds/effort.json`, `figures/01_edit_distance.pdf` and `.png`.

# %% tags=["parameters"]
config_path = None  # None: configs/tiny.yaml
run_dir = None  # None: runs/<config name>
overrides = {}  # dotted keys, e.g. {"seeds.english_limit": 5}

# %%
from jinstruct import seeds
from jinstruct.run import Stage

st = Stage.open("01_seed_editing", config_path, run_dir, overrides)
cfg = st.cfg.seeds
english = seeds.english_seeds(cfg.english, limit=cfg.english_limit)
client = st.client(cfg.endpoint)
print(f"{len(english)} English seed tasks ({cfg.english}), translated by endpoint {cfg.endpoint!r}")

# %% [markdown]
# ## A worked example: one seed, machine-translated, then post-edited
#
# One seed task goes through the whole step by itself. Read each row across: the English field, what the machine
# translation made of it, and the post-edit. `distance` counts the characters a person changed; 0 means the
# translation was accepted as it was. Look for what the protected spans kept (numbers, code, names) and for fields
# where the post-edit is a rewrite (normalized close to 1) rather than a correction.

# %%
seeds.example_edit(english[0], client, shipped_seeds=cfg.japanese, edited_sheet=cfg.edited_sheet,
                   max_tokens=cfg.max_tokens, max_field_chars=cfg.max_field_chars)

# %% [markdown]
# ## Every seed: machine translation, the sheet, and the edits
#
# The table lists each task's translation status: `ok`, or `flagged` with the problems found (a protected span lost
# or repeated, no Japanese where there should be some). Flagged tasks are the ones to post-edit first; their problems
# are in the sheet's `note` column.

# %%
result = seeds.edit_seeds(
    english, client, st.layout,
    shipped_seeds=cfg.japanese,
    edited_sheet=cfg.edited_sheet,
    max_tokens=cfg.max_tokens, max_field_chars=cfg.max_field_chars,
)
print(client.ledger)
print("sheet to post-edit:", result.sheet)
print("edits read from:   ", result.edited_sheet)
result.translation.table()

# %% [markdown]
# ## The human effort
#
# `share_fields_accepted` is the share of fields a person left as the machine wrote them; `char_edit_rate` is the
# characters changed per character of the final text (a character-level HTER). The lower both are, the less a
# language costs to bootstrap this way.

# %%
seeds.save_effort(result.effort, st.layout.effort)
result.effort.summary

# %%
result.effort.per_task()

# %% [markdown]
# The histogram shows every field's normalized edit distance: a tall bar at 0 means most of the translation was kept;
# mass near 1 means fields were rewritten.

# %%
st.save_figure(seeds.plot_edit_distance(result.effort), "01_edit_distance")

# %% [markdown]
# ## The Japanese seeds the next stages use

# %%
print(f"Japanese seed tasks -> {result.seeds_path}")
seeds.kind_counts(result.seeds)
