"""Fine-tuning: data sets from user files, the trainer (single process or DDP), the ``zoo train`` command."""

from zoo.training.trainer import FinetuneConfig, FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune"]
