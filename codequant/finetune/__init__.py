"""End-to-end distillation fine-tuning of quantized models against their fp original (the study's RQ4)."""

from codequant.finetune.run import FinetuneRun, finetune
from codequant.finetune.trainer import FinetuneConfig, FinetuneResult, distill

__all__ = ["FinetuneConfig", "FinetuneResult", "FinetuneRun", "distill", "finetune"]
