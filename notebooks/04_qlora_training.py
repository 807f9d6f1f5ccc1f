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
# `figures/04_loss.png`.

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

# %%
results = {m.name: train.train(m.params(), train_file, st.dir(st.layout.model_dir(m.name)))
           for m in st.cfg.train.models}
train.results_table(results)

# %% [markdown]
# ## Loss curves

# %%
losses = train.loss_frame({name: r.log_path for name, r in results.items()})
st.save_figure(train.loss_figure(losses), "04_loss")
