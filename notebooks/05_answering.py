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
# # 05 Answering: every model answers the Japanese benchmark
#
# The tuned models (base + QLoRA adapter through transformers, batched), base models, and models behind an
# OpenAI-compatible endpoint (a baseline such as a davinci-003-class model, or vLLM serving a tuned model) answer the
# benchmark questions. Sampling follows FastChat's per-category temperatures (greedy for coding and math).
# Answers are written in FastChat's answer format, so FastChat's tools read them; a killed run resumes where it stopped.
#
# **Reads**: the benchmark (`answer.benchmark`, default `data/bench/ja_qa80`: 80 questions in 8 categories), the
# adapters under `models/` (from 04).
# **Writes**: `answers/<model_id>.jsonl`.

# %% tags=["parameters"]
config_path = None  # None: configs/tiny.yaml
run_dir = None  # None: runs/<config name>
overrides = {}  # dotted keys, e.g. {"answer.per_category": 2}

# %%
from jinstruct import answer
from jinstruct.run import Stage

st = Stage.open("05_answering", config_path, run_dir, overrides)
questions, references = answer.load_benchmark(st.cfg.answer.benchmark, st.cfg.answer.per_category)
print(f"{len(questions)} questions, {len(references)} reference answers")
answer.category_counts(questions)

# %% [markdown]
# ## A worked example: one question, every model
#
# Each model answers the first question alone (the answer is recorded; the full run below answers the others).
# The `prompt` column is exactly what each model is given: a tuned model's chat template with its special tokens, a
# base model's template, or the messages sent to an endpoint. A tuned model that answers in the chat format while
# the base model rambles on is what tuning is for.

# %%
answer.example_answers(questions[0], st)

# %% [markdown]
# ## Every question
#
# One row per model: questions, how many were answered before (resumed) and now, answers cut at the token limit,
# failures and time.

# %%
reports = {spec.model_id: answer.answer_model(spec, questions, st) for spec in st.cfg.answer.models}
st.report_errors(sum(len(r.failed) for r in reports.values()), "questions left without an answer (a rerun asks them again)")
answer.reports_table(reports)

# %% [markdown]
# ## A few answers side by side

# %%
answer.side_by_side(questions[:4], answer.load_answer_dir(st.layout.answers))
