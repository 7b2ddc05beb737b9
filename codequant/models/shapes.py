"""A model's shape (widths, depth, heads, vocabulary, dtype) read from its config, without loading any weight.

Why: `codequant study plan` sizes every step of a grid of 7B-34B models before an hour of cluster time is spent,
on a machine that may not have the weights (or the hub). The shape comes from the model's config.json (a local
folder, the converted cache of an embedded GGUF, or the hub's cache); where none can be read it comes from a small
table of the study's six models (`data/paper_models.json`, with its source), and the result says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# models.loader (torch) loads inside `_read_config` only: planning a study reads shapes without torch.
from codequant.errors import CodequantError

_TABLE = Path(__file__).parent / "data" / "paper_models.json"
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


@dataclass(frozen=True)
class ModelShape:
    """What sizing a step needs of a decoder-only transformer (Llama-style: q/k/v/o, gate/up/down)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    torch_dtype: str = "float32"
    tied_embeddings: bool = False
    source: str = "config"  # config.json | table (data/paper_models.json)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def block_params(self) -> int:
        """Weights of one decoder block: attention (q, o full; k, v at the kv width), the MLP, two norms."""
        kv = self.kv_heads * self.head_dim
        return (
            2 * self.hidden * self.hidden
            + 2 * self.hidden * kv
            + 3 * self.hidden * self.intermediate
            + 2 * self.hidden
        )

    @property
    def linear_params(self) -> int:
        """Weights of the decoder blocks' linears (what a method quantizes): the blocks without their norms."""
        return self.layers * (self.block_params - 2 * self.hidden)

    @property
    def largest_linear(self) -> int:
        """Weights of the largest single linear (an MLP projection): the size of a one-layer-at-a-time buffer."""
        return self.hidden * max(self.intermediate, self.hidden)

    @property
    def params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.layers * self.block_params + embeddings + self.hidden

    def bytes(self, dtype: str | None = None) -> int:
        """The weights' bytes in `dtype` (default: the checkpoint's own)."""
        return self.params * DTYPE_BYTES[dtype or self.torch_dtype]


def shape_from_config(config: dict[str, Any], source: str = "config") -> ModelShape:
    """A ModelShape from a config.json mapping (Llama, Mistral, Qwen2, DeepSeek-Coder, GPT-2 names)."""

    def get(*names: str, default: Any = None) -> Any:
        for name in names:
            if config.get(name) is not None:
                return config[name]
        if default is None:
            raise CodequantError(f"the model's config has none of {', '.join(names)}: cannot size it")
        return default

    hidden = int(get("hidden_size", "n_embd", "d_model"))
    heads = int(get("num_attention_heads", "n_head"))
    return ModelShape(
        hidden=hidden,
        intermediate=int(get("intermediate_size", "n_inner", default=4 * hidden)),
        layers=int(get("num_hidden_layers", "n_layer")),
        heads=heads,
        kv_heads=int(get("num_key_value_heads", default=heads)),
        vocab=int(get("vocab_size")),
        torch_dtype=str(get("torch_dtype", "dtype", default="float32")).removeprefix("torch."),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        source=source,
    )


@cache
def paper_table() -> dict[str, dict[str, Any]]:
    return json.loads(_TABLE.read_text())["models"]


def model_shape(spec: str) -> ModelShape:
    """The shape of model `spec` without loading weights: its config.json where it can be read, else the table."""
    config = _read_config(spec)
    if config is not None:
        return shape_from_config(config, source="config.json")
    if spec in paper_table():
        return ModelShape(**paper_table()[spec], source="table")
    raise CodequantError(
        f"cannot read the config of {spec!r} (no local folder, no cached config.json) and it is not "
        f"one of the tabled models ({', '.join(paper_table())}); give a local folder to plan it"
    )


def _read_config(spec: str) -> dict[str, Any] | None:
    from codequant.models.loader import converted_gguf_folder, resolve

    try:
        source, where = resolve(spec)
    except CodequantError:
        return None
    candidates: list[Path] = []
    if source == "folder":
        candidates.append(Path(where) / "config.json")
    elif source in ("embedded", "gguf"):
        candidates.append(converted_gguf_folder(Path(where)) / "config.json")
    elif source == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(where), "config.json")
            if isinstance(cached, str):
                candidates.append(Path(cached))
        except ImportError:
            pass
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text())
    return None
