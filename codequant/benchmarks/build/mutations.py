"""Seeded mutation operators over a Python function: the kinds of bug people actually write.

A program-repair problem needs a buggy function whose bug is small, local and plausible, not a random edit. Each
operator below is one such kind (a wrong comparison, `and` for `or`, an off-by-one, swapped arguments, a wrong
variable, an inverted or missing condition, a wrong return value). An operator enumerates every place (a *site*)
where it applies, in a fixed order (pre-order over the AST), so the same function always yields the same list;
the build then draws from that list with a generator seeded by (set version, task, operator), so which mutant a
task gets depends on nothing else (not on other tasks, not on dict or hash order).

Only the statements of `mutable` (the canonical solution's part of the body, not the prompt's docstring) are
touched. A mutant is re-rendered with `ast.unparse`, which drops comments and normalises formatting: compare a
mutant with `unparse_body` of the original, not with the original text.
"""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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

_COMPARE_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_NON_COMMUTATIVE = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(frozen=True)
class Site:
    """One mutation: `operator` applied to the node at `index` (pre-order over the mutable statements) as
    `variant` says (the new operator, the replacing name, "+1", "drop", ...)."""

    operator: str
    index: int
    variant: str


@dataclass(frozen=True)
class Mutant:
    site: Site
    change: str  # human-readable: "`if i < n:` -> `if i <= n:`"
    body: str  # the mutated statements, unparsed, indented as a function body


def walk(stmts: list[ast.stmt]) -> list[ast.AST]:
    """Every node under `stmts`, pre-order, children in field order: the same list for equal trees."""
    out: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for s in stmts:
        visit(s)
    return out


def _parents(stmts: list[ast.stmt], holder: ast.AST) -> dict[int, tuple[ast.AST, str, int | None]]:
    """id(node) -> (parent, field, position in the field's list or None); `holder` owns `stmts` as `.body`."""
    found: dict[int, tuple[ast.AST, str, int | None]] = {
        id(s): (holder, "body", i) for i, s in enumerate(stmts)
    }
    for node in walk(stmts):
        for name, value in ast.iter_fields(node):
            if isinstance(value, list):
                found.update({id(v): (node, name, i) for i, v in enumerate(value) if isinstance(v, ast.AST)})
            elif isinstance(value, ast.AST):
                found[id(value)] = (node, name, None)
    return found


def unparse_body(stmts: list[ast.stmt]) -> str:
    """`stmts` rendered as the body of a function (4-space indent, trailing newline)."""
    holder = ast.parse("def f():\n    pass\n").body[0]
    holder.body = stmts or [ast.Pass()]
    return ast.unparse(ast.fix_missing_locations(holder)).split("\n", 1)[1] + "\n"


def function_locals(fn: ast.FunctionDef) -> list[str]:
    """Names bound in the function's own scope (parameters and assignment/loop/with/except targets), sorted;
    comprehension variables and nested scopes are left out: replacing one of those is rarely a plausible bug."""
    a = fn.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs} | {x.arg for x in (a.vararg, a.kwarg) if x}

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _SCOPES):
                if not isinstance(child, ast.Lambda):
                    names.add(child.name)
                continue
            if isinstance(child, _COMPREHENSIONS):
                continue
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                names.add(child.id)
            elif isinstance(child, ast.ExceptHandler) and child.name:
                names.add(child.name)
            visit(child)

    for s in fn.body:
        visit(s)
    return sorted(names)


def _comprehension_names(stmts: list[ast.stmt]) -> set[str]:
    return {
        n.id
        for node in walk(stmts)
        if isinstance(node, ast.comprehension)
        for n in ast.walk(node.target)
        if isinstance(n, ast.Name)
    }


def _range_vars(stmts: list[ast.stmt]) -> set[str]:
    """Loop variables of `for i in range(...)` (statements and comprehensions): names known to be integers."""
    return {
        n.target.id
        for n in walk(stmts)
        if isinstance(n, ast.For | ast.comprehension)
        and isinstance(n.target, ast.Name)
        and isinstance(n.iter, ast.Call)
        and isinstance(n.iter.func, ast.Name)
        and n.iter.func.id == "range"
    }


def _int_index(node: ast.AST, ints: set[str]) -> bool:
    """An index that is surely an integer (a dict key may be anything, and `d[key + 1]` is no plausible bug):
    an int literal, `i +/- k` with an int literal, a `range` loop variable, `len(...)`."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    if isinstance(node, ast.Constant):
        return type(node.value) is int
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        return any(isinstance(x, ast.Constant) and type(x.value) is int for x in (node.left, node.right))
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id == "len"
    return isinstance(node, ast.Name) and node.id in ints


def _slice_bound(node: ast.AST) -> bool:
    """A slice bound is an integer whenever the code is right: anything but a str/float literal."""
    return not (isinstance(node, ast.Constant) and type(node.value) is not int)


def _shift(node: ast.expr, delta: int) -> ast.expr:
    """`node + delta`, folding an int constant (`n - 1` +1 -> `n`, `0` +1 -> `1`)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return ast.Constant(node.value + delta)
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    ):
        return ast.Constant(-node.operand.value + delta)
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Add | ast.Sub)
        and isinstance(node.right, ast.Constant)
        and type(node.right.value) is int
    ):
        value = node.right.value * (1 if isinstance(node.op, ast.Add) else -1) + delta
        if value == 0:
            return node.left
        return ast.BinOp(node.left, ast.Add() if value > 0 else ast.Sub(), ast.Constant(abs(value)))
    return ast.BinOp(node, ast.Add() if delta > 0 else ast.Sub(), ast.Constant(abs(delta)))


