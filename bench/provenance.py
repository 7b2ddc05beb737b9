"""What every bench result records besides its figures: the commit it ran, and where it is written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The checkout's short commit (empty outside a git checkout)."""
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def write_result(result: dict[str, Any], out: Path | None) -> None:
    """`result` as indented JSON at `out` (folders made), when an output path was given."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
