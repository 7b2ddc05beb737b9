"""Writing quantized models out.

- `export_dequantized`: every QuantizedLinear becomes an ordinary nn.Linear holding its dequantized weight and
  the model is saved with `save_pretrained` (safetensors). Any method; any tool that reads HF folders (our
  evaluator included) runs it with no extra kernels, and the numbers it produces are exactly the quantized
  model's. It does not save memory: `codequant.json` says what the quantized storage would be.
- `save_codequant_checkpoint` / `load_codequant_checkpoint`: the native format (codes, codebooks, scales as
  the methods store them, plus fp tensors), which really is small and reloads into QuantizedLinear modules,
  e.g. for fine-tuning the continuous parameters later. Importing this module registers the native loader with
  `codequant.models.checkpoints`, so `codequant.models.load` reads native folders too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from codequant.errors import CodequantError
from codequant.models.checkpoints import NATIVE_FILE, register_folder_loader
from codequant.models.dtype import folder_dtype, model_dtype, torch_dtype
from codequant.quant.arch import conv1d_names, to_conv1d
from codequant.quant.checkpoint import (
    apply_module_state,
    load_state_file,
    module_state,
    quantized_modules,
    save_state_file,
    set_submodule,
)

INFO_FILE = "codequant.json"


def accounting(model: nn.Module) -> dict[str, Any]:
    """Bits of the quantized linears (formula and stored) and of the whole model with fp parts at 16 bits."""
    quant = quantized_modules(model)
    q_params = q_formula = q_stored = 0.0
    for q in quant.values():
        cost = q.storage()
        q_params += cost.params
        q_formula += cost.formula_bits
        q_stored += cost.stored_bits
    prefixes = tuple(f"{n}." for n in quant)
    seen: set[int] = set()
    fp_params = 0
    for name, p in model.named_parameters(remove_duplicate=False):
        if name.startswith(prefixes) or p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        fp_params += p.numel()
    total = q_params + fp_params
    return {
        "quantized_params": int(q_params),
        "fp_params": int(fp_params),
        "formula_bits_per_param": q_formula / q_params if q_params else 0.0,
        "stored_bits_per_param": q_stored / q_params if q_params else 0.0,
        "model_bits_per_param_fp16_rest": (q_stored + 16 * fp_params) / total if total else 0.0,
        "quantized_linears_bytes": int(q_stored // 8),
    }


def _dequantized_linear(q: nn.Module) -> nn.Linear:
    weight = q.dequantize().detach()
    bias = getattr(q, "bias", None)
    linear = nn.Linear(q.in_features, q.out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias.detach())
    return linear


def export_dequantized(model: nn.Module, tokenizer: Any, out_dir: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Save `model` as a plain HF folder with dequantized weights (the model itself is left quantized)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quant = quantized_modules(model)
    if not quant:
        raise CodequantError("the model has no quantized layers; run quantize_model first")
    acc = accounting(model)
    transposed = conv1d_names(model)  # GPT-2 stores these linears as Conv1D: the folder must hold that layout
    try:
        for name, q in quant.items():
            linear = _dequantized_linear(q)
            set_submodule(model, name, to_conv1d(linear) if name in transposed else linear)
        model.save_pretrained(out)
    finally:
        for name, q in quant.items():
            set_submodule(model, name, q)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    (out / INFO_FILE).write_text(json.dumps({"format": "dequantized", "accounting": acc, **(info or {})}, indent=2))
    return out


def save_codequant_checkpoint(
    model: nn.Module, out_dir: str | Path, *, tokenizer: Any = None, info: dict[str, Any] | None = None
) -> Path:
    """Native checkpoint: `config.json`, `codequant.safetensors` (quantized states + fp tensors), `codequant.json`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    config.dtype = model_dtype(model)  # what the fp parts are stored in: a reload gives this dtype back
    config.save_pretrained(out)
    tensors, meta = module_state(model)
    size = save_state_file(out / NATIVE_FILE, tensors, meta)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    data = {"format": "codequant", "bytes": size, "accounting": accounting(model), **(info or {})}
    (out / INFO_FILE).write_text(json.dumps(data, indent=2))
    return out


def load_codequant_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                              dtype: torch.dtype | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the quantized model written by `save_codequant_checkpoint`; returns (model, codequant.json).

    `dtype`: what the fp parts (embeddings, norms, head, biases) and the quantized linears' compute dtype become;
    None = the dtype they were saved in. Codes, codebooks and scales stay as stored (casting fp16-exact codebooks
    to bf16 would change the model)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    if not (path / NATIVE_FILE).exists():
        raise CodequantError(f"{path} is not a codequant checkpoint (no {NATIVE_FILE}); write one with --format codequant")
    config = AutoConfig.from_pretrained(path)
    dtype = dtype or torch_dtype(folder_dtype(path))
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)
    tensors, meta = load_state_file(path / NATIVE_FILE)
    apply_module_state(model, tensors, meta)
    for q in quantized_modules(model).values():
        set_compute_dtype(q, dtype)
    info = json.loads((path / INFO_FILE).read_text()) if (path / INFO_FILE).exists() else {}
    return model.eval(), info


def _load_native(folder: Path, dtype: torch.dtype) -> nn.Module:
    return load_codequant_checkpoint(folder, dtype=dtype)[0]


register_folder_loader(NATIVE_FILE, _load_native)  # models.load reads native checkpoints through this


@torch.no_grad()
def set_compute_dtype(q: nn.Module, dtype: torch.dtype) -> None:
    """A quantized linear's output dtype (and its bias) becomes `dtype`; its codes and codebooks are untouched."""
    q.dtype = dtype
    bias = getattr(q, "bias", None)
    if bias is not None:
        bias.data = bias.data.to(dtype)
    if hasattr(q, "_cache"):
        q._cache = None