def _negate(test: ast.expr) -> ast.expr:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand
    return ast.UnaryOp(ast.Not(), test)


# ---- site enumeration: fn(nodes, fn_def, stmts) -> sites ----


def _comparison_sites(nodes: list[ast.AST], fn: ast.FunctionDef, stmts: list[ast.stmt]) -> Iterator[Site]:
    for i, n in enumerate(nodes):
        if isinstance(n, ast.Compare):
            for j, op in enumerate(n.ops):
                if type(op) in _COMPARE_SWAP:
                    yield Site("comparison", i, str(j))


def _boolean_sites(nodes, fn, stmts) -> Iterator[Site]:
    yield from (Site("boolean", i, "flip") for i, n in enumerate(nodes) if isinstance(n, ast.BoolOp))


def _off_by_one_sites(nodes, fn, stmts) -> Iterator[Site]:
    ints = _range_vars(stmts)
    for i, n in enumerate(nodes):
        slots: list[str] = []
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "range":
            slots = [f"args.{j}" for j, a in enumerate(n.args) if not isinstance(a, ast.Starred)][:2]
        elif isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Slice):
            slots = [
                f"slice.{f}"
                for f in ("lower", "upper")
                if getattr(n.slice, f) is not None and _slice_bound(getattr(n.slice, f))
            ]
        elif isinstance(n, ast.Subscript) and _int_index(n.slice, ints):
            slots = ["slice"]
        for slot in slots:
            yield from (Site("off_by_one", i, f"{slot}{d}") for d in ("+1", "-1"))


def _swapped_args_sites(nodes, fn, stmts) -> Iterator[Site]:
    for i, n in enumerate(nodes):
        if isinstance(n, ast.Call) and not any(isinstance(a, ast.Starred) for a in n.args):
            for j in range(len(n.args) - 1):
                if ast.dump(n.args[j]) != ast.dump(n.args[j + 1]):
                    yield Site("swapped_args", i, str(j))
        elif (
            isinstance(n, ast.BinOp)
            and isinstance(n.op, _NON_COMMUTATIVE)
            and ast.dump(n.left) != ast.dump(n.right)
        ):
            yield Site("swapped_args", i, "operands")


def _wrong_variable_sites(nodes, fn, stmts) -> Iterator[Site]:
    local = function_locals(fn)
    skip = _comprehension_names(stmts)
    for i, n in enumerate(nodes):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in local and n.id not in skip:
            yield from (
                Site("wrong_variable", i, other)
                for other in local
                if other != n.id and other not in skip and other != fn.name
            )


def _negated_condition_sites(nodes, fn, stmts) -> Iterator[Site]:
    for i, n in enumerate(nodes):
        if isinstance(n, ast.If | ast.IfExp):
            yield Site("negated_condition", i, "test")
        elif isinstance(n, ast.comprehension):
            yield from (Site("negated_condition", i, f"ifs.{j}") for j in range(len(n.ifs)))


def _missing_condition_sites(nodes, fn, stmts) -> Iterator[Site]:
    for i, n in enumerate(nodes):
        if isinstance(n, ast.If):
            yield Site("missing_condition", i, "drop_if")  # the special case is forgotten (else branch kept)
            yield Site("missing_condition", i, "always")  # the guard is forgotten: the body always runs
        elif isinstance(n, ast.comprehension):
            yield from (Site("missing_condition", i, f"ifs.{j}") for j in range(len(n.ifs)))
        elif isinstance(n, ast.BoolOp):
            yield from (Site("missing_condition", i, f"values.{j}") for j in range(len(n.values)))


def _wrong_return_sites(nodes, fn, stmts) -> Iterator[Site]:
    local = [x for x in function_locals(fn) if x != fn.name]
    for i, n in enumerate(nodes):
        if not isinstance(n, ast.Return) or n.value is None:
            continue
        yield Site("wrong_return", i, "none")
        if isinstance(n.value, ast.Constant) and isinstance(n.value.value, bool):
            yield Site("wrong_return", i, "not")
        current = n.value.id if isinstance(n.value, ast.Name) else None
        yield from (Site("wrong_return", i, f"name.{x}") for x in local if x != current)


