"""Stage 04, training: 4-bit QLoRA with TRL and peft, chat or Alpaca-style templates, one GPU or many."""

from jinstruct.lazy import exports

__getattr__, __dir__ = exports(__name__, {
    "TrainParams": "qlora",
    "TrainResult": "qlora",
    "loss_figure": "figures",
    "loss_frame": "figures",
    "loss_tokens": "example",
    "params_table": "figures",
    "results_table": "figures",
    "train": "qlora",
})
__all__ = sorted(__dir__())
