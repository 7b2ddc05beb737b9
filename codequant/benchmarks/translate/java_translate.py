"""HumanEval (Python) -> Java problems, offline, the way MultiPL-E builds `humaneval-java`.

Per problem: the entry point's signature gives the parameter and return types (inferred from the test values
where the prompt has no annotations), its docstring becomes a Javadoc with the wording adapted to Java
("list" -> "array list", doctest calls and results translated), and each `assert` of `check(candidate)` becomes
a Java `assert` over translated values in a `main` of `class Problem`. The layout is MultiPL-E's, so a program
is `prompt + completion + tests`: the prompt stops right after the method's opening brace and the tests begin
with the `}` that closes it (stop sequence "\\n    }\\n").

Test values are computed by a tiny evaluator over the test's AST (literals, arithmetic, a few pure builtins):
the benchmark file is data, and nothing from it is executed. A problem is skipped, with its reason, when a
type has no Java counterpart (unions, `Any`), when a test is more than a list of asserts over values (loops
over random inputs, helper imports), or when no assert survives.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

from codequant.benchmarks.problem import Problem
from codequant.benchmarks.translate.java_types import (
    BOOL,
    FLOAT,
    Type,
    Untranslatable,
    annotation_type,
    complete,
    is_primitive,
    java_type,
    java_value,
    join,
    refine,
    show,
    value_type,
)

JAVA_STOP: tuple[str, ...] = ("\n    }\n",)
JAVA_IMPORTS = (
    "import java.util.*;\nimport java.lang.reflect.*;\nimport org.javatuples.*;\nimport java.security.*;\n"
    "import java.math.*;\nimport java.io.*;\nimport java.util.stream.*;\n"
)
JAVA_KEYWORDS = frozenset(
    "abstract assert boolean break byte case catch char class const continue default do double else enum extends "
    "final finally float for goto if implements import instanceof int interface long native new package private "
    "protected public return short static strictfp super switch synchronized this throw throws transient try void "
    "volatile while true false null var record yield".split()
)
_MAX_ITEMS = 100_000  # the evaluator refuses to build bigger values (a test is data, not a memory bomb)


@dataclass(frozen=True)
class Check:
    """One assert: candidate(args) compared as `kind` ("eq", "close", "true", "false") with `expected`."""

    args: tuple
    kind: str
    expected: object = None
    tolerance: float = 0.0


@dataclass(frozen=True)
class Skipped:
    task_id: str
    reason: str


def camel(name: str) -> str:
    """snake_case -> camelCase (MultiPL-E's Java naming); Java keywords get a trailing underscore."""
    lead = len(name) - len(name.lstrip("_"))
    parts = [p for p in name.strip("_").split("_") if p]
    out = "_" * lead + (parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:]) if parts else name)
    return out + "_" if out in JAVA_KEYWORDS else out


# ---- a safe evaluator for test values ----
_SAFE_FUNCS = {
    "str": str,
    "int": int,
    "float": float,
    "list": list,
    "tuple": tuple,
    "range": range,
    "len": len,
    "sorted": sorted,
    "abs": abs,
    "bool": bool,
    "min": min,
    "max": max,
    "sum": sum,
    "round": round,
}


def _guard(v: object) -> object:
    if isinstance(v, (str, list, tuple, range, dict)) and len(v) > _MAX_ITEMS:
        raise Untranslatable("test value too large")
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**256:
        raise Untranslatable("test value too large")
    return v


