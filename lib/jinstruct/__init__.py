"""jinstruct: Japanese instruction data, QLoRA tuning and LLM judging, reproducibly."""

__version__ = "0.1.0"
