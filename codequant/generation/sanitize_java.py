"""The evalplus-style sanitiser for Java answers (see `codequant.generation.sanitize`), on tree-sitter-java.

Kept: every import; the class that declares the entry method, with only the members (methods, fields, nested
types) the entry method reaches by name, transitively; other top-level types it names. Dropped: `main` and every
other unreached member, demo classes, stray statements. An answer without a class that declares the entry
method (a bare body, a lone method) is returned as is: the program builder already knows those shapes.
"""

from __future__ import annotations

from functools import cache

from codequant.generation.sanitize import register_sanitizer

_TYPES = ("class_declaration", "interface_declaration", "enum_declaration", "record_declaration")
_NAMES = ("identifier", "type_identifier")


@cache
def _parser():
    import tree_sitter_java
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_java.language()))


def _text(src: bytes, node) -> str:
    return src[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def _member_names(src: bytes, node) -> list[str]:
    if node.type in ("method_declaration", *_TYPES):
        name = node.child_by_field_name("name")
        return [_text(src, name)] if name is not None else []
    if node.type in ("field_declaration", "constant_declaration"):
        return [
            _text(src, d.child_by_field_name("name"))
            for d in node.children
            if d.type == "variable_declarator" and d.child_by_field_name("name") is not None
        ]
    return []


def _used(src: bytes, node) -> set[str]:
    found, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n.type in _NAMES:
            found.add(_text(src, n))
        stack.extend(n.children)
    return found


def _reach(src: bytes, named: dict[str, list], start: str) -> set[int]:
    keep: set[int] = set()
    todo, seen = [start], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in named.get(name, []):
            keep.add(node.id)
            todo.extend(_used(src, node) - seen)
    return keep


def sanitize_java(code: str, entry_point: str) -> str:
    src = code.encode("utf-8")
    root = _parser().parse(src).root_node
    tops = [n for n in root.children if n.type in _TYPES]
    owner = None
    for cls in tops:
        body = cls.child_by_field_name("body")
        if body is not None and any(
            m.type == "method_declaration" and entry_point in _member_names(src, m) for m in body.children
        ):
            owner = cls
            break
    if owner is None:
        return code
    body = owner.child_by_field_name("body")
    members = [m for m in body.children if m.type not in ("{", "}")]
    named: dict[str, list] = {}
    for node in members + [t for t in tops if t is not owner]:
        for name in _member_names(src, node):
            named.setdefault(name, []).append(node)
    named.pop("main", None)
    keep = _reach(src, named, entry_point)
    imports = [
        _text(src, n) for n in root.children if n.type == "import_declaration"
    ]  # a package would move it
    header = src[owner.start_byte : body.start_byte].decode("utf-8", errors="replace").rstrip()
    kept_members = ["    " + _text(src, m) for m in members if m.id in keep]
    others = [_text(src, t) for t in tops if t is not owner and t.id in keep]
    parts = ["\n".join(imports)] if imports else []
    parts.append(header + " {\n" + "\n\n".join(kept_members) + "\n}")
    parts += others
    return "\n\n".join(parts) + "\n"


register_sanitizer("java", sanitize_java)
