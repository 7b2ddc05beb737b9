"""Models: load any spec (embedded GGUF, .gguf file, HF folder, hub id), save atomically, measure the footprint."""

from codequant.models.dtype import DTYPES, check_dtype
from codequant.models.footprint import Footprint, footprint
from codequant.models.loader import LoadedModel, load, load_dtype, resolve
from codequant.models.registry import EMBEDDED, embedded_model, embedded_names
from codequant.models.save import save

__all__ = [
    "DTYPES",
    "EMBEDDED",
    "Footprint",
    "LoadedModel",
    "check_dtype",
    "embedded_model",
    "embedded_names",
    "footprint",
    "load",
    "load_dtype",
    "resolve",
    "save",
]
