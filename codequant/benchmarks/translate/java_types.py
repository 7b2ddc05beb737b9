"""Python types and values -> Java types and literals, the way MultiPL-E translates HumanEval to Java.

A type is a small tuple tree: ("int",), ("float",), ("str",), ("bool",), ("none",), ("any",) for "not known
yet" (an empty list's element), ("list", T), ("dict", K, V), ("tuple", T1, ..., Tn), ("optional", T). Types come
from annotations when a prompt has them and are inferred from the values in the tests when it does not; values
are then rendered as Java expressions of exactly the chosen type. Anything without a faithful Java counterpart
(unions, sets, values that need `Object`) raises `Untranslatable`, and the problem is skipped with that reason.

Mapping (MultiPL-E's): int -> long, float -> double, str -> String, bool -> boolean, List -> ArrayList,
Dict -> HashMap, Tuple -> javatuples Pair/Triplet/..., Optional -> java.util.Optional.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable

Type = tuple


class Untranslatable(Exception):
    """Why a problem (or one value) has no faithful Java translation."""


INT, FLOAT, STR, BOOL, NONE, ANY = ("int",), ("float",), ("str",), ("bool",), ("none",), ("any",)
OBJECT = ("object",)  # an annotation's `Any`: Java's Object, values keep their own boxed types
TUPLE_CLASSES = {
    2: "Pair",
    3: "Triplet",
    4: "Quartet",
    5: "Quintet",
    6: "Sextet",
    7: "Septet",
    8: "Octet",
    9: "Ennead",
    10: "Decade",
}
_PRIMITIVE = {"int": "long", "float": "double", "str": "String", "bool": "boolean"}
_BOXED = {"int": "Long", "float": "Double", "str": "String", "bool": "Boolean"}
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


# ---- annotations ----
def annotation_type(node: ast.expr | None) -> Type | None:
    """The type of a Python annotation; None when there is no annotation."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and node.value is None:
        return NONE
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return annotation_type(ast.parse(node.value, mode="eval").body)
    if isinstance(node, ast.Name) or isinstance(node, ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        simple = {
            "int": INT,
            "float": FLOAT,
            "str": STR,
            "bool": BOOL,
            "None": NONE,
            "Any": OBJECT,
            "list": ("list", ANY),
            "List": ("list", ANY),
            "dict": ("dict", ANY, ANY),
            "Dict": ("dict", ANY, ANY),
        }
        if name in simple:
            return simple[name]
        raise Untranslatable(f"type {name} has no Java counterpart")
    if isinstance(node, ast.Subscript):
        head = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "?")
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head in ("List", "list") and len(args) == 1:
            return ("list", annotation_type(args[0]))
        if head in ("Dict", "dict") and len(args) == 2:
            return ("dict", annotation_type(args[0]), annotation_type(args[1]))
        if head in ("Tuple", "tuple"):
            if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
                return ("list", annotation_type(args[0]))  # Tuple[X, ...]: a sequence of any length
            return ("tuple", *(annotation_type(a) for a in args))
        if head == "Optional" and len(args) == 1:
            return ("optional", annotation_type(args[0]))
        if head == "Union":
            members = [annotation_type(a) for a in args]
            rest = [m for m in members if m != NONE]
            if len(rest) == 1 and len(members) == 2:
                return ("optional", rest[0])
            raise Untranslatable("union types have no Java counterpart")
        raise Untranslatable(f"type {head}[...] has no Java counterpart")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | None
        left, right = annotation_type(node.left), annotation_type(node.right)
        if NONE in (left, right) and left != right:
            return ("optional", right if left == NONE else left)
        raise Untranslatable("union types have no Java counterpart")
    raise Untranslatable(f"annotation {ast.unparse(node)} has no Java counterpart")


