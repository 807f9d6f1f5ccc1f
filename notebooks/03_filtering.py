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
# # 03 Filtering: heuristics for Japanese, then exact ROUGE-L dedup
#
# Generated instructions are checked by heuristic filters (too short or too long, tasks a text model cannot do such as
# images or audio, starting with punctuation or a list marker, too little Japanese, input equal to output, cut-off
# output, exact duplicates, text copied from the prompt template), each rejection recorded with its reason. Then, in
# order, an instruction is kept only if its highest ROUGE-L against the seeds and everything kept before is at most the
# threshold (0.7): Alpaca's rule, computed exactly over Japanese characters (the reference tokenizer drops every
# non-ASCII character and so filters nothing in Japanese).
#
# **Reads**: `data/generated.jsonl` (from 02), `seeds/ja_seed_tasks.jsonl` (from 01).
# **Writes**: `data/filtered.jsonl`, `data/rejected.jsonl` (with reasons), `data/train.jsonl` (TRL messages format),
# `data/dataset_card.md`, `figures/03_*.pdf` and `.png`.

# %% tags=["parameters"]
config_path = None  # None: configs/tiny.yaml
run_dir = None  # None: runs/<config name>
overrides = {}  # dotted keys, e.g. {"filter.rouge_threshold": 0.6}

# %%
from jinstruct import filter as flt
from jinstruct.filter import stats as fs
from jinstruct.run import Stage

st = Stage.open("03_filtering", config_path, run_dir, overrides)
records = flt.load_records(st.layout.generated)
seeds = flt.load_seed_records(st.layout.japanese_seeds)
print(f"{len(records):,} generated records, {len(seeds):,} seed tasks; ROUGE-L threshold {st.cfg.filter.rouge_threshold}")

# %% [markdown]
# ## A worked example: one rejection per reason
#
# The filters run on the first candidates, and for each reason that rejected something the table shows one rejected
# candidate, why (`detail`), and the kept instruction (or seed) closest to it by ROUGE-L. For a ROUGE-L rejection
# the neighbour is the near-duplicate that caused it: read the two side by side and judge whether the 0.7 rule was
# right. For the heuristic reasons, the neighbour shows what a kept instruction of the same kind looks like.

# %%
flt.rejection_examples(records, seeds, st.cfg.filter, tokens=st.cfg.filter.rouge_tokens)

# %% [markdown]
# ## Every record

# %%
result = flt.filter_records(records, seeds, st.cfg.filter, source=str(st.layout.generated), progress=True)
paths = flt.write_outputs(result, st.dir(st.layout.data), generation_card=st.layout.generation_card)
print(f"{result.n_input:,} generated -> {result.n_kept:,} kept, {len(result.rejected):,} rejected")

# %% [markdown]
# ## Rejections by reason
#
# Which filters did the work. With a strong generator most rejections are ROUGE-L near-duplicates; many heuristic
# rejections (little Japanese, punctuation first) point at a weak generator or a prompt the model misreads.

# %%
reasons = fs.rejection_table(result)
st.save_figure(fs.plot_rejections(reasons), "03_rejections")

# %%
reasons

# %% [markdown]
# ## Lengths of what was kept
#
# Characters per field. Very short outputs and a long tail of long ones are what the length filters trim; an input
# panel with few records means most tasks need no input.

# %%
fs.length_summary(result.kept)

# %%
st.save_figure(fs.plot_lengths(fs.lengths(result.kept)), "03_lengths")

# %% [markdown]
# ## How close the kept instructions are to the seeds (the self-instruct paper's ROUGE-L histogram)
#
# Mass to the left of the threshold line means the generated instructions are new, not paraphrases of the seeds.
# The table lists the kept instructions closest to a seed.

# %%
nearest = fs.nearest_seed_scores(result.kept, seeds, tokens=st.cfg.filter.rouge_tokens)
st.save_figure(fs.plot_rouge_histogram(nearest, threshold=st.cfg.filter.rouge_threshold), "03_rouge_to_seeds")

# %%
nearest.sort_values("rouge_l", ascending=False).head(5)

# %% [markdown]
# ## Predicates and their objects (the Japanese counterpart of self-instruct's verb-noun chart)
#
# The inner ring: the main predicate of each instruction (e.g. 説明する); the outer ring: its most common objects.
# A few dominant predicates mean the tasks are less diverse than their count suggests.

# %%
top = fs.top_predicate_objects(fs.predicate_objects(result.kept))
st.save_figure(fs.plot_predicate_objects(top), "03_predicate_objects")

# %%
top.head(10)

# %% [markdown]
# ## The training data, as a Hugging Face dataset

# %%
print(flt.training_dataset(st.layout.train_data))
print(st.layout.dataset_card.read_text(encoding="utf-8")[:1500])
