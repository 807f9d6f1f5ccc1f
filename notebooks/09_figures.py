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
# # 09 Figures: the paper's tables and figures from one run, many runs or a sweep
#
# The paper's results are a grid: base models x data sources (self-instruct vs machine-translated Alpaca) x data
# sizes, each judged against a baseline. This notebook reads runs (or a sweep's runs) through the run-folder layout and
# draws every figure that applies: win rates against the baseline with 95% intervals, the data-size curve, the paired
# comparisons between cells, wins / ties / losses and scores per category, the judge's diagnostics, Bradley-Terry
# ratings when all pairs were judged, human agreement when 07 ran and task results when 08 ran. Each figure is saved
# as PDF and PNG with the table it is drawn from beside it as CSV.
#
# In the pipeline it draws this run's figures; set `sources` to run or sweep folders to draw theirs
# (`python -m jinstruct figures RUN_OR_SWEEP...` does the same from a terminal).
#
# **Reads**: `manifest.json`, `judgments/*_pair.jsonl` and `*_single.jsonl`, `answers/`, `data/`, training cards,
# `agreement/summary.json` and `tasks/summary.csv` of each run; a sweep's `sweep.json`.
# **Writes**: `figures/09_*.pdf|png|csv` and `figures/09_summary.csv|md` in this run; with `sources`, the same
# without the prefix in the sweep's (or run's) `figures/`, or in `out`.

# %% tags=["parameters"]
config_path = None  # None: configs/tiny.yaml
run_dir = None  # None: runs/<config name>
overrides = {}  # dotted keys, e.g. {"judge.bootstrap_rounds": 2000}
sources = None  # None: this run; else run or sweep folders, e.g. ["runs/tiny-paper-grid"]
out = None  # with sources: where to write (None: the sweep's or run's figures/, or figures/ for several)

# %%
from jinstruct import report
from jinstruct.run import Stage

st = Stage.open("09_figures", config_path, run_dir, overrides)
given = sources or [st.run_dir]
res = report.Report.open(given)
print(f"{len(res.runs)} run(s); grid axes: {res.axes}")

# %% [markdown]
# ## One row per run: win rate against the baseline, scores, data, cost

# %%
res.summary()

# %% [markdown]
# ## The comparisons the paper makes (paired bootstrap over questions)

# %%
res.significance()

# %% [markdown]
# ## Every figure that applies

# %%
drawn = report.draw(res)
if sources is None:
    report.save_report(res, st.dir(st.layout.figures), drawn=[], prefix="09_")  # the summary
    for d in drawn:
        print(f"{d.name}: {d.what}")
        report.save_table(d.table, st.path(st.layout.figure_table(f"09_{d.name}")))
        st.save_figure(d.figure, f"09_{d.name}")
else:
    folder = out or report.default_out(res.sources, given)
    report.save_report(res, folder, drawn)
    for d in drawn:
        print(f"{d.name}: {d.what}")
        display(d.figure)
    print(f"saved under {folder}")
