"""Build a calibration set by the study's recipe (Random / Mixed / Code), seeded and inspectable.

Rows follow a fixed cycle so that any block of rows, the validation tail included, keeps the recipe's shares:
- code:   python, java                       -> 50% Python, 50% Java
- mixed:  prose(python), python, prose(java), java -> 50% natural language, 25% Python, 25% Java
- random: general text                        -> 100% natural language
- local:  (a path given as the kind) whatever the sources hold, code first-L rows and text windows; all of it
          (a user's own folder is not split: held-out perplexity reads the built-in sources)
Code rows are the first L tokens of a file longer than L tokens, at most one file per package/repository; text
rows are random L-token windows of documents longer than L. Held-out code units (split.py) are never drawn.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from codequant.calibration.artifact import FORMAT, CalibrationSet, tokens_sha256
from codequant.calibration.builtin import BUILTIN, DEFAULT_SOURCES, LICENCES
from codequant.calibration.hub import hub_units
from codequant.calibration.identity import tokenizer_identity
from codequant.calibration.local import local_units
from codequant.calibration.split import HELDOUT_SALT, is_heldout, key_is_heldout, split_key
from codequant.calibration.units import NATURAL, Unit, seeded_order, stable_hash
from codequant.errors import CodequantError

# The recipe of each calibration kind, in the study's order (Random / Mixed / Code): the one list of the kinds.
CYCLES = {
    "random": ("text",),
    "mixed": ("prose:python", "python", "prose:java", "java"),
    "code": ("python", "java"),
}
CALIBRATION_KINDS = tuple(CYCLES)
MAX_FILES_PER_UNIT = 8  # files tried per package before moving on (bounds the cost of packages of tiny files)
MAX_DOC_CHARS = 400_000  # text windows are drawn from at most this many leading characters of a document


def load_units(sources: Sequence[str]) -> list[Unit]:
    """Units of each source: a built-in name, `hub:DATASET[:CONFIG]`, or a local path."""
    units: list[Unit] = []
    for spec in sources:
        spec = str(spec)
        if spec in BUILTIN:
            units.extend(BUILTIN[spec]())
        elif spec.startswith("hub:"):
            units.extend(hub_units(spec))
        else:
            units.extend(local_units(spec))
    return units


class _Tok:
    """Tokenizer calls the builder needs: ids plus character offsets (when the tokenizer is a fast one)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.fast = bool(getattr(tokenizer, "is_fast", False))

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=self.fast)
        return list(enc["input_ids"]), (list(map(tuple, enc["offset_mapping"])) if self.fast else None)


def _row(unit: Unit, doc_name: str, ids: list[int], offsets, start: int, seq_len: int, category: str) -> dict:
    char_start = offsets[start][0] if offsets else None
    char_end = offsets[start + seq_len - 1][1] if offsets else None
    return {
        "category": category,
        "source": unit.source,
        "unit": unit.id,
        "file": doc_name,
        "split_key": split_key(unit),
        "token_offset": start,
        "char_offset": char_start,
        "char_end": char_end,
        "ids": ids[start : start + seq_len],
    }


def _code_rows(units: list[Unit], tok: _Tok, seq_len: int, seed: int, category: str) -> Iterator[dict]:
    """First L tokens of one file longer than L per unit, units and files in seeded order."""
    for unit in seeded_order(units, seed, "code-unit", key=lambda u: u.key):
        docs = seeded_order(unit.documents(), seed, "code-file", key=lambda d: d.name)
        for doc in docs[:MAX_FILES_PER_UNIT]:
            text = doc.read()
            if len(text) <= seq_len:  # every token covers at least one character: too short to hold L tokens
                continue
            ids, offsets = tok.encode(text[: seq_len * 16])
            if len(ids) >= seq_len + 8:  # a margin so that the cut cannot change the first L tokens
                yield _row(unit, doc.name, ids, offsets, 0, seq_len, category)
                break


def _text_rows(units: list[Unit], tok: _Tok, seq_len: int, seed: int, category: str) -> Iterator[dict]:
    """Random L-token windows, one per document per pass; passes repeat (new windows) while rows are needed."""
    too_short: set[str] = set()
    encoded: dict[tuple[str, str], tuple[list[int], Any]] = {}  # documents drawn again in a later pass
    for rnd in range(1_000_000):
        drew = False
        for unit in seeded_order(units, seed + rnd * 7919, "text-unit", key=lambda u: u.key):
            if unit.key in too_short:
                continue
            rng = random.Random(stable_hash("window", seed, rnd, unit.key))
            docs = unit.documents()
            doc = docs[rng.randrange(len(docs))] if docs else None
            text = doc.read()[:MAX_DOC_CHARS] if doc else ""
            if len(text) <= seq_len:
                too_short.add(unit.key)
                continue
            if (unit.key, doc.name) not in encoded:
                encoded[unit.key, doc.name] = tok.encode(text)
            ids, offsets = encoded[unit.key, doc.name]
            if len(ids) <= seq_len:
                too_short.add(unit.key)
                continue
            drew = True
            yield _row(unit, doc.name, ids, offsets, rng.randrange(len(ids) - seq_len + 1), seq_len, category)
        if not drew:
            return


def _pools(kind: str, units: list[Unit], tok: _Tok, seq_len: int, seed: int) -> dict[str, Iterator[dict]]:
    # A 'local' set is the user's own data, used whole; the recipes never touch held-out code units.
    usable = units if kind == "local" else [u for u in units if not is_heldout(u)]
    code = {lang: [u for u in usable if u.category == lang] for lang in ("python", "java")}
    natural = [u for u in usable if u.category in NATURAL]
    pools: dict[str, Iterator[dict]] = {
        lang: _code_rows(code[lang], tok, seq_len, seed, lang) for lang in ("python", "java")
    }
    for topic in ("python", "java"):
        about = [u for u in natural if u.topic == topic] or natural
        pools[f"prose:{topic}"] = _text_rows(about, tok, seq_len, seed, "natural_language")
    general = [u for u in natural if u.category == "general"] or natural
    pools["text"] = _text_rows(general, tok, seq_len, seed, "natural_language")
    if kind == "local":
        pools["any"] = _local_rows(usable, tok, seq_len, seed)
    return pools


