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
# # 08 Task evaluation: few-shot accuracy and perplexity, base against tuned (lm-evaluation-harness)
#
# arXiv 2309.03412 measures what instruction tuning does to a base model on standard Japanese tasks: few-shot (1-3
# shot) JNLI and MARC-ja accuracy, by the log-likelihood of each label word, and perplexity on the answers of a held-out
# QA set. This notebook does the same with lm-evaluation-harness (`lm-eval`), the field's standard: each model of
# `tasks.models` (by default every model tuned in 04 and its base model; a tuned model is lm-eval's HF model with its
# LoRA adapter, `peft=`) on the accuracy tasks of `tasks.tasks` at each few-shot count of `tasks.shots`, and once on the
# perplexity tasks of `tasks.perplexity`. Few-shot examples come from each task's own few-shot split, never from the
# rows it scores.
#
# Tasks are lm-eval task YAMLs: the project's own small sets (`jinstruct_*`, offline), JNLI and MARC-ja at a pinned
# revision (`jglue_*`), or any task lm-eval ships (e.g. `ja_leaderboard_jcommonsenseqa`), one config line away.
# Byte perplexity and bits per byte come from lm-eval; token perplexity is computed from the same log-likelihoods.
# Each results file lists the `lm_eval` command line that gives the same numbers (`tasks/lm_eval_commands.sh`).
#
# **Reads**: `models/<name>/adapter/` (from 04), the task data (`data/tasks/`, `data/datasets/heldout_qa_ja.jsonl`).
# **Writes**: `tasks/summary.csv` (task, model, metric, value, stderr, n, num_fewshot), `tasks/<model_id>/results_*.json`
# (lm-eval's raw results) and `samples_*.jsonl`, `tasks/yaml/`, `tasks/lm_eval_commands.sh`, `figures/08_tasks.png`.

# %% tags=["parameters"]
config_path = None  # None: configs/tiny.yaml
run_dir = None  # None: runs/<config name>
overrides = {}  # dotted keys, e.g. {"tasks.shots": [0, 1, 2, 3]} or {"tasks.limit": 10}

# %%
from jinstruct import tasks
from jinstruct.run import Stage

st = Stage.open("08_task_eval", config_path, run_dir, overrides)
cfg = st.cfg.tasks
print(f"tasks {cfg.tasks} at {cfg.shots} shots; perplexity {cfg.perplexity}; limit {cfg.limit}")
run = tasks.evaluate_run(st)
for m in run.models:
    print(f"{m.model_id}: {m.base}" + (f" + adapter {m.adapter}" if m.adapter else ""))
print(f"reused: {run.reused or 'none'}")

# %% [markdown]
# ## Base against tuned (95% intervals: value +- 1.96 x lm-eval's standard error)

# %%
models = [m.model_id for m in run.models]
tasks.comparison_table(run.summary, models)

# %%
st.save_figure(tasks.plot_tasks(run.summary, models), "08_tasks")

# %% [markdown]
# ## The `lm_eval` command lines that give the same numbers

# %%
print("\n".join(run.commands))

# %% [markdown]
# ## The summary file other notebooks read

# %%
print(st.layout.tasks_summary)
run.summary