# ---- inference ----
def value_type(v: object) -> Type:
    """The type a Python test value shows."""
    if isinstance(v, bool):
        return BOOL
    if isinstance(v, int):
        return INT
    if isinstance(v, float):
        return FLOAT
    if isinstance(v, str):
        return STR
    if v is None:
        return NONE
    if isinstance(v, list):
        return ("list", join_all([value_type(x) for x in v]))
    if isinstance(v, tuple):
        return ("tuple", *(value_type(x) for x in v))
    if isinstance(v, dict):
        return ("dict", join_all([value_type(k) for k in v]), join_all([value_type(x) for x in v.values()]))
    raise Untranslatable(f"a {type(v).__name__} value has no Java counterpart")


def join(a: Type, b: Type) -> Type:
    """The narrowest type holding both, or Untranslatable (e.g. str and int: Java would need Object)."""
    if a == b:
        return a
    if a == ANY:
        return b
    if b == ANY:
        return a
    if {a, b} == {INT, FLOAT}:
        return FLOAT
    if a == NONE:
        return b if b[0] == "optional" else ("optional", b)
    if b == NONE:
        return a if a[0] == "optional" else ("optional", a)
    if a[0] == "optional" or b[0] == "optional":
        inner_a = a[1] if a[0] == "optional" else a
        inner_b = b[1] if b[0] == "optional" else b
        return ("optional", join(inner_a, inner_b))
    if a[0] == b[0] == "tuple" and len(a) != len(b) or {a[0], b[0]} == {"tuple", "list"}:
        # tuples of several lengths (e.g. () and ("Venus",)): a homogeneous sequence, as MultiPL-E does
        return (
            "list",
            join_all([*a[1:], *b[1:]])
            if "list" not in (a[0], b[0])
            else join_all([*(a[1:] if a[0] == "tuple" else [a[1]]), *(b[1:] if b[0] == "tuple" else [b[1]])]),
        )
    if a[0] == b[0] and a[0] in ("list", "dict") or (a[0] == b[0] == "tuple" and len(a) == len(b)):
        return (a[0], *(join(x, y) for x, y in zip(a[1:], b[1:], strict=True)))
    raise Untranslatable(f"values of types {show(a)} and {show(b)} would need Object in Java")


def join_all(types: list[Type]) -> Type:
    out = ANY
    for t in types:
        out = join(out, t)
    return out


def refine(declared: Type | None, inferred: Type) -> Type:
    """The annotation where it says something, the tests' evidence where it says `Any`/nothing."""
    if declared is None or declared == ANY:
        return inferred
    if inferred == ANY or inferred == NONE and declared[0] == "optional":
        return declared
    if (
        declared[0] == inferred[0]
        and len(declared) == len(inferred)
        and declared[0] in ("list", "dict", "tuple", "optional")
    ):
        return (declared[0], *(refine(d, i) for d, i in zip(declared[1:], inferred[1:], strict=True)))
    return declared


def complete(t: Type) -> bool:
    """No `any` and no bare None left: the type can be written in Java."""
    if t in (ANY, NONE):
        return False
    return all(complete(x) for x in t[1:])


def show(t: Type) -> str:
    return t[0] if len(t) == 1 else f"{t[0]}[{', '.join(show(x) for x in t[1:])}]"


# ---- Java types ----
def java_type(t: Type, boxed: bool = False) -> str:
    kind = t[0]
    if kind == "object":
        return "Object"
    if kind in _PRIMITIVE:
        return (_BOXED if boxed else _PRIMITIVE)[kind]
    if kind == "list":
        return f"ArrayList<{java_type(t[1], True)}>"
    if kind == "dict":
        return f"HashMap<{java_type(t[1], True)},{java_type(t[2], True)}>"
    if kind == "tuple":
        cls = TUPLE_CLASSES.get(len(t) - 1)
        if cls is None:
            raise Untranslatable(f"a {len(t) - 1}-tuple has no javatuples class")
        return f"{cls}<{', '.join(java_type(x, True) for x in t[1:])}>"
    if kind == "optional":
        return f"Optional<{java_type(t[1], True)}>"
    raise Untranslatable(f"type {show(t)} cannot be written in Java")