def _local_rows(units: list[Unit], tok: _Tok, seq_len: int, seed: int) -> Iterator[dict]:
    """Whatever a user's folder holds, interleaved: code units by their language, text units as windows."""
    iters = [
        _code_rows([u for u in units if u.category == lang], tok, seq_len, seed, lang)
        for lang in ("python", "java")
    ]
    iters.append(
        _text_rows([u for u in units if u.category in NATURAL], tok, seq_len, seed, "natural_language")
    )
    while iters:
        for it in list(iters):
            row = next(it, None)
            if row is None:
                iters.remove(it)
            else:
                yield row


def _shares(rows: list[dict]) -> tuple[dict[str, int], dict[str, float]]:
    counts = {"python": 0, "java": 0, "natural_language": 0}
    for r in rows:
        counts[r["category"]] += len(r["ids"])
    total = sum(counts.values()) or 1
    return counts, {k: round(v / total, 6) for k, v in counts.items()}


def _source_name(spec: str) -> str:
    """The `source` field rows of a spec carry (local paths are prefixed and expanded by local.py)."""
    if spec in BUILTIN or spec.startswith("hub:"):
        return spec
    return f"local:{Path(spec).expanduser()}"


def _source_summary(rows: list[dict], specs: Sequence[str]) -> list[dict]:
    out = []
    for spec in specs:
        name = _source_name(spec)
        mine = [r for r in rows if r["source"] == name]
        out.append(
            {
                "name": str(spec),
                "licence": LICENCES.get(str(spec), "as given by the user"),
                "rows": len(mine),
                "tokens": sum(r["tokens"] for r in mine),
                "units": len({r["unit"] for r in mine}),
            }
        )
    return out


def default_val_samples(samples: int) -> int:
    """Validation rows when the user names none: an eighth of the rows (16 of 128, as the AQLM reference's
    val_size/nsamples ratio of 128/1024), at least 1 once there are 2 rows, so any `--samples` works."""
    return 0 if samples < 2 else max(1, samples // 8)


def resolve_val_samples(samples: int, val_samples: int | None) -> int:
    """`val_samples`, or the default for `samples` when it is None."""
    return default_val_samples(samples) if val_samples is None else int(val_samples)


def build_calibration(
    kind: str,
    tokenizer: Any,
    *,
    samples: int = 128,
    seq_len: int = 512,
    val_samples: int | None = None,
    seed: int = 0,
    sources: Sequence[str] | None = None,
) -> CalibrationSet:
    """Draw `samples` rows of `seq_len` tokens by the `kind` recipe; the last `val_samples` rows are validation
    (None: `default_val_samples(samples)`)."""
    val_samples = resolve_val_samples(samples, val_samples)
    if kind not in (*CALIBRATION_KINDS, "local"):
        raise CodequantError(
            f"unknown calibration kind {kind!r}; use one of {', '.join(CALIBRATION_KINDS)} or a folder path"
        )
    if samples < 1 or seq_len < 2 or not 0 <= val_samples < samples:
        raise CodequantError(
            f"bad sizes samples={samples} seq_len={seq_len} val_samples={val_samples}: need "
            "samples >= 1, seq_len >= 2 and 0 <= val_samples < samples"
        )
    if kind == "local" and not sources:
        raise CodequantError("kind 'local' needs sources (a folder, .txt, .jsonl or .parquet)")
    specs = [str(s) for s in (sources or DEFAULT_SOURCES[kind])]
    units = load_units(specs)
    tok = _Tok(tokenizer)
    pools = _pools(kind, units, tok, seq_len, seed)
    cycle = ("any",) if kind == "local" else CYCLES[kind]
    rows = []
    for i in range(samples):
        want = cycle[i % len(cycle)]
        row = next(pools[want], None)
        if row is None:
            have = sum(1 for j in range(i) if cycle[j % len(cycle)] == want)
            raise CodequantError(
                f"{kind} calibration: sources {', '.join(specs)} gave only {have} '{want}' rows of {seq_len} tokens "
                f"({samples} rows needed); lower --samples or --seq-len, or add sources with --source"
            )
        if kind != "local" and row["category"] != "natural_language" and key_is_heldout(row["split_key"]):
            raise CodequantError(
                f"internal error: held-out code unit {row['split_key']} was drawn for calibration"
            )
        row["row"] = i
        row["split"] = "val" if i >= samples - val_samples else "train"
        rows.append(row)
    tokens = torch.tensor([r["ids"] for r in rows], dtype=torch.long)
    counts, shares = _shares(rows)
    for r in rows:
        r["tokens"] = len(r.pop("ids"))
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "samples": samples,
        "seq_len": seq_len,
        "val_samples": val_samples,
        "seed": seed,
        "tokenizer": tokenizer_identity(tokenizer),
        "token_counts": {
            "total": int(tokens.numel()),
            "train": (samples - val_samples) * seq_len,
            "val": val_samples * seq_len,
            **counts,
        },
        "shares": shares,
        "sources": _source_summary(rows, specs),
        "heldout_split": {
            "salt": HELDOUT_SALT,
            "fraction": 0.1,
            "excluded_units": sum(is_heldout(u) for u in units),
        },
        "rows": rows,
        "sha256": tokens_sha256(tokens),
    }
    return CalibrationSet(tokens, manifest)
