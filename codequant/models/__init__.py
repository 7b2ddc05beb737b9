"""Models: load any spec (embedded GGUF, .gguf file, HF folder, hub id), save atomically, measure the footprint."""

from codequant.models.footprint import Footprint, footprint
from codequant.models.loader import LoadedModel, load, resolve
from codequant.models.registry import EMBEDDED, embedded_model, embedded_names
from codequant.models.save import save

__all__ = [
    "EMBEDDED",
    "Footprint",
    "LoadedModel",
    "embedded_model",
    "embedded_names",
    "footprint",
    "load",
    "resolve",
    "save",
]
