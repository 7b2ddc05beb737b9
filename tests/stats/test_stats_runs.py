"""Per-completion CSVs: pairing by the sample column, by order without one, and pass values that mean something."""

import csv
import random

import pytest

from codequant.errors import CodequantError
from codequant.stats.compare import compare_csv
from codequant.stats.runs import read_outcome_table

HEADER = ["model", "quantization", "language", "problem", "sample", "pass"]


def _rows():
    rng = random.Random(0)
    rows = []
    for quant, rate in (("16bit", 0.7), ("4bit", 0.6), ("2bit", 0.3)):
        for p in range(12):
            for s in range(5):
                rows.append(
                    {
                        "model": "m",
                        "quantization": quant,
                        "language": "py",
                        "problem": f"P{p}",
                        "sample": s,
                        "pass": int(rng.random() < rate),
                    }
                )
    return rows


def _write(path, rows, columns=HEADER):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _summary(rows):
    return sorted((r.other, r.b, r.c, r.p_value, r.p_mcnemar) for r in rows)


def test_sample_column_pairs_by_key_whatever_the_row_order(tmp_path):
    rows = _rows()
    ordered = compare_csv(_write(tmp_path / "a.csv", rows), "16bit")
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    again = compare_csv(_write(tmp_path / "b.csv", shuffled), "16bit")
    assert _summary(again) == _summary(ordered)
    assert {r.pairing_key for r in again} == {"sample"}
    # the shuffle does matter without the column: the pairs are then made by row order
    no_key = compare_csv(_write(tmp_path / "c.csv", shuffled, [c for c in HEADER if c != "sample"]), "16bit")
    assert {r.pairing_key for r in no_key} == {"order"} and _summary(no_key) != _summary(ordered)


def test_without_sample_column_a_stable_resort_by_another_column_changes_nothing(tmp_path):
    rows = _rows()
    columns = [c for c in HEADER if c != "sample"]
    plain = compare_csv(_write(tmp_path / "a.csv", rows, columns), "16bit")
    by_pass = sorted(rows, key=lambda r: (r["quantization"], -r["pass"]))  # scrambles rows of one problem...
    resorted = sorted(
        rows, key=lambda r: r["problem"]
    )  # ...this one keeps each problem's order (stable sort)
    assert _summary(compare_csv(_write(tmp_path / "b.csv", resorted, columns), "16bit")) == _summary(plain)
    assert _summary(compare_csv(_write(tmp_path / "c.csv", by_pass, columns), "16bit")) != _summary(plain)
    assert _summary(plain) == _summary(compare_csv(_write(tmp_path / "d.csv", rows), "16bit"))


def test_duplicated_and_missing_keys_are_one_clear_error(tmp_path):
    rows = _rows()
    dup = rows + [dict(rows[3])]
    with pytest.raises(CodequantError, match=r"1 completion\(s\) twice .*m/16bit/py/P0/3"):
        read_outcome_table(_write(tmp_path / "dup.csv", dup))
    missing = [
        r for r in rows if not (r["quantization"] == "4bit" and r["problem"] == "P2" and r["sample"] == 4)
    ]
    with pytest.raises(CodequantError, match="different completions"):
        compare_csv(_write(tmp_path / "missing.csv", missing), "16bit")
    bad = [dict(rows[0], sample="x")] + rows[1:]
    with pytest.raises(CodequantError, match="not an integer"):
        read_outcome_table(_write(tmp_path / "bad.csv", bad))


@pytest.mark.parametrize("value", ["nan", "", "NA", "0.5", "2"])
def test_nan_and_other_non_outcomes_are_errors_not_passes(tmp_path, value):
    rows = _rows()
    rows[7]["pass"] = value
    with pytest.raises(CodequantError, match=r":9: pass value .* is neither pass nor fail"):
        read_outcome_table(_write(tmp_path / "nan.csv", rows))


def test_spelled_outcomes_are_read(tmp_path):
    rows = _rows()[:4]
    for r, v in zip(rows, ["True", "fail", "1.0", "0"], strict=True):
        r["pass"] = v
    table = read_outcome_table(_write(tmp_path / "s.csv", rows))
    assert table.groups[("m", "16bit", "py")]["P0"] == {0: True, 1: False, 2: True, 3: False}
