"""Data flows one way (README "Layout"): no package imports one above it, and no module imports another module's
private name. Read from the source with `ast`, so every import counts: at module level, inside functions, under
`TYPE_CHECKING`, and the lazy `"module:function"` strings that registries import by name.

A failure prints each offending edge as `file:line  from -> to` with the reason.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "codequant"

# Bottom to top. A module belongs to the longest prefix listed; it may import its own layer's package and any
# layer below. The base modules are shared utilities that anyone may import (they import only each other).
BASE = (
    "codequant",
    "codequant.errors",
    "codequant.seeds",
    "codequant.cache",
    "codequant.devices",
    "codequant.progress",
    "codequant.java_source",
)
LAYERS: tuple[tuple[str, ...], ...] = (
    BASE,
    ("codequant.models",),
    ("codequant.calibration",),
    ("codequant.quant",),
    ("codequant.benchmarks",),  # problems, loaders, translation, program assembly (not build/, see below)
    ("codequant.generation",),
    ("codequant.metrics",),  # pass@k, perplexity, text scores, inference speed (runs the generation engine)
    ("codequant.finetune",),  # keep-best scores held-out perplexity (metrics)
    ("codequant.sandbox",),
    (
        "codequant.failures",
    ),  # classifies sandbox results; the Java classes come from the sandbox's javatuples
    ("codequant.evaluation",),  # generate -> sandbox -> classify -> pass@k
    (
        "codequant.benchmarks.build",
    ),  # build time only: bug operators and repair-set builders (run the sandbox)
    ("codequant.stats",),
    ("codequant.study",),
    ("codequant.report",),
    ("codequant.cli",),
)
_LAZY = re.compile(
    r"^(codequant(?:\.\w+)+):(\w+)$"
)  # "codequant.benchmarks.sources.humaneval:load_humaneval"


@dataclass(frozen=True)
class Edge:
    file: str  # relative to the repository: codequant/models/loader.py
    line: int
    source: str  # importing module
    target: str  # imported module
    name: str | None = None  # the imported name, for `from target import name` and `target.name`
    by_name: bool = False  # a registry's lazy "module:function" string, not an import statement

    def __str__(self) -> str:
        shown = f"{self.target}.{self.name}" if self.name else self.target
        return f"{self.file}:{self.line}  {self.source} -> {shown}"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that `name` starts with (`a.b.c` for `a.b.c.func`)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _private(name: str | None) -> bool:
    return bool(name) and name.startswith("_") and not name.startswith("__")


def _from_base(node: ast.ImportFrom, package: str) -> str:
    """The module a `from ... import` reads from, relative imports resolved against `package`."""
    if not node.level:
        return node.module or ""
    head = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(head + ([node.module] if node.module else []))


def _module_edges(
    tree: ast.Module, source: str, package: str, path: str, known: dict[str, Path], bound: dict[str, str]
) -> list[Edge]:
    """Import statements and lazy strings of one module; fills `bound` (local name -> module it names)."""
    top, out = source.split(".")[0], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in (a for a in node.names if a.name.split(".")[0] == top):
                out.append(Edge(path, node.lineno, source, _resolve(alias.name, known) or alias.name))
                local = alias.asname or alias.name.split(".")[0]  # `import a.b` binds `a`
                bound[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and (base := _from_base(node, package)).split(".")[0] == top:
            for alias in node.names:
                if f"{base}.{alias.name}" in known:  # a submodule
                    out.append(Edge(path, node.lineno, source, f"{base}.{alias.name}"))
                    bound[alias.asname or alias.name] = f"{base}.{alias.name}"
                else:
                    out.append(Edge(path, node.lineno, source, _resolve(base, known) or base, alias.name))
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := _LAZY.match(node.value))
        ):
            if target := _resolve(m.group(1), known):
                out.append(Edge(path, node.lineno, source, target, m.group(2), by_name=True))
    return out


def _private_reads(
    tree: ast.Module, source: str, path: str, known: dict[str, Path], bound: dict[str, str]
) -> list[Edge]:
    """`module._name` reads through a name bound to another module (`import a.b as m; m._x`, `a.b._x`)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and (dotted := _dotted(node.value)):
            first, _, rest = dotted.partition(".")
            target = ".".join(filter(None, (bound.get(first), rest)))
            if first in bound and target in known:
                out.append(Edge(path, node.lineno, source, target, node.attr))
    return out


