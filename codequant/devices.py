"""Which torch device a command runs on: one rule for `--device` everywhere (evaluation, quantization, benches)."""

from __future__ import annotations

from codequant.errors import CodequantError


def resolve_device(device: str) -> str:
    """ "auto" -> cuda when a GPU is visible, else cpu; anything else is checked against what torch sees."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CodequantError(
            f"--device {device}: torch sees no CUDA GPU here (this torch: {torch.__version__})"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise CodequantError(f"unknown --device {device!r}; use cpu, cuda, cuda:N or auto")
    return device
