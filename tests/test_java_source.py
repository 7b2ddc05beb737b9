"""codequant/java_source.py: the neutral Java lexer the sandbox, generation and the benchmarks share."""

from __future__ import annotations

from codequant.java_source import call_arguments, static_method_names


def _args(src: str) -> list[str] | None:
    spans = call_arguments(src, src.index("("))
    return None if spans is None else [src[a:b] for a, b in spans]


def test_call_arguments_split_at_top_level_commas_only():
    src = "f(a, g(b, c), new int[] {1, 2}, \"x, y\", 'x', m.get(k)[0])"
    assert _args(src) == ["a", "g(b, c)", "new int[] {1, 2}", '"x, y"', "'x'", "m.get(k)[0]"]


def test_type_arguments_do_not_split_and_comparisons_do():
    assert _args("f(new HashMap<String, List<Integer>>(), 3)") == [
        "new HashMap<String, List<Integer>>()",
        "3",
    ]
    assert _args("f(a < b, c > d)") == ["a < b", "c > d"]
    assert _args("f(x.size() < 3, y)") == ["x.size() < 3", "y"]


def test_comments_and_space_around_arguments_are_left_out():
    src = "f(\n    // first\n    a == 1, /* b */ b,\n    c // last\n)"
    assert _args(src) == ["a == 1", "b", "c"]
    assert _args("f()") == [] and _args("f(a, ") is None


def test_static_method_names_skip_comments_and_strings():
    src = (
        'class A {\n  // static int hidden(int x)\n  String s = "static void nope(";\n'
        "  public static List<Integer> first(int x) { return null; }\n  static int second() { return 1; }\n}\n"
    )
    assert static_method_names(src) == ["first", "second"]
