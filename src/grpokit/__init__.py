"""grpokit: GRPO fine-tuning of language models from one YAML file, on TRL."""

__version__ = "0.1.0"
