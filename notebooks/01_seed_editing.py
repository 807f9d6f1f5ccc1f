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
# `seeds/effort.json`, `figures/01_edit_distance.png`.

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
print(f"{len(english)} English seed tasks ({cfg.english})")
english[0]

# %% [markdown]
# ## Machine translation, the sheet, and the edits

# %%
client = st.client(cfg.endpoint)
result = seeds.edit_seeds(
    english, client, st.layout,
    shipped_seeds=cfg.japanese,
    edited_sheet=cfg.edited_sheet,
    max_tokens=cfg.max_tokens, max_field_chars=cfg.max_field_chars,
)
print(client.ledger)
result.translation.table()

# %%
print("sheet to post-edit:", result.sheet)
print("edits read from:   ", result.edited_sheet)
result.translation.tasks[0]

# %% [markdown]
# ## The human effort

# %%
seeds.save_effort(result.effort, st.layout.effort)
result.effort.summary

# %%
result.effort.per_task()

# %%
st.save_figure(seeds.plot_edit_distance(result.effort), "01_edit_distance")

# %% [markdown]
# ## The Japanese seeds the next stages use

# %%
print(f"Japanese seed tasks -> {result.seeds_path}")
seeds.kind_counts(result.seeds)
