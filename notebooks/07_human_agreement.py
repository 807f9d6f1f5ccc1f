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
# # 07 Human agreement: does the LLM judge agree with people?
#
# The paper's evaluation rests on the judge agreeing with human preference. This notebook measures it the way the
# field does (FastChat's `compute_agreement.py` on MT-Bench: the judge's vote on a game is its verdict over both answer
# orders, any "tie" is a tie, agreement with and without ties) and adds what the published numbers lack: Cohen's kappa
# between judge and people (agreement beyond chance), Krippendorff's alpha over all annotators and the judge, 95%
# bootstrap intervals over questions, agreement per category, and the confusion matrix.
#
# People label a stratified sample of the judged games (by category and by the judge's verdict), each shown with the
# two answers in a random left/right order and no verdict: in Label Studio, in a CSV sheet, or in the labeler below.
# Their labels come back through `agreement.labels` in the config (Label Studio JSON exports, filled sheets, FastChat
# human judgment files) and the labeler's file. **The tiny run uses demonstration labels made up by a rule, not by
# people** (`data/agreement/demo_labels_README.md`): its numbers only show that the machinery works.
#
# **Reads**: `judgments/<judge>_pair.jsonl` (from 06), `answers/*.jsonl` (from 05), the benchmark questions, label files.
# **Writes**: `agreement/items.jsonl`, `label_studio_tasks.json`, `label_studio_config.xml`, `annotation_sheet.csv`,
# `human_judgments.json` (FastChat format), `summary.json`, tables (CSV), `figures/07_confusion.png`.

# %% tags=["parameters"]
config_path = None  # None: configs/tiny.yaml
run_dir = None  # None: runs/<config name>
overrides = {}  # dotted keys, e.g. {"agreement.sample_size": 80}

# %%
from jinstruct import agreement
from jinstruct.run import Stage

st = Stage.open("07_human_agreement", config_path, run_dir, overrides)
section = st.cfg.agreement
judge_name = section.judge or st.cfg.judge.name
questions, _ = agreement.load_benchmark(st.cfg.answer.benchmark, st.cfg.answer.per_category)
items = agreement.prepare_items(section, st.layout, questions, judge_name, seed=st.cfg.seed)
exports = agreement.export_items(items, st.layout)
print(f"{len(items)} games to label; for Label Studio: {exports['label_studio_tasks'].name} + "
      f"{exports['label_studio_config'].name}; for a spreadsheet: {exports['sheet'].name}")

# %% [markdown]
# ## Label here (small sets)
#
# Type your name and run the cell: the labeler shows one game at a time and saves after every label to
# `agreement/notebook_labels.json`; run it again later to resume. Keys: `1` left, `2` tie, `3` right, `s` skip
# (click into the small input box first).

# %%
annotator = ""  # your name
if annotator:
    display(agreement.Labeler(items, annotator, st.layout.notebook_labels).widget)

# %% [markdown]
# ## Agreement

# %%
result = agreement.run_agreement(section, st.layout, questions, judge_name, seed=st.cfg.seed)
print(f"judge {result.judge}; {len(result.summary['annotators'])} annotators, {result.summary['n_human_votes']} human "
      f"votes on {result.summary['n_games']} games; from {', '.join(result.sources) or 'no label files'}")
result.tables["agreement"]

# %%
result.tables["per_category"]

# %%
fig = agreement.confusion_figure(result.tables["confusion"], result.model_pair())
st.save_figure(fig, "07_confusion")