def edges(root: Path) -> list[Edge]:
    """Every import edge between modules of `root`'s package, with the imported name where there is one."""
    known = modules(root)
    out: list[Edge] = []
    for source, file in known.items():
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        package = source if file.name == "__init__.py" else source.rpartition(".")[0]
        path, bound = file.relative_to(root.parent).as_posix(), {}
        out += _module_edges(tree, source, package, path, known, bound)
        out += _private_reads(tree, source, path, known, bound)
    return out


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def layer(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> tuple[int, str]:
    """(index of the layer, the prefix that placed it there), by the longest listed prefix."""
    best = (-1, "")
    for i, prefixes in enumerate(layers):
        for p in prefixes:
            inside = module == p or ("." in p and module.startswith(p + "."))  # the root package: itself only
            if inside and len(p) > len(best[1]):
                best = (i, p)
    if best[0] < 0:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS and to README's Layout")
    return best


def violations(found: list[Edge], layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """One line per edge that runs up the layers, or that takes another module's private name."""
    bad = []
    for e in found:
        if e.source == e.target:
            continue
        (src, src_pkg), (dst, dst_pkg) = layer(e.source, layers), layer(e.target, layers)
        if dst > src:
            bad.append(f"{e}  ({dst_pkg} is above {src_pkg})")
        elif dst == src and src_pkg != dst_pkg and src > 0:
            bad.append(f"{e}  ({dst_pkg} is beside {src_pkg}, not below it)")
        if _private(e.name):
            bad.append(f"{e}  (private name of another module)")
    return bad


def test_no_package_imports_one_above_it_and_no_private_names_cross_modules():
    found = edges(ROOT)
    assert len(found) > 300  # the walk saw the tree
    bad = violations(found)
    assert not bad, "imports against the data flow (README Layout):\n" + "\n".join(bad)


def readme_layout() -> list[str]:
    """The paths README's "Layout" lists, one a line, in its order (`codequant/models`, `codequant/cli.py`)."""
    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^ {4}(codequant/[\w/.]+)", layout, re.MULTILINE)


def test_every_module_has_a_layer_and_readme_lists_the_packages_in_layer_order():
    for name in modules(ROOT):
        layer(name)
    shown = readme_layout()
    for path in shown:
        assert (ROOT.parent / path).exists(), f"README's Layout lists {path}, which is not in the tree"
    packages = [p.parent for p in ROOT.glob("*/__init__.py")] + [
        p.parent for p in ROOT.glob("benchmarks/*/__init__.py")
    ]
    for pkg in packages:
        rel = pkg.relative_to(ROOT.parent).as_posix()
        assert rel in shown, f"README's Layout does not list {rel}"
    dotted = [path.removesuffix(".py").replace("/", ".") for path in shown]
    ranks = [layer(d)[0] for d in dotted]
    assert ranks == sorted(ranks), (
        f"README's Layout lists the packages in another order than LAYERS: {dotted}"
    )


def test_no_loader_imports_the_build_time_code():
    """benchmarks.build (bug operators over tree-sitter, repair-set builders that run the sandbox) is never
    imported below it: loading a benchmark needs neither tree-sitter nor the sandbox."""
    importers = {e.source for e in edges(ROOT) if e.target.startswith("codequant.benchmarks.build")}
    assert importers <= {m for m in modules(ROOT) if m.startswith("codequant.benchmarks.build")} | {
        "codequant.cli"
    }


# Cycles that are the point of their design: a module registers itself with a dispatcher that imports it lazily
# (the Java sanitizer), and the executor factory imports the executor modules, which take their types from it.
ALLOWED_CYCLES = (
    frozenset({"codequant.generation.sanitize", "codequant.generation.sanitize_java"}),
    frozenset(
        {
            "codequant.study.executors",
            "codequant.study.executors.local",
            "codequant.study.executors.ray",
            "codequant.study.executors.slurm",
        }
    ),
)


def cycles(found: list[Edge]) -> list[set[str]]:
    """Groups of modules that import each other in a circle (strongly connected, more than one module), over the
    import statements at any level; a registry's lazy strings are not imports and do not count."""
    graph: dict[str, set[str]] = {}
    for e in found:
        if e.source != e.target and not e.by_name:
            graph.setdefault(e.source, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while (w := stack.pop()) != v:
                group.add(w)
            if group:
                out.append(group | {v})

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_but_the_registrations():
    found = edges(ROOT)
    bad = [group for group in cycles(found) if frozenset(group) not in ALLOWED_CYCLES]
    lines = [str(e) for group in bad for e in found if e.source in group and e.target in group]
    assert not bad, "modules importing each other in a circle:\n" + "\n".join(lines)


# ---- the checker itself, on a small tree with known faults ----


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "codequant"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


TOY_LAYERS = (("codequant", "codequant.errors"), ("codequant.low",), ("codequant.high",))


def test_the_checker_finds_back_edges_at_any_depth_and_private_names(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "low/__init__.py": "",
            "high/__init__.py": "",
            "low/a.py": (
                "from typing import TYPE_CHECKING\nimport codequant.low.b as bee\n"
                "if TYPE_CHECKING:\n    from codequant.high import h\n"
                "def f():\n    from codequant.high.h import thing\n    return bee._hidden\n"
                "LOADER = 'codequant.high.h:make'\n"
                "import codequant.low.b\nSEEN = codequant.low.b._hidden\n"
            ),
            "low/b.py": "from codequant.errors import *\n_hidden = 1\n",
            "high/h.py": "from codequant.low.b import _hidden\nfrom codequant.low import a\nthing = a\ndef make(): ...\n",
        },
    )
    bad = violations(edges(root), TOY_LAYERS)
    text = "\n".join(bad)
    assert "low/a.py:4  codequant.low.a -> codequant.high.h" in text  # under TYPE_CHECKING
    assert "low/a.py:6  codequant.low.a -> codequant.high.h.thing" in text  # inside a function
    assert "low/a.py:8  codequant.low.a -> codequant.high.h.make" in text  # a lazy "module:function" string
    assert "low/a.py:7  codequant.low.a -> codequant.low.b._hidden  (private name" in text
    assert "high/h.py:1  codequant.high.h -> codequant.low.b._hidden  (private name" in text
    assert (
        "low/a.py:10  codequant.low.a -> codequant.low.b._hidden  (private name" in text
    )  # `import a.b`; a.b._x
    assert len(bad) == 6  # high -> low and low -> errors are fine


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/types.py": "def f():\n    from codequant.low import rules\n",
            "low/rules.py": "from codequant.low.types import f\n",
            "low/leaf.py": "import codequant.low.rules\n",
        },
    )
    assert cycles(edges(root)) == [{"codequant.low.types", "codequant.low.rules"}]


def test_a_package_beside_another_in_its_layer_is_not_importable(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "",
            "b/__init__.py": "from codequant.a import x\n",
            "a/x.py": "",
        },
    )
    assert violations(edges(root), (("codequant",), ("codequant.a", "codequant.b"))) == [
        "codequant/b/__init__.py:1  codequant.b -> codequant.a.x  (codequant.a is beside codequant.b, not below it)"
    ]
    with pytest.raises(AssertionError, match="is in no layer"):
        violations(edges(root), (("codequant",), ("codequant.a",)))