def evaluate(node: ast.expr, env: dict[str, object]) -> object:
    """The value of a test expression built from literals, names bound by earlier asserts' assignments,
    arithmetic and a few pure builtins; anything else is Untranslatable."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float, str, bool)) or node.value is None:
            return node.value
        raise Untranslatable(f"constant {node.value!r}")
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise Untranslatable(f"unknown name {node.id}")
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [evaluate(e, env) for e in node.elts]
        return _guard(items if isinstance(node, ast.List) else tuple(items))
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise Untranslatable("dict unpacking")
        return {evaluate(k, env): evaluate(v, env) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.UnaryOp):
        v = evaluate(node.operand, env)
        ops = {ast.USub: lambda x: -x, ast.UAdd: lambda x: +x, ast.Not: lambda x: not x}
        if type(node.op) in ops:
            return ops[type(node.op)](v)
    if isinstance(node, ast.BinOp):
        a, b = evaluate(node.left, env), evaluate(node.right, env)
        if (
            isinstance(node.op, ast.Mult)
            and isinstance(a, (str, list))
            and isinstance(b, int)
            and len(a) * b > _MAX_ITEMS
        ):
            raise Untranslatable("test value too large")
        if isinstance(node.op, ast.Pow) and isinstance(b, int) and abs(b) > 256:
            raise Untranslatable("test value too large")
        ops = {
            ast.Add: lambda x, y: x + y,
            ast.Sub: lambda x, y: x - y,
            ast.Mult: lambda x, y: x * y,
            ast.Div: lambda x, y: x / y,
            ast.FloorDiv: lambda x, y: x // y,
            ast.Mod: lambda x, y: x % y,
            ast.Pow: lambda x, y: x**y,
        }
        if type(node.op) in ops:
            try:
                return _guard(ops[type(node.op)](a, b))
            except (TypeError, ZeroDivisionError, OverflowError) as exc:
                raise Untranslatable(f"cannot evaluate {ast.unparse(node)}: {exc}") from None
    if isinstance(node, ast.ListComp):
        return _guard(_comprehension(node, env))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _SAFE_FUNCS
        and not node.keywords
    ):
        args = [evaluate(a, env) for a in node.args]
        try:
            out = _SAFE_FUNCS[node.func.id](*args)
        except (TypeError, ValueError) as exc:
            raise Untranslatable(f"cannot evaluate {ast.unparse(node)}: {exc}") from None
        return _guard(list(out) if isinstance(out, range) else out)
    if isinstance(node, ast.BoolOp):
        values = [evaluate(v, env) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        try:
            return _COMPARE[type(node.ops[0])](evaluate(node.left, env), evaluate(node.comparators[0], env))
        except TypeError as exc:
            raise Untranslatable(f"cannot evaluate {ast.unparse(node)}: {exc}") from None
    raise Untranslatable(f"test expression {ast.unparse(node)} is not a plain value")


def _comprehension(node: ast.ListComp, env: dict) -> list:
    """[elt for x in seq if cond ...] with plain-name targets."""
    envs = [env]
    for gen in node.generators:
        if not isinstance(gen.target, ast.Name) or gen.is_async:
            raise Untranslatable("comprehension with a non-name target")
        nxt = []
        for e in envs:
            seq = evaluate(gen.iter, e)
            if not isinstance(seq, (list, tuple, str)):
                raise Untranslatable("comprehension over a non-sequence")
            for v in seq:
                inner = {**e, gen.target.id: v}
                if all(evaluate(c, inner) for c in gen.ifs):
                    nxt.append(inner)
            if len(nxt) > _MAX_ITEMS:
                raise Untranslatable("test value too large")
        envs = nxt
    return [evaluate(node.elt, e) for e in envs]


_COMPARE = {
    ast.Eq: lambda x, y: x == y,
    ast.NotEq: lambda x, y: x != y,
    ast.Lt: lambda x, y: x < y,
    ast.LtE: lambda x, y: x <= y,
    ast.Gt: lambda x, y: x > y,
    ast.GtE: lambda x, y: x >= y,
}


# ---- the tests ----
def _unwrap(node: ast.expr) -> ast.expr:
    """`tuple(candidate(x))` / `list(candidate(x))` compare the sequence itself: look through the conversion."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("tuple", "list")
        and len(node.args) == 1
        and not node.keywords
    ):
        return node.args[0]
    return node


