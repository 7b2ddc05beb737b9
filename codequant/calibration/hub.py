"""Hub sources for users with a network: the study's RedPajama subsets, streamed with HF `datasets`.

Spec: `hub:DATASET[:CONFIG]`, e.g. `hub:togethercomputer/RedPajama-Data-1T-Sample` (general text for Random),
`hub:togethercomputer/RedPajama-Data-1T:github` (code; the study keeps Python/Java files, one per repository),
`hub:togethercomputer/RedPajama-Data-1T:stackexchange` (Q&A; the study keeps posts about Python/Java).
Only the first `limit` records are streamed. `datasets` is the optional extra `hub`, imported lazily; tests never
come here.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from codequant.calibration.local import record_language, record_text, records_to_units
from codequant.calibration.units import Unit
from codequant.errors import CodequantError

HUB_LIMIT = 20_000
_TOPIC = re.compile(r"\b(python|java)\b", re.I)


def _keep(config: str, record: dict[str, Any]) -> tuple[bool, str]:
    """The study's filters: github -> Python/Java files; stackexchange -> posts naming Python or Java."""
    if config == "github":
        return record_language(record) in ("python", "java"), ""
    if config == "stackexchange":
        m = _TOPIC.search(record_text(record) or "")
        return m is not None, (m.group(1).lower() if m else "")
    return True, ""


def hub_units(spec: str, *, limit: int = HUB_LIMIT) -> list[Unit]:
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise CodequantError("hub calibration sources need `datasets`: pip install 'codequant[hub]'") from exc
    name, _, config = spec.removeprefix("hub:").partition(":")
    try:
        stream = load_dataset(name, config or None, split="train", streaming=True)
    except Exception as exc:  # datasets raises many types for unreachable/unknown datasets
        raise CodequantError(f"cannot stream {name} {config}: {str(exc).splitlines()[0]}") from exc
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for record in itertools.islice(stream, limit):
        keep, topic = _keep(config, record)
        if keep:
            by_topic.setdefault(topic, []).append(record)
    source = f"hub:{name}" + (f":{config}" if config else "")
    units: list[Unit] = []
    for topic, records in sorted(by_topic.items()):
        category = "prose" if config == "stackexchange" else None
        units.extend(records_to_units(source, records, category=category, topic=topic))
    return units
