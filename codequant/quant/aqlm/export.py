"""Export an AQLM-quantized model as an HF folder that `AutoModelForCausalLM.from_pretrained` loads through the
`aqlm` package (transformers' `quant_method: "aqlm"`).

Layout (from aqlm's `QuantizedLinear` and transformers' AqlmConfig): one global `quantization_config` with
in_group_size, out_group_size (1), num_codebooks, nbits_per_codebook and `linear_weights_not_to_quantize`; per
quantized layer `codes` [out, in/g, M] int8 (B <= 8) or int16 (B <= 16), codes >= 2^(B-1) stored as code - 2^B;
`codebooks` [M, 2^B, 1, g] and `scales` [out, 1, 1, 1] in the model dtype; `bias` if any. transformers replaces
*every* nn.Linear not listed, so every linear left in fp (lm_head) is listed, both by module name (transformers
5 matches modules) and by weight name (older versions match weights).

CPU note: aqlm's numba kernel (used for 2^8-entry codebooks) accumulates in a parallel loop without reduction;
run it with NUMBA_NUM_THREADS=1 for exact results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from codequant.errors import CodequantError
from codequant.quant.aqlm.linear import AqlmLinear, pack_codes
from codequant.quant.arch import conv1d_names

_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def aqlm_state_dict(
    model: nn.Module, dtype: torch.dtype | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of the aqlm-format checkpoint and its `quantization_config`."""
    quant = {n: m for n, m in model.named_modules() if isinstance(m, AqlmLinear)}
    if not quant:
        raise CodequantError("the model has no AQLM-quantized layers; quantize with --method aqlm first")
    specs = {(m.num_codebooks, m.nbits, m.group_size) for m in quant.values()}
    if len(specs) > 1:
        raise CodequantError(
            f"the aqlm format needs one configuration for every layer; found {sorted(specs)}"
        )
    ((num_codebooks, nbits, group_size),) = specs
    dtype = dtype or next(m.dtype for m in quant.values())
    tensors: dict[str, torch.Tensor] = {}
    for name, m in quant.items():
        tensors[f"{name}.codes"] = pack_codes(m.codes, nbits)
        tensors[f"{name}.codebooks"] = m.codebooks.detach().to(dtype)
        tensors[f"{name}.scales"] = m.scales.detach().to(dtype)
        if m.bias is not None:
            tensors[f"{name}.bias"] = m.bias.detach().to(dtype)
    prefixes = tuple(f"{n}." for n in quant)
    seen: set[tuple[int, tuple]] = set()
    for key, t in model.state_dict().items():
        if key.startswith(prefixes):
            continue
        ident = (t.data_ptr(), tuple(t.shape))
        if (
            t.numel() and ident in seen
        ):  # tied weights (lm_head = embed_tokens): stored once, as transformers does
            continue
        seen.add(ident)
        tensors[key] = t.detach().to(dtype) if t.is_floating_point() else t.detach()
    keep = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    qconfig = {
        "quant_method": "aqlm",
        "in_group_size": group_size,
        "out_group_size": 1,
        "num_codebooks": num_codebooks,
        "nbits_per_codebook": nbits,
        "linear_weights_not_to_quantize": keep + [f"{n}.weight" for n in keep],
    }
    return {k: v.cpu().contiguous() for k, v in tensors.items()}, qconfig


def aqlm_format_problem(model: nn.Module) -> str | None:
    """Why `model` cannot be written in the aqlm format, or None. transformers swaps only nn.Linear modules for the
    aqlm package's layer, so an architecture that builds some block linears as GPT-2's Conv1D would load with
    those left at random weights; and its format has no quantized embedding or head (writing their fp copy
    would claim bits the file does not have)."""
    from codequant.quant.tables import TiedHead, is_table

    tables = [n for n, m in model.named_modules() if is_table(m) or isinstance(m, TiedHead)]
    if tables:
        return (
            f"the aqlm format cannot hold quantized token tables ({', '.join(tables)}): transformers' aqlm "
            "loader keeps the embedding and the head in fp; write --format dequantized,codequant, or leave "
            "embedding_bits/head_bits unset for an aqlm export"
        )
    transposed = conv1d_names(model)
    if transposed:
        return (
            f"the aqlm format cannot hold {type(model).__name__}: transformers replaces only nn.Linear modules "
            f"with aqlm layers, and this architecture builds {len(transposed)} block linears as Conv1D "
            f"(e.g. {min(transposed)}); write --format dequantized,codequant instead"
        )
    return None


def export_aqlm(
    model: nn.Module,
    tokenizer: Any,
    out_dir: str | Path,
    description: str | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `out_dir` (config.json, model.safetensors, tokenizer, README.md); returns it.

    `dtype`: of codebooks, scales and the fp parts (default: the quantized layers' compute dtype; load with the
    same `dtype=` for exact logits; aqlm's CPU kernels need float32)."""
    problem = aqlm_format_problem(model)
    if problem:
        raise CodequantError(problem)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, qconfig = aqlm_state_dict(model, dtype)
    dtype_name = _NAMES.get(next(t.dtype for k, t in tensors.items() if k.endswith(".codebooks")), "float32")
    config = model.config.to_dict()
    config["quantization_config"] = qconfig
    config["dtype"] = config["torch_dtype"] = dtype_name
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    bits = qconfig["num_codebooks"] * qconfig["nbits_per_codebook"] / qconfig["in_group_size"]
    (out / "README.md").write_text(
        f"# AQLM {qconfig['num_codebooks']}x{qconfig['nbits_per_codebook']} g{qconfig['in_group_size']} "
        f"({bits:g} code bits per weight)\n\n{description or 'Quantized with codequant.'}\n\n"
        "Load with `AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)` with the `aqlm` package "
        "installed (`pip install aqlm[cpu]`); on CPU set NUMBA_NUM_THREADS=1 (aqlm's numba kernel races).\n"
    )
    return out