def _candidate_args(node: ast.expr, env: dict) -> tuple | None:
    node = _unwrap(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "candidate":
        if node.keywords:
            raise Untranslatable("keyword arguments in a test call")
        return tuple(evaluate(a, env) for a in node.args)
    return None


def _check_of(test: ast.expr, env: dict) -> Check:
    """One assert's test expression as a Check."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        args = _candidate_args(test.operand, env)
        if args is not None:
            return Check(args, "false")
    args = _candidate_args(test, env)
    if args is not None:
        return Check(args, "true")
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        op, left, right = test.ops[0], test.left, test.comparators[0]
        args = _candidate_args(left, env)
        if args is not None and isinstance(op, (ast.Eq, ast.Is)):
            value = evaluate(right, env)
            if isinstance(value, tuple) and _unwrap(left) is not left:
                value = list(value)
            if isinstance(op, ast.Is) and value not in (True, False, None):
                raise Untranslatable("`is` comparison with a non-singleton")
            return Check(args, "eq", value)
        # abs(candidate(x) - y) < tol  /  math.fabs(...) < tol
        if (
            isinstance(op, (ast.Lt, ast.LtE))
            and isinstance(left, ast.Call)
            and len(left.args) == 1
            and ast.unparse(left.func) in ("abs", "math.fabs")
            and isinstance(left.args[0], ast.BinOp)
            and isinstance(left.args[0].op, ast.Sub)
        ):
            args = _candidate_args(left.args[0].left, env)
            if args is not None:
                return Check(args, "close", evaluate(left.args[0].right, env), float(evaluate(right, env)))
    raise Untranslatable(f"assert {ast.unparse(test)} is not a comparison of candidate(...) with a value")


def _statements(body: Iterable[ast.stmt], env: dict, out: list[Check], dropped: list[str]) -> None:
    for st in body:
        if isinstance(st, ast.Assert):
            if isinstance(st.test, ast.Constant):  # `assert True, "This prints if this assert fails"`
                continue
            try:
                out.append(_check_of(st.test, env))
            except Untranslatable as exc:  # e.g. compares with the Python reference function itself
                dropped.append(str(exc))
        elif isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            env[st.targets[0].id] = evaluate(st.value, env)
        elif isinstance(st, ast.Expr) and isinstance(st.value, (ast.Constant, ast.Name)):
            continue  # a string used as a comment
        elif (
            isinstance(st, ast.Expr)
            and isinstance(st.value, ast.Call)
            and ast.unparse(st.value.func) == "print"
        ):
            continue
        elif isinstance(st, ast.For) and isinstance(st.target, ast.Name) and not st.orelse:
            values = evaluate(st.iter, env)
            if not isinstance(values, (list, tuple, str)):
                raise Untranslatable("loop over a non-sequence")
            for v in values:
                _statements(st.body, {**env, st.target.id: v}, out, dropped)
        elif isinstance(st, ast.Pass):
            continue
        else:
            raise Untranslatable(
                f"test statement `{ast.unparse(st).splitlines()[0]}` is not an assert over values"
            )


def parse_checks(tests: str, dropped: list[str] | None = None) -> list[Check]:
    """The asserts of HumanEval's `def check(candidate)`, with values computed. Single asserts that cannot be
    translated are left out (their reasons appended to `dropped`); a structural test (imports, random inputs)
    or one that would lose more than half of its asserts is Untranslatable."""
    dropped = [] if dropped is None else dropped
    module = ast.parse(tests)
    check = next((n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None:
        raise Untranslatable("the tests define no check(candidate)")
    out: list[Check] = []
    _statements(check.body, {}, out, dropped)
    if not out or len(dropped) > len(out):
        raise Untranslatable(
            f"{len(dropped)} of {len(dropped) + len(out)} asserts cannot be translated"
            + (f" ({dropped[0]})" if dropped else "")
        )
    return out


# ---- types ----
def signature_types(
    fn: ast.FunctionDef, checks: list[Check], dropped: list[str] | None = None
) -> tuple[list[Type], Type, list[Check]]:
    """Parameter and return types: annotations, refined by (or inferred from) the values in the tests, and the
    checks that fit them. A check whose arguments clash with the earlier ones (e.g. HumanEval/95's dict with one
    int key among str keys) is left out and noted in `dropped`; a clash of results (a union return) is fatal."""
    dropped = [] if dropped is None else dropped
    params = fn.args.args
    if fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs or fn.args.defaults:
        raise Untranslatable("default, keyword-only or variadic parameters")
    declared = [annotation_type(a.annotation) for a in params]
    inferred: list[Type] = [("any",)] * len(params)
    returns: Type = ("any",)
    kept: list[Check] = []
    for c in checks:
        if len(c.args) != len(params):
            raise Untranslatable(f"a test calls the function with {len(c.args)} arguments, not {len(params)}")
        try:
            widened = [
                t if d is not None and complete(d) else join(t, value_type(v))
                for t, v, d in zip(inferred, c.args, declared, strict=True)
            ]
            for v, d in zip(c.args, declared, strict=True):
                if d is not None and complete(d):
                    java_value(v, d)
        except Untranslatable as exc:
            dropped.append(f"arguments {c.args!r}: {exc}")
            continue
        inferred = widened
        kept.append(c)
        if c.kind == "eq":
            returns = join(returns, value_type(c.expected))
        elif c.kind == "close":
            returns = join(returns, FLOAT)
        else:
            returns = join(returns, BOOL)
    types = [refine(d, i) for d, i in zip(declared, inferred, strict=True)]
    ret = refine(annotation_type(fn.returns), returns)
    for name, t in zip((a.arg for a in params), types, strict=True):
        if not complete(t):
            raise Untranslatable(f"the type of parameter {name} ({show(t)}) cannot be written in Java")
    if not complete(ret):
        raise Untranslatable(f"the return type ({show(ret)}) cannot be written in Java")
    if len(dropped) >= len(kept):
        raise Untranslatable(
            f"{len(dropped)} of {len(checks)} asserts do not fit one Java signature ({dropped[0]})"
        )
    return types, ret, kept


# ---- the docstring ----
_TERMS = [
    (r"\bdictionaries\b", "hash maps"),
    (r"\bdictionary\b", "hash map"),
    (r"\bdicts?\b", "hash map"),
    (r"\blists\b", "array lists"),
    (r"\blist\b", "array list"),
    (r"\bTrue\b", "true"),
    (r"\bFalse\b", "false"),
    (r"\bNone\b", "null"),
]


def _reword(line: str) -> str:
    for pat, rep in _TERMS:
        line = re.sub(pat, rep, line)
    return line


def javadoc(doc: str, py_name: str, java_name: str, types: list[Type], ret: Type) -> str:
    """The docstring as an indented Javadoc; doctest calls and their results are translated when possible."""
    lines = doc.strip("\n").splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(">>>"):
            call = stripped[3:].strip()
            result_lines = []
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].strip().startswith(">>>"):
                result_lines.append(lines[j].strip())
                j += 1
            translated = _doctest(call, " ".join(result_lines), py_name, java_name, types, ret)
            if translated is not None:
                indent = line[: len(line) - len(line.lstrip())]
                out += [f"{indent}>>> {translated[0]}", f"{indent}{translated[1]}"]
                i = j
                continue
        out.append(_reword(line))
        i += 1
    body = "\n".join(f"     * {ln}".rstrip() for ln in out).replace("*/", "* /")
    return f"    /**\n{body}\n     */\n"


def _doctest(call: str, result: str, py_name: str, java_name: str, types: list[Type], ret: Type):
    try:
        node = ast.parse(call, mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == py_name):
            return None
        args = [evaluate(a, {}) for a in node.args]
        if len(args) != len(types) or not result:
            return None
        expected = evaluate(ast.parse(result, mode="eval").body, {})
        rendered = ", ".join(java_value(a, t) for a, t in zip(args, types, strict=True))
        return f"{java_name}({rendered})", java_value(expected, ret)
    except (Untranslatable, SyntaxError, ValueError, TypeError):
        return None


# ---- the problem ----
def _assertion(java_name: str, c: Check, types: list[Type], ret: Type) -> str:
    call = f"{java_name}({', '.join(java_value(a, t) for a, t in zip(c.args, types, strict=True))})"
    if c.kind in ("true", "false"):
        if ret[0] != "bool":
            raise Untranslatable("a truthiness assert on a non-boolean result")
        return f"    assert({'' if c.kind == 'true' else '!'}{call});\n"
    if c.kind == "close":
        return f"    assert(Math.abs({call} - {java_value(c.expected, FLOAT)}) < {java_value(c.tolerance, FLOAT)});\n"
    expected = java_value(c.expected, ret)
    if is_primitive(ret):
        return f"    assert({call} == {expected});\n"
    return f"    assert({call}.equals({expected}));\n"


def translate_problem(task_id: str, prompt: str, tests: str, entry_point: str) -> Problem:
    """One HumanEval problem as a MultiPL-E-style Java Problem; raises Untranslatable with the reason."""
    try:
        module = ast.parse(prompt + "\n    pass\n")
    except SyntaxError as exc:
        raise Untranslatable(f"the prompt does not parse ({exc.msg})") from None
    fn = next((n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == entry_point), None)
    if fn is None:
        raise Untranslatable(f"the prompt does not define {entry_point}")
    dropped: list[str] = []
    checks = parse_checks(tests, dropped)
    types, ret, checks = signature_types(fn, checks, dropped)
    java_name = camel(entry_point)
    names = [camel(a.arg) for a in fn.args.args]
    params = ", ".join(f"{java_type(t)} {n}" for t, n in zip(types, names, strict=True))
    doc = ast.get_docstring(fn) or ""
    java_prompt = (
        f"{JAVA_IMPORTS}class Problem {{\n{javadoc(doc, entry_point, java_name, types, ret) if doc else ''}"
        f"    public static {java_type(ret)} {java_name}({params}) {{\n"
    )
    asserts = "".join(_assertion(java_name, c, types, ret) for c in checks)
    java_tests = f"    }}\n    public static void main(String[] args) {{\n{asserts}    }}\n\n}}\n"
    number = task_id.rsplit("/", 1)[-1]
    return Problem(
        task_id=f"HumanEval_{number}_{entry_point}",
        language="java",
        prompt=java_prompt,
        tests=java_tests,
        entry_point=java_name,
        stop=JAVA_STOP,
        canonical_solution=None,
        benchmark="humaneval-java",
        extra={"format": "multipl-e", "source_task_id": task_id, "dropped_asserts": dropped},
    )


def translate_humaneval(problems: Iterable[Problem]) -> tuple[list[Problem], list[Skipped]]:
    """Translate every problem that has a faithful Java form; the others come back as Skipped with a reason."""
    done: list[Problem] = []
    skipped: list[Skipped] = []
    for p in problems:
        try:
            done.append(translate_problem(p.task_id, p.prompt, p.tests, p.entry_point))
        except Untranslatable as exc:
            skipped.append(Skipped(p.task_id, str(exc)))
    return done, skipped
