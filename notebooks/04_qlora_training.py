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
# # 04 QLoRA training: tune the base models on the filtered instructions
#
# Each model under `train.models` is loaded in 4-bit NF4 with double quantization (bitsandbytes), gets LoRA adapters
# on every linear layer except the output head, and is tuned with TRL's SFTTrainer on the conversational training file,
# with the loss on the response tokens only, a held-out split for the eval loss, and checkpoints to resume from.
# The same code runs on many GPUs: `accelerate launch -m jinstruct train --config FILE`.
#
# On the tiny config the tiny local Llama trains in 4-bit on the CPU for a few steps.
#
# **Reads**: `data/train.jsonl` (TRL messages format, written by 03).
# **Writes**: `models/<name>/adapter/` (with `training_card.json`), `models/<name>/train_log.jsonl`, TensorBoard logs,
# `figures/04_loss.pdf` and `.png`.

# %% tags=["parameters"]
config_path = None  # None: configs/tiny.yaml
run_dir = None  # None: runs/<config name>
overrides = {}  # dotted keys, e.g. {"train.train_file": "data/train.jsonl"}

# %%
from jinstruct import train
from jinstruct.run import Stage

st = Stage.open("04_qlora_training", config_path, run_dir, overrides)
train_file = st.run_dir / st.cfg.train.train_file
print(f"training data: {train_file}")
train.params_table(st.cfg.train.models)

# %% [markdown]
# ## A worked example: what the model is trained on
#
# The first training record, rendered with the template of the first model and cut into tokens as the trainer cuts
# it. Grey tokens are the prompt (the template's markup and the instruction): the model reads them but is not
# trained to produce them. Highlighted tokens are the answer and its end-of-turn token: the loss is computed on these
# alone, so the model learns to answer, not to repeat questions.

# %%
train.loss_tokens(st.cfg.train.models[0].params(), train_file)

# %% [markdown]
# ## Training
#
# One row per model: steps, the last training and held-out losses, time, and whether an adapter trained earlier with
# the same settings and data was reused.

# %%
results = {m.name: train.train(m.params(), train_file, st.dir(st.layout.model_dir(m.name)))
           for m in st.cfg.train.models}
train.results_table(results)

# %% [markdown]
# ## Loss curves
#
# The training loss (lines) should fall; the held-out loss (markers) should follow it. A held-out loss that rises
# while the training loss keeps falling is overfitting: fewer steps, or more data.

# %%
losses = train.loss_frame({name: r.log_path for name, r in results.items()})
st.save_figure(train.loss_figure(losses), "04_loss")
