"""Names -> classes for quantization methods and for the quantized-linear kinds written into checkpoints.

Checkpoints store each quantized linear's `kind`; reloading looks the class up here. Modules register their
classes when imported; a kind or method not registered yet is looked up by importing its home module
(`codequant.quant.<name>`, e.g. `codequant.quant.aqlm`), so a checkpoint can be read without importing every
method first.
"""

from __future__ import annotations

import importlib

from codequant.errors import CodequantError
from codequant.quant.base import QuantConfig, QuantizedLinear, Quantizer

_LINEARS: dict[str, type[QuantizedLinear]] = {}
_QUANTIZERS: dict[str, str] = {
    "rtn": "codequant.quant.rtn:RtnQuantizer",
    "gptq": "codequant.quant.gptq:GptqQuantizer",
    "aqlm": "codequant.quant.aqlm:AqlmQuantizer",
}
_HOME = {
    "rtn": "codequant.quant.rtn",
    "gptq": "codequant.quant.gptq",
    "aqlm": "codequant.quant.aqlm",
    "embedding": "codequant.quant.tables",
    "head": "codequant.quant.tables",
}


def register_linear(cls: type[QuantizedLinear]) -> type[QuantizedLinear]:
    """Register a QuantizedLinear subclass under its `kind` (usable as a class decorator)."""
    _LINEARS[cls.kind] = cls
    return cls


def register_quantizer(method: str, target: str) -> None:
    """Register a method as "module:Class" (imported lazily by `make_quantizer`)."""
    _QUANTIZERS[method] = target


def method_names() -> list[str]:
    return sorted(_QUANTIZERS)


def linear_class(kind: str) -> type[QuantizedLinear]:
    if kind not in _LINEARS and kind in _HOME:
        importlib.import_module(_HOME[kind])
    if kind not in _LINEARS:
        raise CodequantError(f"unknown quantized linear kind {kind!r} (known: {', '.join(sorted(_LINEARS))})")
    return _LINEARS[kind]


def quantizer_class(method: str) -> type[Quantizer]:
    if method not in _QUANTIZERS:
        raise CodequantError(
            f"unknown quantization method {method!r}; choose one of {', '.join(method_names())}"
        )
    module, _, name = _QUANTIZERS[method].partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise CodequantError(f"quantization method {method!r} is not available: {exc}") from exc


def make_quantizer(config: QuantConfig) -> Quantizer:
    """The quantizer for `config.method`; constructing it validates the config (clear errors for bad specs)."""
    return quantizer_class(config.method)(config)