_SITES: dict[str, Callable[..., Iterator[Site]]] = {
    "comparison": _comparison_sites,
    "boolean": _boolean_sites,
    "off_by_one": _off_by_one_sites,
    "swapped_args": _swapped_args_sites,
    "wrong_variable": _wrong_variable_sites,
    "negated_condition": _negated_condition_sites,
    "missing_condition": _missing_condition_sites,
    "wrong_return": _wrong_return_sites,
}


def sites(fn: ast.FunctionDef, stmts: list[ast.stmt], operator: str) -> list[Site]:
    """Every site of `operator` in `stmts` (statements of `fn`), in a fixed order."""
    return list(_SITES[operator](walk(stmts), fn, stmts))


# ---- applying a site ----


def _set_slot(node: ast.AST, slot: str, value: ast.AST) -> None:
    field, _, pos = slot.partition(".")
    if field == "slice" and pos:
        setattr(node.slice, pos, value)
    elif pos:
        getattr(node, field)[int(pos)] = value
    else:
        setattr(node, field, value)


def _get_slot(node: ast.AST, slot: str) -> ast.AST:
    field, _, pos = slot.partition(".")
    if field == "slice" and pos:
        return getattr(node.slice, pos)
    return getattr(node, field)[int(pos)] if pos else getattr(node, field)


def _replace_stmt(parents, node: ast.stmt, new: list[ast.stmt]) -> None:
    parent, field, pos = parents[id(node)]
    block = getattr(parent, field)
    block[pos : pos + 1] = new
    if not block:
        block.append(ast.Pass())


def apply(stmts: list[ast.stmt], site: Site) -> list[ast.stmt]:
    """A mutated deep copy of `stmts`."""
    holder = ast.Module(body=copy.deepcopy(stmts), type_ignores=[])
    new = holder.body
    node = walk(new)[site.index]
    op, v = site.operator, site.variant
    if op == "comparison":
        node.ops[int(v)] = _COMPARE_SWAP[type(node.ops[int(v)])]()
    elif op == "boolean":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif op == "off_by_one":
        slot, delta = v[:-2], int(v[-2:])
        _set_slot(node, slot, _shift(_get_slot(node, slot), delta))
    elif op == "swapped_args":
        if v == "operands":
            node.left, node.right = node.right, node.left
        else:
            j = int(v)
            node.args[j], node.args[j + 1] = node.args[j + 1], node.args[j]
    elif op == "wrong_variable":
        node.id = v
    elif op == "negated_condition":
        slot = v if v.startswith("ifs") else "test"
        _set_slot(node, slot, _negate(_get_slot(node, slot)))
    elif op == "missing_condition":
        parents = _parents(new, holder)
        if v == "drop_if":
            _replace_stmt(parents, node, node.orelse)
        elif v == "always":
            _replace_stmt(parents, node, node.body)
        elif v.startswith("ifs"):
            del node.ifs[int(v.split(".")[1])]
        else:  # values.j of a BoolOp: one operand forgotten
            rest = [x for k, x in enumerate(node.values) if k != int(v.split(".")[1])]
            parent, field, pos = parents[id(node)]
            value = rest[0] if len(rest) == 1 else ast.BoolOp(node.op, rest)
            if pos is None:
                setattr(parent, field, value)
            else:
                getattr(parent, field)[pos] = value
    elif op == "wrong_return":
        node.value = (
            None
            if v == "none"
            else ast.Constant(not node.value.value)
            if v == "not"
            else ast.Name(v.split(".", 1)[1], ast.Load())
        )
    else:
        raise ValueError(f"unknown mutation operator {op!r}")
    return [ast.fix_missing_locations(s) for s in new]


def describe(stmts: list[ast.stmt], mutated: list[ast.stmt]) -> str:
    """ "`old line` -> `new line`" for the first rendered line that differs (what a reader of the diff sees)."""
    old_body, new_body = unparse_body(stmts).splitlines(), unparse_body(mutated).splitlines()
    k = next(
        (k for k, (a, b) in enumerate(zip(old_body, new_body, strict=False)) if a != b),
        min(len(old_body), len(new_body)),
    )
    old = old_body[k].strip() if k < len(old_body) else ""
    new = new_body[k].strip() if k < len(new_body) else ""
    return f"`{old}` -> `{new}`"


def mutants(fn: ast.FunctionDef, stmts: list[ast.stmt], operator: str, seed: str) -> list[Mutant]:
    """The mutants of `operator` in a seeded order (`random.Random(seed)` shuffles the sites); a mutant that
    renders like the original, or like an earlier mutant, is left out."""
    seen = {unparse_body(stmts)}
    out = []
    for site in sites(fn, stmts, operator):
        mutated = apply(stmts, site)
        body = unparse_body(mutated)
        if body not in seen:
            seen.add(body)
            out.append(Mutant(site, describe(stmts, mutated), body))
    return random.Random(seed).sample(out, len(out))
