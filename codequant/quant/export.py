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
from codequant.models.filebits import whole_file_bits
from codequant.quant.arch import conv1d_names, to_conv1d
from codequant.quant.checkpoint import (
    apply_module_state,
    load_state_file,
    module_state,
    quantized_modules,
    save_state_file,
    set_submodule,
)
from codequant.quant.tables import QuantizedEmbedding, dequantized_tables, is_table

INFO_FILE = "codequant.json"


def accounting(model: nn.Module) -> dict[str, Any]:
    """Bits of the quantized decoder linears (formula and stored), of the quantized token tables if any, and of
    the whole model with fp parts at 16 bits. `model_params` is the fp model's parameter count (each quantized
    weight, bias and fp tensor once): the denominator of the saved files' bits (`whole_file_accounting`)."""
    quant = quantized_modules(model)
    q_params = q_formula = q_stored = 0.0
    t_params = t_stored = 0.0
    biases = 0
    for q in quant.values():
        cost = q.storage()
        bias = getattr(q, "bias", None)
        biases += 0 if bias is None else bias.numel()
        if is_table(q):
            t_params += cost.params
            t_stored += cost.stored_bits
            continue
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
    total = q_params + t_params + fp_params
    out = {
        "quantized_params": int(q_params),
        "fp_params": int(fp_params),
        "formula_bits_per_param": q_formula / q_params if q_params else 0.0,
        "stored_bits_per_param": q_stored / q_params if q_params else 0.0,
        "model_bits_per_param_fp16_rest": (q_stored + t_stored + 16 * fp_params) / total if total else 0.0,
        "quantized_linears_bytes": int(q_stored // 8),
        "model_params": int(total + biases),
    }
    if t_params:
        out.update(table_params=int(t_params), table_stored_bits_per_param=t_stored / t_params)
    return out


def whole_file_accounting(folders: dict[str, str | Path], parameters: int) -> dict[str, dict[str, Any]]:
    """{export: whole_file_bits(folder)} for each written export (`codequant.models.filebits`)."""
    return {name: whole_file_bits(folder, parameters) for name, folder in folders.items()}


def _dequantized_linear(q: nn.Module) -> nn.Linear:
    weight = q.dequantize().detach()
    bias = getattr(q, "bias", None)
    linear = nn.Linear(
        q.in_features, q.out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias.detach())
    return linear


def export_dequantized(
    model: nn.Module, tokenizer: Any, out_dir: str | Path, *, info: dict[str, Any] | None = None
) -> Path:
    """Save `model` as a plain HF folder with dequantized weights (the model itself is left quantized)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quant = quantized_modules(model)
    if not quant:
        raise CodequantError("the model has no quantized layers; run quantize_model first")
    acc = accounting(model)
    transposed = conv1d_names(model)  # GPT-2 stores these linears as Conv1D: the folder must hold that layout
    tables = dequantized_tables(model)  # embedding -> nn.Embedding; a tied head shares its weight
    originals = {name: model.get_submodule(name) for name in [*quant, *tables]}
    try:
        for name, q in quant.items():
            if isinstance(q, QuantizedEmbedding):
                continue
            linear = _dequantized_linear(q)
            set_submodule(model, name, to_conv1d(linear) if name in transposed else linear)
        for name, plain in tables.items():
            set_submodule(model, name, plain)
        model.save_pretrained(out)
    finally:
        for name, original in originals.items():
            set_submodule(model, name, original)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    whole = whole_file_bits(out, acc["model_params"])  # the fp tensors it really holds: 32 bits in fp32
    (out / INFO_FILE).write_text(
        json.dumps(
            {"format": "dequantized", "accounting": acc, "whole_file": whole, **(info or {})}, indent=2
        )
    )
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
    acc = accounting(model)
    data = {
        "format": "codequant",
        "bytes": size,
        "accounting": acc,
        "whole_file": whole_file_bits(out, acc["model_params"]),
        **(info or {}),
    }
    (out / INFO_FILE).write_text(json.dumps(data, indent=2))
    return out


def load_codequant_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the quantized model written by `save_codequant_checkpoint`; returns (model, codequant.json).

    `dtype`: what the fp parts (embeddings, norms, head, biases) and the quantized linears' compute dtype become;
    None = the dtype they were saved in. Codes, codebooks and scales stay as stored (casting fp16-exact codebooks
    to bf16 would change the model)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    if not (path / NATIVE_FILE).exists():
        raise CodequantError(
            f"{path} is not a codequant checkpoint (no {NATIVE_FILE}); write one with --format codequant"
        )
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
