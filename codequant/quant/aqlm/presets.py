"""AQLM configurations by bit budget, and picking one that really fits the model at hand.

A configuration is (M codebooks, B bits per code, g inputs per group). Its nominal cost is M*B/g bits per weight,
but codebooks (M * 2^B * g fp16 numbers per layer) and scales (one fp16 per row) come on top, and on a small
model they dominate: on SmolLM2-135M a 1x16 g8 codebook alone costs ~16 bits per weight, 2x8 g8 ~0.13. So
`--bits N` is resolved against the model's real layer shapes: the preset if it fits the budget, else the
configuration with the same nominal code bits (M*B/g = N), the preset's group size and the largest B that fits.

The budget is N * (1 + tolerance) bits per parameter over all quantized linears (default tolerance 0.1): AQLM's
"N-bit" models always cost a little more than N (the paper's 2-bit 1x16 is 2.02 bits on Llama-2-7B).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from codequant.errors import CodequantError
from codequant.quant.aqlm.linear import aqlm_storage
from codequant.quant.arch import block_linears, find_decoder_layers, linear_shape
from codequant.quant.base import QuantConfig
from codequant.quant.options import RESOLVED, aqlm_options

# bits -> (num_codebooks M, codebook bits B, in_group_size g)
PRESETS: dict[str, dict[int, tuple[int, int, int]]] = {
    "paper": {8: (4, 15, 8), 4: (2, 15, 8), 3: (2, 12, 8), 2: (1, 15, 8)},  # the study's own configurations
    "fast": {8: (8, 8, 8), 4: (4, 8, 8), 3: (3, 8, 8), 2: (2, 8, 8)},  # 8-bit codebooks: cheap on CPU
}
DEFAULT_TOLERANCE = 0.1


def quantized_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(out, in) of every linear (nn.Linear, Conv1D) inside the decoder blocks: what the pipeline will quantize."""
    _, layers = find_decoder_layers(model)
    return [linear_shape(m) for layer in layers for m in block_linears(layer).values()]


def model_cost(
    shapes: list[tuple[int, int]], num_codebooks: int, nbits: int, group_size: int
) -> dict[str, float]:
    """Bits per parameter over the given layers: formula (AQLM's count) and stored (int8/int16 codes)."""
    costs = [aqlm_storage(o, i, num_codebooks, nbits, group_size) for o, i in shapes]
    params = sum(c.params for c in costs)
    return {
        "params": params,
        "formula_bits_per_param": sum(c.formula_bits for c in costs) / params,
        "stored_bits_per_param": sum(c.stored_bits for c in costs) / params,
        "bytes": sum(c.stored_bits for c in costs) / 8,
    }


def validate_spec(
    num_codebooks: int | None, nbits: int | None, group_size: int | None, shapes: list[tuple[int, int]]
) -> None:
    """Check what is given of (M, B, g) (None: not given yet), against the layer shapes if any."""
    if nbits is not None and not 1 <= nbits <= 16:
        raise CodequantError(
            f"--codebook-bits must be in 1..16 (codes are stored as int8/int16), got {nbits}"
        )
    if num_codebooks is not None and num_codebooks < 1:
        raise CodequantError(f"--codebooks must be at least 1, got {num_codebooks}")
    if group_size is None:
        return
    if group_size < 1:
        raise CodequantError(f"--group-size must be positive, got {group_size}")
    bad = sorted({i for _, i in shapes if i % group_size})
    if bad:
        common = sorted(
            {d for d in range(1, min(i for _, i in shapes) + 1) if all(i % d == 0 for _, i in shapes)}
        )
        raise CodequantError(
            f"--group-size {group_size} does not divide the input size(s) {bad} of the quantized "
            f"layers; use one of {', '.join(map(str, common[-8:]))}"
        )


def _describe(m: int, b: int, g: int) -> str:
    return f"{m}x{b} g{g}"


def resolve_spec(
    shapes: list[tuple[int, int]], bits: int, preset: str = "fast", tolerance: float = DEFAULT_TOLERANCE
) -> tuple[tuple[int, int, int], str]:
    """(M, B, g) meeting `bits` on layers of these shapes, and why it was chosen."""
    if preset not in PRESETS:
        raise CodequantError(f"unknown AQLM preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if bits not in PRESETS[preset]:
        raise CodequantError(
            f"AQLM --bits must be one of {', '.join(map(str, sorted(PRESETS[preset])))}, got {bits}"
        )
    budget = bits * (1 + tolerance)
    m, b, g = PRESETS[preset][bits]
    validate_spec(m, b, g, shapes)
    cost = model_cost(shapes, m, b, g)["formula_bits_per_param"]
    if cost <= budget:
        return (
            m,
            b,
            g,
        ), f"preset {preset} {bits}-bit {_describe(m, b, g)}: {cost:.3f} bits/param <= budget {budget:.2f}"
    # same nominal code bits (M*B = bits*g), same g, largest B (fewest, largest codebooks) that fits the budget
    for nb in range(min(b, 16), 0, -1):
        if (bits * g) % nb:
            continue
        nm = bits * g // nb
        alt = model_cost(shapes, nm, nb, g)["formula_bits_per_param"]
        if alt <= budget:
            return (nm, nb, g), (
                f"preset {preset} {bits}-bit {_describe(m, b, g)} costs {cost:.3f} bits/param on "
                f"this model (codebooks dominate); picked {_describe(nm, nb, g)}: {alt:.3f} <= "
                f"budget {budget:.2f}"
            )
    raise CodequantError(
        f"no AQLM configuration with group size {g} fits {bits} bits/param on this model; "
        "give --codebooks/--codebook-bits/--group-size explicitly"
    )


def resolve_aqlm_config(config: QuantConfig, model: nn.Module) -> QuantConfig:
    """The config with num_codebooks/codebook_bits/group_size filled in for `model`; the reason and the real
    cost are recorded in `options["resolved"]`. Explicit M, B and g bypass the presets (validated)."""
    shapes = quantized_shapes(model)
    if not shapes:
        raise CodequantError("the model has no nn.Linear inside its decoder blocks; nothing to quantize")
    m, b, g = config.num_codebooks, config.codebook_bits, config.group_size
    if m is not None and b is not None and g is not None:
        validate_spec(m, b, g, shapes)
        reason = f"explicit {_describe(m, b, g)}"
    elif m is not None or b is not None:
        raise CodequantError("give all of --codebooks M --codebook-bits B --group-size g, or --bits alone")
    else:
        if config.bits is None:
            raise CodequantError(
                "aqlm needs --bits (8|4|3|2) or all of --codebooks M --codebook-bits B --group-size g"
            )
        tolerance = aqlm_options(config.options).bits_tolerance
        tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
        (m, b, g), reason = resolve_spec(shapes, config.bits, config.preset, tolerance)
    cost = model_cost(shapes, m, b, g)
    resolved: dict[str, Any] = {"reason": reason, **cost}
    return dataclasses.replace(
        config, num_codebooks=m, codebook_bits=b, group_size=g, options={**config.options, RESOLVED: resolved}
    )
