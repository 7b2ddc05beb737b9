"""HumanEval -> Java translation: types, literals, tests, and the whole set compiling with javac."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from codequant.benchmarks.sources.humaneval import load_humaneval
from codequant.benchmarks.translate.java_translate import (
    camel,
    parse_checks,
    translate_humaneval,
    translate_problem,
)
from codequant.benchmarks.translate.java_types import (
    Untranslatable,
    java_string,
    java_type,
    java_value,
    join,
    value_type,
)
from codequant.sandbox.java import javatuples_jar

needs_javac = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")


def test_types_map_like_multipl_e():
    assert java_type(("int",)) == "long"
    assert java_type(("list", ("float",))) == "ArrayList<Double>"
    assert java_type(("dict", ("str",), ("int",))) == "HashMap<String,Long>"
    assert java_type(("tuple", ("int",), ("str",))) == "Pair<Long, String>"
    assert java_type(("tuple", ("int",), ("int",), ("bool",))) == "Triplet<Long, Long, Boolean>"
    assert java_type(("optional", ("str",))) == "Optional<String>"


def test_values_render_with_their_java_type():
    assert java_value(-3, ("int",)) == "-3l"
    assert java_value(2, ("float",)) == "2.0"
    assert java_value(True, ("bool",)) == "true"
    assert java_value([1, 2], ("list", ("int",))) == "new ArrayList<Long>(Arrays.<Long>asList(1l, 2l))"
    assert java_value([], ("list", ("str",))) == "new ArrayList<String>()"
    assert java_value((1, "a"), ("tuple", ("int",), ("str",))) == 'Pair.with(1l, "a")'
    assert java_value(None, ("optional", ("int",))) == "Optional.empty()"
    assert (
        java_value({"a": 1}, ("dict", ("str",), ("int",)))
        == 'new HashMap<String,Long>(Map.<String,Long>ofEntries(Map.entry("a", 1l)))'
    )
    assert java_string('a"b\\\n\t') == '"a\\"b\\\\\\n\\t"'
    with pytest.raises(Untranslatable):
        java_value(2**70, ("int",))
    with pytest.raises(Untranslatable):
        java_value("x", ("int",))


def test_inference_joins_and_refuses_unions():
    assert join(value_type(1), value_type(2.5)) == ("float",)
    assert join(value_type([]), value_type([1])) == ("list", ("int",))
    assert join(value_type(None), value_type("a")) == ("optional", ("str",))
    assert join(value_type(()), value_type(("a",))) == ("list", ("str",))
    with pytest.raises(Untranslatable):
        join(value_type("a"), value_type(1))


def test_camel_case_names():
    assert camel("has_close_elements") == "hasCloseElements"
    assert camel("x") == "x"
    assert camel("char") == "char_"


def test_checks_are_evaluated_not_executed():
    checks = parse_checks(
        "def check(candidate):\n    x = [1, 2] * 2\n    assert candidate(x) == len(x)\n"
        "    assert abs(candidate([1]) - 0.5) < 1e-6\n    assert not candidate([])\n"
        "    for i in range(2):\n        assert candidate([i]) == str(i)\n    assert True\n"
    )
    assert [(c.kind, c.args, c.expected) for c in checks] == [
        ("eq", ([1, 2, 1, 2],), 4),
        ("close", ([1],), 0.5),
        ("false", ([],), None),
        ("eq", ([0],), "0"),
        ("eq", ([1],), "1"),
    ]
    with pytest.raises(Untranslatable, match="not an assert"):
        parse_checks("def check(candidate):\n    import os\n    assert candidate(1) == 1\n")
    with pytest.raises(Untranslatable):
        parse_checks("def check(candidate):\n    assert candidate(__import__('os').getcwd()) == 1\n")


def test_unannotated_problem_gets_types_from_its_tests():
    prompt = 'def add(x, y):\n    """Add two numbers x and y, a list of ... no.\n    >>> add(2, 3)\n    5\n    """\n'
    tests = "def check(candidate):\n    assert candidate(0, 1) == 1\n    assert candidate(-5, 7) == 2\n"
    p = translate_problem("HumanEval/53", prompt, tests, "add")
    assert p.task_id == "HumanEval_53_add" and p.entry_point == "add"
    assert "public static long add(long x, long y) {\n" in p.prompt
    assert ">>> add(2l, 3l)" in p.prompt and "array list" in p.prompt
    assert "    assert(add(-5l, 7l) == 2l);\n" in p.tests
    assert p.tests.startswith("    }\n") and p.stop == ("\n    }\n",)


def test_union_result_is_skipped_with_reason():
    prompt = "def f(n):\n    pass\n"
    tests = 'def check(candidate):\n    assert candidate(1) == "a"\n    assert candidate(2) == -1\n'
    with pytest.raises(Untranslatable, match="Object"):
        translate_problem("HumanEval/1", prompt, tests, "f")


@pytest.fixture(scope="module")
def translated():
    return translate_humaneval(load_humaneval())


def test_at_least_155_of_164_translate(translated):
    done, skipped = translated
    assert len(done) + len(skipped) == 164
    assert len(done) >= 155
    assert all(s.reason for s in skipped)
    assert len({p.task_id for p in done}) == len(done)


@pytest.mark.java
@pytest.mark.slow
@pytest.mark.ci
@needs_javac
def test_every_translated_prompt_compiles_with_a_stub_body(translated, tmp_path):
    done, _ = translated
    files = []
    for i, p in enumerate(done):
        src = p.prompt + "        throw new UnsupportedOperationException();\n" + p.tests
        path = tmp_path / f"Problem{i}.java"
        path.write_text(src.replace("class Problem {", f"class Problem{i} {{"), encoding="utf-8")
        files.append(str(path))
    cp = javatuples_jar() or "."
    out = subprocess.run(
        [
            "javac",
            "-encoding",
            "UTF8",
            "-proc:none",
            "-nowarn",
            "-cp",
            cp,
            "-d",
            str(tmp_path / "classes"),
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list((tmp_path / "classes").glob("Problem*.class"))) == len(done)
