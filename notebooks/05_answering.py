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

# %%
reports = {spec.model_id: answer.answer_model(spec, questions, st) for spec in st.cfg.answer.models}
st.report_errors(sum(len(r.failed) for r in reports.values()), "questions left without an answer (a rerun asks them again)")
answer.reports_table(reports)

# %% [markdown]
# ## A few answers side by side

# %%
answer.side_by_side(questions[:4], answer.load_answer_dir(st.layout.answers))
