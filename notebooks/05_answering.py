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
import pandas as pd

from jinstruct.answering import answer_model, load_benchmark
from jinstruct.stage import Stage

st = Stage.open("05_answering", config_path, run_dir, overrides)
questions, references = load_benchmark(st.cfg.answer.benchmark, st.cfg.answer.per_category)
print(f"{len(questions)} questions, {len(references)} reference answers")
pd.Series([q.category for q in questions]).value_counts().sort_index()

# %%
reports = {spec.model_id: answer_model(spec, questions, st.dir("answers"), st) for spec in st.cfg.answer.models}
pd.DataFrame([vars(r) for r in reports.values()], index=list(reports))

# %% [markdown]
# ## A few answers side by side

# %%
from jinstruct.fastchat import load_answer_dir

answers = load_answer_dir(st.dir("answers"))
pd.DataFrame({m: {q.question_id: answers[m][q.question_id].turns[0][:120] for q in questions[:4]}
              for m in answers}).assign(question=[q.turns[0][:60] for q in questions[:4]])