def is_primitive(t: Type) -> bool:
    return t[0] in ("int", "float", "bool")


# ---- Java values ----
def java_string(s: str) -> str:
    out = []
    for ch in s:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        elif code > 0xFFFF:
            hi, lo = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
            out.append(f"\\u{hi:04x}\\u{lo:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def java_value(v: object, t: Type) -> str:
    """`v` as a Java expression of type `t` (one writer per kind of type, `_VALUES`)."""
    if v is None and t[0] not in _NULLABLE:
        raise Untranslatable(f"None where {show(t)} is expected")
    write = _VALUES.get(t[0])
    if write is None:
        raise Untranslatable(f"no Java value of type {show(t)}")
    return write(v, t)


def _object_value(v: object, t: Type) -> str:
    if isinstance(v, (list, tuple)) and not v:
        return "new ArrayList<Object>()"
    if isinstance(v, dict) and not v:
        return "new HashMap<Object,Object>()"
    return "null" if v is None else java_value(v, value_type(v))


def _optional_value(v: object, t: Type) -> str:
    return "Optional.empty()" if v is None else f"Optional.of({java_value(v, t[1])})"


def _int_value(v: object, t: Type) -> str:
    if isinstance(v, bool) or not isinstance(v, int):
        raise Untranslatable(f"{v!r} is not an int")
    if not _LONG_MIN <= v <= _LONG_MAX:
        raise Untranslatable(f"{v} does not fit a Java long")
    return f"{v}l" if v != _LONG_MIN else "Long.MIN_VALUE"


def _float_value(v: object, t: Type) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Untranslatable(f"{v!r} is not a float")
    f = float(v)
    if math.isnan(f):
        return "Double.NaN"
    if math.isinf(f):
        return "Double.POSITIVE_INFINITY" if f > 0 else "Double.NEGATIVE_INFINITY"
    return repr(f)


def _str_value(v: object, t: Type) -> str:
    if not isinstance(v, str):
        raise Untranslatable(f"{v!r} is not a str")
    return java_string(v)


def _bool_value(v: object, t: Type) -> str:
    if not isinstance(v, bool):
        raise Untranslatable(f"{v!r} is not a bool")
    return "true" if v else "false"


def _list_value(v: object, t: Type) -> str:
    if not isinstance(v, (list, tuple)):
        raise Untranslatable(f"{v!r} is not a list")
    elem = java_type(t[1], True)
    if not v:
        return f"new ArrayList<{elem}>()"
    return f"new ArrayList<{elem}>(Arrays.<{elem}>asList({', '.join(java_value(x, t[1]) for x in v)}))"


def _dict_value(v: object, t: Type) -> str:
    if not isinstance(v, dict):
        raise Untranslatable(f"{v!r} is not a dict")
    k, val = java_type(t[1], True), java_type(t[2], True)
    if not v:
        return f"new HashMap<{k},{val}>()"
    entries = ", ".join(f"Map.entry({java_value(a, t[1])}, {java_value(b, t[2])})" for a, b in v.items())
    return f"new HashMap<{k},{val}>(Map.<{k},{val}>ofEntries({entries}))"


def _tuple_value(v: object, t: Type) -> str:
    if not isinstance(v, (tuple, list)) or len(v) != len(t) - 1:
        raise Untranslatable(f"{v!r} is not a {len(t) - 1}-tuple")
    java_type(t)  # raises for sizes javatuples lacks
    return (
        f"{TUPLE_CLASSES[len(v)]}.with({', '.join(java_value(x, s) for x, s in zip(v, t[1:], strict=True))})"
    )


_VALUES: dict[str, Callable[[object, Type], str]] = {
    "object": _object_value,
    "optional": _optional_value,
    "int": _int_value,
    "float": _float_value,
    "str": _str_value,
    "bool": _bool_value,
    "list": _list_value,
    "dict": _dict_value,
    "tuple": _tuple_value,
}
_NULLABLE = ("object", "optional")  # the kinds of type whose value may be None (null, Optional.empty())
