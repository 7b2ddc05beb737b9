"""Seeded mutation operators over Java source, found with tree-sitter: the Java twin of `mutations`.

The same eight kinds of bug as the Python operators (a wrong comparison, `&&` for `||`, an off-by-one, swapped
arguments, a wrong variable, an inverted or missing condition, a wrong return value), but a mutant is not a
re-rendered tree: it is a list of *edits* to the source text, each `(offset, length, replacement)`, where the
replacement is either short new text (`<=`, `!(`, `1`, a local's name) or `[offset, length]`, a span of the
original source moved elsewhere (swapped arguments). An edit list says what changed without quoting the code
around it, which is what the repair set may store (see `benchmarks.repair.java`: the HumanEval-X solutions are not ours to
ship). Offsets count characters of the mutated text (`source[start:]`, the canonical solution).

Sites are enumerated in a fixed order (pre-order over the tree, then by variant), so the same source always gives
the same list; `mutants` then shuffles them with a generator seeded by the caller (set version, task, operator).
A mutant whose text equals the original's or an earlier mutant's, or which no longer parses, is left out.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from codequant.benchmarks.build.mutations import Site  # the same site record as the Python operators
from codequant.benchmarks.repair.edits import Edit, Replacement, apply_edits

OPERATORS: tuple[str, ...] = (
    "comparison",
    "boolean",
    "off_by_one",
    "swapped_args",
    "wrong_variable",
    "negated_condition",
    "missing_condition",
    "wrong_return",
)

_COMPARE_SWAP = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
_NON_COMMUTATIVE = ("-", "/", "%")
# operands that may trade places without parentheses
_COMPOUND = (
    "binary_expression",
    "ternary_expression",
    "assignment_expression",
    "lambda_expression",
    "cast_expression",
    "instanceof_expression",
)
_INDEX_METHODS = {"get": 1, "charAt": 1, "substring": 2, "subList": 2}
_MAX_TEXT = 19  # a replacement longer than this would quote the code it was taken from


@dataclass(frozen=True)
class Mutant:
    site: Site
    change: str  # short, human-readable, quotes no more than an operator or a name: "`<` -> `<=`"
    edits: tuple[Edit, ...]
    text: str  # the mutated code (source[start:] with the edits applied)


@lru_cache(maxsize=1)
def _parser():
    import tree_sitter
    import tree_sitter_java

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_java.language()))


def parse(source: str):
    if not source.isascii():  # tree-sitter counts bytes; every HumanEval-X solution is ASCII
        raise ValueError("java_mutations handles ASCII sources only")
    return _parser().parse(source.encode())


def parses(source: str) -> bool:
    return not parse(source).root_node.has_error


def _text(n) -> str:
    return n.text.decode()


def _named(n) -> list:
    return [c for c in n.children if c.is_named and c.type not in ("line_comment", "block_comment")]


class _Ctx:
    """The parsed source and its mutable nodes (those starting at or after `start`), in pre-order."""

    def __init__(self, source: str, start: int) -> None:
        self.source, self.start = source, start
        self.nodes: list = []
        stack = [parse(source).root_node]
        while stack:
            n = stack.pop()
            if n.is_named and n.start_byte >= start:
                self.nodes.append(n)
            stack.extend(reversed(n.children))

    def edit(self, a: int, b: int, text: Replacement) -> Edit:
        """An edit replacing source[a:b], in offsets relative to `start`."""
        if isinstance(text, tuple):
            text = (text[0] - self.start, text[1])
        return Edit(a - self.start, b - a, text)


# ---- helpers ----


def _op(n) -> str | None:
    o = n.child_by_field_name("operator")
    return _text(o) if o is not None else None


def _int_value(n) -> int | None:
    if n.type == "decimal_integer_literal" and _text(n).isdigit():
        return int(_text(n))
    if n.type == "unary_expression" and _op(n) == "-":
        inner = n.child_by_field_name("operand")
        if inner is not None and inner.type == "decimal_integer_literal" and _text(inner).isdigit():
            return -int(_text(inner))
    return None


def _int_like(n) -> bool:
    """An expression that is an int when the code is right: a literal, a name, `x +/- k`, `size()`/`length()`."""
    if _int_value(n) is not None or n.type == "identifier":
        return True
    if n.type == "binary_expression" and _op(n) in ("+", "-"):
        return _int_value(n.child_by_field_name("right")) is not None
    if n.type == "method_invocation":
        name = n.child_by_field_name("name")
        return name is not None and _text(name) in ("size", "length")
    return n.type == "field_access" and _text(n.child_by_field_name("field")) == "length"


def _shift(ctx: _Ctx, n, delta: int) -> list[Edit]:
    """Edits turning expression `n` into `n + delta`, folding literals (`i - 1` +1 -> `i`, `0` +1 -> `1`)."""
    value = _int_value(n)
    if value is not None:
        return [ctx.edit(n.start_byte, n.end_byte, str(value + delta))]
    if n.type == "binary_expression" and _op(n) in ("+", "-"):
        right = n.child_by_field_name("right")
        k = _int_value(right)
        if k is not None:
            new = k * (1 if _op(n) == "+" else -1) + delta
            left = n.child_by_field_name("left")
            if new == 0:
                return [ctx.edit(left.end_byte, n.end_byte, "")]
            return [ctx.edit(left.end_byte, n.end_byte, f" {'+' if new > 0 else '-'} {abs(new)}")]
    return [ctx.edit(n.end_byte, n.end_byte, f" {'+' if delta > 0 else '-'} {abs(delta)}")]


@dataclass(frozen=True)
class _Local:
    name: str
    type: str
    start: int  # visible from here ...
    end: int  # ... to here (source offsets)


def _locals(method) -> list[_Local]:
    """Parameters and local variables of `method` with their declared type text and scope; lambda parameters
    are left out (like comprehension variables in the Python operators)."""
    found: list[_Local] = []
    body = method.child_by_field_name("body")
    if body is None:
        return found
    for p in _named(method.child_by_field_name("parameters")):
        if p.type == "formal_parameter":
            found.append(
                _Local(
                    _text(p.child_by_field_name("name")),
                    _text(p.child_by_field_name("type")),
                    body.start_byte,
                    body.end_byte,
                )
            )
    stack = [body]
    while stack:
        n = stack.pop()
        if n.type in ("lambda_expression", "class_body"):
            continue
        if n.type == "local_variable_declaration":
            scope = n.parent
            typ = _text(n.child_by_field_name("type"))
            for d in n.children_by_field_name("declarator"):
                found.append(_Local(_text(d.child_by_field_name("name")), typ, d.end_byte, scope.end_byte))
        elif n.type == "enhanced_for_statement":
            found.append(
                _Local(
                    _text(n.child_by_field_name("name")),
                    _text(n.child_by_field_name("type")),
                    n.child_by_field_name("body").start_byte,
                    n.end_byte,
                )
            )
        elif n.type == "catch_formal_parameter":
            typ = next((c for c in n.named_children if c.type == "catch_type"), None)
            name = n.child_by_field_name("name")
            if typ is not None and name is not None:
                found.append(_Local(_text(name), _text(typ), n.end_byte, n.parent.end_byte))
        stack.extend(n.children)
    return found


def _method_of(n):
    while n is not None and n.type not in ("method_declaration", "constructor_declaration"):
        if n.type == "lambda_expression":
            return None
        n = n.parent
    return n


def _visible(method, at: int) -> list[_Local]:
    return [x for x in _locals(method) if x.start <= at < x.end]


def _use_of_local(n):
    """(method, the local) when identifier `n` reads a local or parameter, else None."""
    parent = n.parent
    if n.type != "identifier" or parent is None:
        return None
    if parent.type in ("method_invocation", "field_access") and parent.child_by_field_name("name") == n:
        return None
    if parent.type == "field_access" and parent.child_by_field_name("field") == n:
        return None
    if (
        parent.type
        in ("variable_declarator", "formal_parameter", "enhanced_for_statement", "catch_formal_parameter")
        and parent.child_by_field_name("name") == n
    ):
        return None
    if parent.type == "assignment_expression" and parent.child_by_field_name("left") == n:
        return None
    if (
        parent.type == "update_expression"
        or parent.type.endswith("_type")
        or parent.type == "lambda_expression"
    ):
        return None
    method = _method_of(n)
    if method is None:
        return None
    visible = [x for x in _visible(method, n.start_byte) if x.name == _text(n)]
    return (method, visible[-1]) if visible else None


def _same_type_others(method, local: _Local, at: int) -> list[str]:
    names = []
    for x in _visible(method, at):
        if x.type == local.type and x.name != local.name and x.name not in names and len(x.name) <= _MAX_TEXT:
            names.append(x.name)
    return names


# ---- sites: fn(ctx) -> (site, change, edits) ----

Found = Iterator[tuple[Site, str, list[Edit]]]


def _comparison(ctx: _Ctx) -> Found:
    for i, n in enumerate(ctx.nodes):
        if n.type == "binary_expression" and _op(n) in _COMPARE_SWAP:
            o = n.child_by_field_name("operator")
            new = _COMPARE_SWAP[_text(o)]
            yield (
                Site("comparison", i, new),
                f"`{_text(o)}` -> `{new}`",
                [ctx.edit(o.start_byte, o.end_byte, new)],
            )


def _boolean(ctx: _Ctx) -> Found:
    for i, n in enumerate(ctx.nodes):
        if n.type == "binary_expression" and _op(n) in ("&&", "||"):
            o = n.child_by_field_name("operator")
            new = "||" if _text(o) == "&&" else "&&"
            yield (
                Site("boolean", i, "flip"),
                f"`{_text(o)}` -> `{new}`",
                [ctx.edit(o.start_byte, o.end_byte, new)],
            )


def _off_by_one(ctx: _Ctx) -> Found:
    for i, n in enumerate(ctx.nodes):
        slots: list[tuple[str, object]] = []
        if n.type == "for_statement":
            init = n.child_by_field_name("init")
            if init is not None and init.type == "local_variable_declaration":
                for d in init.children_by_field_name("declarator"):
                    v = d.child_by_field_name("value")
                    if v is not None and _int_like(v):
                        slots.append(("init", v))
            cond = n.child_by_field_name("condition")
            if cond is not None and cond.type == "binary_expression" and _op(cond) in ("<", "<=", ">", ">="):
                right = cond.child_by_field_name("right")
                if _int_like(right):
                    slots.append(("bound", right))
        elif n.type == "array_access" and _int_like(n.child_by_field_name("index")):
            slots.append(("index", n.child_by_field_name("index")))
        elif n.type == "method_invocation" and _text(n.child_by_field_name("name")) in _INDEX_METHODS:
            args = _named(n.child_by_field_name("arguments"))
            wanted = _INDEX_METHODS[_text(n.child_by_field_name("name"))]
            slots += [(f"arg{j}", a) for j, a in enumerate(args[:wanted]) if _int_like(a)]
        for slot, node in slots:
            for delta in (1, -1):
                yield (
                    Site("off_by_one", i, f"{slot}{delta:+d}"),
                    f"{slot} {delta:+d}",
                    _shift(ctx, node, delta),
                )


def _swapped_args(ctx: _Ctx) -> Found:
    for i, n in enumerate(ctx.nodes):
        if n.type == "argument_list":
            args = _named(n)
            for j in range(len(args) - 1):
                a, b = args[j], args[j + 1]
                if _text(a) != _text(b):
                    yield (
                        Site("swapped_args", i, str(j)),
                        f"arguments {j + 1} and {j + 2} swapped",
                        [
                            ctx.edit(a.start_byte, a.end_byte, (b.start_byte, b.end_byte - b.start_byte)),
                            ctx.edit(b.start_byte, b.end_byte, (a.start_byte, a.end_byte - a.start_byte)),
                        ],
                    )
        elif n.type == "binary_expression" and _op(n) in _NON_COMMUTATIVE:
            a, b = n.child_by_field_name("left"), n.child_by_field_name("right")
            if a.type not in _COMPOUND and b.type not in _COMPOUND and _text(a) != _text(b):
                yield (
                    Site("swapped_args", i, "operands"),
                    f"operands of `{_op(n)}` swapped",
                    [
                        ctx.edit(a.start_byte, a.end_byte, (b.start_byte, b.end_byte - b.start_byte)),
                        ctx.edit(b.start_byte, b.end_byte, (a.start_byte, a.end_byte - a.start_byte)),
                    ],
                )


def _wrong_variable(ctx: _Ctx) -> Found:
    for i, n in enumerate(ctx.nodes):
        use = _use_of_local(n) if n.type == "identifier" else None
        if use is None:
            continue
        method, local = use
        for other in _same_type_others(method, local, n.start_byte):
            yield (
                Site("wrong_variable", i, other),
                f"`{local.name}` -> `{other}`",
                [ctx.edit(n.start_byte, n.end_byte, other)],
            )


def _negated_condition(ctx: _Ctx) -> Found:
    for i, n in enumerate(ctx.nodes):
        if n.type == "if_statement":
            cond = n.child_by_field_name("condition")
            inner = _named(cond)
            if len(inner) != 1:
                continue
            c = inner[0]
            if c.type == "unary_expression" and _op(c) == "!":
                o = c.child_by_field_name("operator")
                yield (
                    Site("negated_condition", i, "test"),
                    "`!` removed",
                    [ctx.edit(o.start_byte, o.end_byte, "")],
                )
            else:
                yield (
                    Site("negated_condition", i, "test"),
                    "condition negated",
                    [ctx.edit(c.start_byte, c.start_byte, "!("), ctx.edit(c.end_byte, c.end_byte, ")")],
                )
        elif n.type == "ternary_expression":
            c = n.child_by_field_name("condition")
            yield (
                Site("negated_condition", i, "test"),
                "condition negated",
                [ctx.edit(c.start_byte, c.start_byte, "!("), ctx.edit(c.end_byte, c.end_byte, ")")],
            )


def _missing_condition(ctx: _Ctx) -> Found:
    for i, n in enumerate(ctx.nodes):
        if n.type == "if_statement":
            cons, alt = n.child_by_field_name("consequence"), n.child_by_field_name("alternative")
            if alt is not None:  # the special case is forgotten: only the else branch is left
                yield (
                    Site("missing_condition", i, "drop_if"),
                    "if branch dropped",
                    [ctx.edit(n.start_byte, alt.start_byte, "")],
                )
            elif n.parent is not None and n.parent.type == "block":
                yield (
                    Site("missing_condition", i, "drop_if"),
                    "if statement dropped",
                    [ctx.edit(n.start_byte, n.end_byte, "")],
                )
            # the guard is forgotten: the body always runs
            edits = [ctx.edit(n.start_byte, cons.start_byte, "")]
            if alt is not None:
                edits.append(ctx.edit(cons.end_byte, n.end_byte, ""))
            yield Site("missing_condition", i, "always"), "guard dropped", edits
        elif n.type == "binary_expression" and _op(n) in ("&&", "||"):
            a, b = n.child_by_field_name("left"), n.child_by_field_name("right")
            yield (
                Site("missing_condition", i, "left"),
                f"left operand of `{_op(n)}` dropped",
                [ctx.edit(a.start_byte, b.start_byte, "")],
            )
            yield (
                Site("missing_condition", i, "right"),
                f"right operand of `{_op(n)}` dropped",
                [ctx.edit(a.end_byte, b.end_byte, "")],
            )


def _wrong_return(ctx: _Ctx) -> Found:
    for i, n in enumerate(ctx.nodes):
        if n.type != "return_statement":
            continue
        values = _named(n)
        if len(values) != 1:
            continue
        v = values[0]
        if v.type in ("true", "false"):
            new = "false" if v.type == "true" else "true"
            yield (
                Site("wrong_return", i, "not"),
                f"`{_text(v)}` -> `{new}`",
                [ctx.edit(v.start_byte, v.end_byte, new)],
            )
        elif _int_value(v) is not None:
            for delta in (1, -1):
                yield (
                    Site("wrong_return", i, f"{delta:+d}"),
                    f"returned value {delta:+d}",
                    _shift(ctx, v, delta),
                )
        elif v.type == "identifier":
            use = _use_of_local(v)
            if use is not None:
                method, local = use
                for other in _same_type_others(method, local, v.start_byte):
                    yield (
                        Site("wrong_return", i, f"name.{other}"),
                        f"returns `{other}`, not `{local.name}`",
                        [ctx.edit(v.start_byte, v.end_byte, other)],
                    )


_SITES: dict[str, Callable[[_Ctx], Found]] = {
    "comparison": _comparison,
    "boolean": _boolean,
    "off_by_one": _off_by_one,
    "swapped_args": _swapped_args,
    "wrong_variable": _wrong_variable,
    "negated_condition": _negated_condition,
    "missing_condition": _missing_condition,
    "wrong_return": _wrong_return,
}


def mutants(source: str, start: int, operator: str, seed: str | None = None) -> list[Mutant]:
    """The mutants of `operator` in `source[start:]` (`source` is a whole compilation unit, so that it parses;
    only nodes starting at or after `start` are touched), in site order, or shuffled by `random.Random(seed)`."""
    if operator not in _SITES:
        raise ValueError(f"unknown mutation operator {operator!r}")
    ctx = _Ctx(source, start)
    original = source[start:]
    seen = {original}
    out = []
    for site, change, edits in _SITES[operator](ctx):
        if any(isinstance(e.text, str) and len(e.text) > _MAX_TEXT for e in edits):
            continue
        text = apply_edits(original, edits)
        if text in seen or not parses(source[:start] + text):
            continue
        seen.add(text)
        out.append(Mutant(site, change, tuple(edits), text))
    return random.Random(seed).sample(out, len(out)) if seed is not None else out
