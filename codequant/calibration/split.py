"""The fixed calibration / held-out split of code units, so perplexity never reads what calibration saw.

A unit is held out when a hash of its language and id (not its source, not the seed) falls in the held-out tenth:
the same package is held out whatever the seed, the set size or the source listing it (stdlib code and its
pydoc prose, a JDK package and its Javadoc, share the key), so no seed can leak a held-out file into a set.
"""

from __future__ import annotations

from codequant.calibration.units import Unit, stable_hash
from codequant.errors import CodequantError

HELDOUT_SALT = "codequant-heldout-v1"
HELDOUT_BUCKETS = 10  # 1 of 10 buckets is held out


def split_key(unit: Unit) -> str:
    language = unit.category if unit.category in ("python", "java") else (unit.topic or unit.category)
    return f"{language}:{unit.id}"


def key_is_heldout(key: str) -> bool:
    return stable_hash(HELDOUT_SALT, key) % HELDOUT_BUCKETS == 0


def is_heldout(unit: Unit) -> bool:
    """General text (Random's books) is never held out: held-out data is code, plus the prose of held-out packages."""
    return unit.category != "general" and key_is_heldout(split_key(unit))


def check_disjoint(calibration_rows: list[dict], heldout_rows: list[dict]) -> None:
    """Raise if a package/repository or a file appears both in calibration rows and in held-out rows."""
    cal_units = {r["split_key"] for r in calibration_rows if r.get("split_key")}
    cal_files = {(r["source"], r["file"]) for r in calibration_rows}
    units = cal_units & {r["split_key"] for r in heldout_rows}
    files = cal_files & {(r["source"], r["file"]) for r in heldout_rows}
    if units or files:
        raise CodequantError(
            f"held-out code overlaps calibration: units {sorted(units)[:5]}, files {sorted(files)[:5]}"
        )
