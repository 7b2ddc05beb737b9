"""Progress bars: log lines when the output is not a terminal, one shared rich display when it is, none when off."""

import io

import pytest

from codequant import progress
from codequant.progress import Bar, track


def test_lines_mode_prints_a_line_per_tenth_and_a_final_line(monkeypatch):
    monkeypatch.setenv("CODEQUANT_PROGRESS", "lines")
    monkeypatch.setattr(progress, "LINE_MIN_S", 0.0)
    out = io.StringIO()
    with Bar(100, "quantize", unit="block", stream=out) as b:
        for i in range(100):
            b.set_info(f"mse {i}")
            b.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # 9 intermediate lines (10..90) and the final one
    assert lines[0].startswith("quantize: 10/100 block (10%) in ") and lines[0].endswith("mse 9")
    assert lines[-1].startswith("quantize: done 100/100 block (100%)")


def test_lines_are_throttled_in_time(monkeypatch):
    monkeypatch.setenv("CODEQUANT_PROGRESS", "lines")
    out = io.StringIO()
    with Bar(1000, "exec", stream=out) as b:
        b.update(1000)  # fast: no intermediate line within LINE_MIN_S, only the final one
    assert out.getvalue().count("\n") == 1


def test_off_and_disabled_print_nothing(monkeypatch, capsys):
    monkeypatch.setenv("CODEQUANT_PROGRESS", "off")
    assert list(track(range(3), "x")) == [0, 1, 2]
    monkeypatch.setenv("CODEQUANT_PROGRESS", "lines")
    assert list(track(range(3), "x", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("CODEQUANT_PROGRESS", "loud")
    with pytest.raises(ValueError, match="CODEQUANT_PROGRESS"):
        progress.mode()


def test_rich_bars_nest_in_one_display(monkeypatch):
    monkeypatch.setenv("CODEQUANT_PROGRESS", "rich")
    outer = Bar(2, "evaluate")
    inner = Bar(3, "exec", leave=False)
    assert progress._Shared.progress is not None and progress._Shared.open_bars == 2
    inner.update(3)
    inner.close()
    outer.update(2)
    assert [t.completed for t in progress._Shared.progress.tasks] == [2]
    outer.close()
    outer.close()  # closing twice is harmless
    assert progress._Shared.progress is None and progress._Shared.open_bars == 0
