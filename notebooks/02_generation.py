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
# # 02 Generation: Japanese self-instruct, or the machine-translated baseline
#
# `recipe: self_instruct` grows the post-edited Japanese seeds into instructions the way the Alpaca bootstrap does:
# each request shows 3 demonstrations sampled from the seeds, numbered 1..3, and asks the model to continue the list to
# 20 diverse Japanese tasks (temperature 1.0). Each reply is parsed into instruction / input / output, and a candidate
# joins the pool only if its highest ROUGE-L against the pool and the seeds is at most 0.7, until exactly `target`
# instructions are kept. A killed run resumes from its output and the LLM cache without paying twice.
#
# `recipe: translate` builds the baseline the paper compares against: English Alpaca-format data machine-translated
# into Japanese through the same client.
#
# `recipe: human_instructions` (arXiv 2503.23714) takes human-written instructions (LMSYS-Chat-1M's first user turns,
# or the shipped 120), filters them (empty, duplicates, templates, other languages, too long; `NAME_1` placeholders
# flagged), translates them into Japanese, samples n responses each from an open-weight model, has a judge grade every
# response 0-10, and keeps the best.
#
# `from_run: <run>` (set by a sweep for its smaller data sizes) takes the first N records of that run's generated data
# instead, calling no LLM.
#
# **Reads**: `seeds/ja_seed_tasks.jsonl` (from 01), or English Alpaca data (`generate.translate.english`), or human
# instructions (`generate.human_instructions.source`).
# **Writes**: `data/generated.jsonl` (with `generated.progress.jsonl` and `generated.state.json` for resuming),
# `figures/02_kept_vs_generated.pdf` and `.png`; human_instructions: `data/human_instructions/*.jsonl` (one file per
# sub-stage), `data/generation_card.md`, `figures/02_scores.pdf` and `.png`.

# %% tags=["parameters"]
config_path = None  # None: configs/tiny.yaml
run_dir = None  # None: runs/<config name>
overrides = {}  # dotted keys, e.g. {"generate.self_instruct.target": 200} or {"generate.recipe": "translate"}

# %%
from jinstruct import generate
from jinstruct.run import Stage

st = Stage.open("02_generation", config_path, run_dir, overrides)
cfg = st.cfg.generate
print(f"recipe {cfg.recipe}: {generate.describe(cfg)} (recipes: {', '.join(generate.RECIPES)})")
for what, endpoint, estimate in generate.estimate_parts(cfg, st):
    print(f"{what} ({endpoint}): {estimate}")

# %% [markdown]
# ## A worked example: one request, taken apart
#
# The run's first request, sent on its own (the run then finds its answer in the LLM cache). Look at the prompt: the
# three demonstrations are numbered 1 to 3 and the model is asked to go on. Then compare the raw reply with the tasks
# parsed from it; the last table gives each task's highest ROUGE-L against the pool (the seeds, then the tasks before
# it in the same reply) and the nearest one. A task is kept only at 0.7 or below: that is what keeps the data diverse.

# %%
generate.worked_example(cfg, st)

# %% [markdown]
# ## The whole run
#
# The table counts what happened to the candidates: parsed, rejected (by the parser, and by ROUGE-L as `dedup`), and
# kept, until the target. `cached` requests were answered by the LLM cache (a resumed or repeated run pays nothing
# for them).

# %%
stats = generate.run_generation(cfg, st)
print(stats if cfg.from_run else st.client(cfg.endpoint).ledger)
stats.table()

# %% [markdown]
# ## A sample of what was generated

# %%
generate.generated_frame(st.layout.generated).head(10)

# %% [markdown]
# ## Kept versus generated over requests
#
# The dashed line counts every parsed candidate, the filled area the ones kept. The gap between them is what the
# ROUGE-L rule removed; the dotted keep rate (right axis) falls as the pool fills up and new tasks resemble old ones
# more often. Where nothing was removed the two coincide.

# %%
if cfg.recipe == "self_instruct" and not cfg.from_run:
    st.save_figure(generate.plot_kept_vs_generated(generate.request_series(st.layout.generated)), "02_kept_vs_generated")

# %% [markdown]
# ## Human instructions: the judge's scores of the sampled responses

# %%
if cfg.recipe == "human_instructions":
    report = generate.human_instructions_report(st.layout)
    st.save_figure(report.figure(), "02_scores")
    display(report.score_table())
