"""Where codequant keeps derived artifacts (converted GGUF weights, calibration sets, teacher logits).

`CODEQUANT_CACHE` overrides the location; otherwise `$XDG_CACHE_HOME/codequant` or `~/.cache/codequant`.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("CODEQUANT_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "codequant"


def cache_dir(*parts: str) -> Path:
    """A directory under the cache root, created if needed."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
