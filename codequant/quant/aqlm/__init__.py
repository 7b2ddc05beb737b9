"""AQLM (Egiazarian et al., ICML 2024): additive quantization with learned multi-codebooks, on CPU or GPU."""

from codequant.quant.aqlm.export import export_aqlm
from codequant.quant.aqlm.linear import AqlmLinear
from codequant.quant.aqlm.presets import PRESETS, resolve_aqlm_config
from codequant.quant.aqlm.quantizer import AqlmQuantizer

__all__ = ["PRESETS", "AqlmLinear", "AqlmQuantizer", "export_aqlm", "resolve_aqlm_config"]
