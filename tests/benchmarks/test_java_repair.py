"""HumanEval-X Java program repair: the Java mutation operators, the shipped set (edits, no HumanEval-X text), its
prompts, its build and its programs in the real sandbox."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace

import pytest

from codequant.benchmarks.build import java_mutations as J
from codequant.benchmarks.build.java_repair import PER_TASK, QUOTE_CHARS, build_rows, failure_message, quotes
from codequant.benchmarks.listing import list_benchmarks
from codequant.benchmarks.programs import build_program
from codequant.benchmarks.registry import benchmark_info, load_benchmark
from codequant.benchmarks.repair.edits import Edit, apply_edits
from codequant.benchmarks.repair.java import apply_row, harness_checks, read_rows, shown_message, source_hash
from codequant.errors import CodequantError
from codequant.generation.extract import extract_code
from codequant.generation.prompts import chat_instruction
from codequant.sandbox import run_programs

needs_javac = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")
_HEAD = "class S {\n    {sig} {\n"


def _mutants(sig: str, body: str, operator: str) -> set[str]:
    """The mutated bodies (whitespace collapsed) of one method `sig` with `body`."""
    head = _HEAD.replace("{sig}", sig)
    src = head + body + "    }\n}\n"
    out = set()
    for m in J.mutants(src, len(head), operator, "t"):
        assert J.parses(head + m.text) and m.site.operator == operator
        assert apply_edits(src[len(head) :], m.edits) == m.text
        out.add(" ".join(m.text.rsplit("}", 2)[0].split()))
    return out


def test_comparison_swaps_each_operator_at_its_boundary():
    got = _mutants("boolean f(int a, int b)", "return a < b && a != 0;\n", "comparison")
    assert got == {"return a <= b && a != 0;", "return a < b && a == 0;"}


def test_boolean_flips_and_or():
    got = _mutants("boolean f(boolean a, boolean b)", "return a && (b || a);\n", "boolean")
    assert got == {"return a || (b || a);", "return a && (b && a);"}


def test_off_by_one_in_loop_bounds_and_indices_only():
    body = 'for (int i = 1; i < n; i++) {\n    xs[i - 1] = m.get("k") + ys.get(i);\n}\n'
    got = _mutants("void f(int[] xs, Map<String, Integer> m, List<Integer> ys, int n)", body, "off_by_one")
    rest = 'xs[i - 1] = m.get("k") + ys.get(i); }'
    assert f"for (int i = 2; i < n; i++) {{ {rest}" in got and f"for (int i = 0; i < n; i++) {{ {rest}" in got
    assert (
        f"for (int i = 1; i < n + 1; i++) {{ {rest}" in got
        and f"for (int i = 1; i < n - 1; i++) {{ {rest}" in got
    )
    assert 'for (int i = 1; i < n; i++) { xs[i] = m.get("k") + ys.get(i); }' in got  # i - 1 + 1 folds to i
    assert 'for (int i = 1; i < n; i++) { xs[i - 2] = m.get("k") + ys.get(i); }' in got
    assert 'for (int i = 1; i < n; i++) { xs[i - 1] = m.get("k") + ys.get(i + 1); }' in got
    assert 'for (int i = 1; i < n; i++) { xs[i - 1] = m.get("k") + ys.get(i - 1); }' in got
    assert not any('"k" + 1' in g or '"k" - 1' in g for g in got)  # a string key is no index
    assert len(got) == 8
    assert _mutants("String f(String s)", "return s.substring(0, s.length() - 1);\n", "off_by_one") == {
        "return s.substring(1, s.length() - 1);",
        "return s.substring(-1, s.length() - 1);",
        "return s.substring(0, s.length());",
        "return s.substring(0, s.length() - 2);",
    }


def test_swapped_args_in_calls_and_non_commutative_operators():
    got = _mutants(
        "double f(double a, double b)", "return Math.pow(a, b) - Math.max(a, a) + a * b;\n", "swapped_args"
    )
    assert got == {
        "return Math.pow(b, a) - Math.max(a, a) + a * b;",
        "return Math.max(a, a) - Math.pow(a, b) + a * b;",
    }
    assert (
        _mutants("int f(int a, int b, int c)", "return a - b * c;\n", "swapped_args") == set()
    )  # not `b * c - a`


def test_wrong_variable_uses_visible_locals_of_the_same_type():
    body = (
        'int n = xs.size();\nString s = "x";\nfor (int x : xs) {\n    n += x * k;\n}\n'
        "xs.forEach(y -> System.out.println(y + k));\nreturn n + s.length();\n"
    )
    got = _mutants("int f(List<Integer> xs, int k)", body, "wrong_variable")
    variants = {
        g.split("n += ")[1].split(";")[0] if "n += x * k" not in g else g.split("return ")[1] for g in got
    }
    assert variants == {
        "k * k",
        "n * k",
        "x * n",
        "x * x",
        "k + s.length();",
    }  # `x` is out of scope at return
    assert len(got) == 5  # no `n +=` target, no lambda, no String/List swaps, no `x` after its loop


def test_negated_condition_in_if_and_ternary():
    got = _mutants(
        "boolean f(boolean a, boolean b)",
        "if (!a) {\n    a = b;\n}\nreturn b ? a : !a;\n",
        "negated_condition",
    )
    assert got == {"if (a) { a = b; } return b ? a : !a;", "if (!a) { a = b; } return !(b) ? a : !a;"}
    got = _mutants("int f(int a)", "if (a > 0 || a < -5) {\n    a = 0;\n}\nreturn a;\n", "negated_condition")
    assert got == {"if (!(a > 0 || a < -5)) { a = 0; } return a;"}


def test_missing_condition_drops_a_check_a_guard_or_an_operand():
    got = _mutants(
        "int f(boolean a, boolean b)",
        "if (a && b) {\n    return 1;\n} else {\n    return 2;\n}\n",
        "missing_condition",
    )
    assert got == {
        "{ return 2; }",
        "{ return 1; }",
        "if (b) { return 1; } else { return 2; }",
        "if (a) { return 1; } else { return 2; }",
    }
    got = _mutants("int f(int a)", "if (a > 3) {\n    a = 0;\n}\nreturn a;\n", "missing_condition")
    assert got == {"return a;", "{ a = 0; } return a;"}


def test_wrong_return_value():
    got = _mutants(
        "boolean f(boolean a)", "boolean b = !a;\nif (a) {\n    return true;\n}\nreturn b;\n", "wrong_return"
    )
    assert got == {
        "boolean b = !a; if (a) { return false; } return b;",
        "boolean b = !a; if (a) { return true; } return a;",
    }
    got = _mutants("int f(int a)", "if (a > 0) return 0;\nreturn a;\n", "wrong_return")
    assert got == {"if (a > 0) return 1; return a;", "if (a > 0) return -1; return a;"}


def test_edits_apply_moves_and_reject_overlaps():
    text = "f(alpha, beta)"
    swap = [Edit(2, 5, (9, 4)), Edit(9, 4, (2, 5))]
    assert apply_edits(text, swap) == "f(beta, alpha)"
    assert [Edit.from_json(e.to_json()) for e in swap] == swap
    with pytest.raises(ValueError):
        apply_edits(text, [Edit(2, 5, "x"), Edit(4, 1, "y")])


def test_failure_message_keeps_the_harness_lines_only():
    stderr = (
        'Exception in thread "main" java.lang.IndexOutOfBoundsException: Index 6 out of bounds for length 6\n'
        "\tat java.base/jdk.internal.util.Preconditions.outOfBounds(Preconditions.java:100)\n"
        "\tat Solution.f(Main.java:12)\n\tat Solution.f(Main.java:12)\n\tat Main.main(Main.java:30)\n"
        "\tat CodequantRun0123.main(CodequantRun0123.java:3)\n"
    )
    assert failure_message(stderr, "return xs.get(i);") == (
        'Exception in thread "main" java.lang.IndexOutOfBoundsException: Index 6 out of bounds for length 6\n'
        "    at Solution.f(Main.java)\n    at Main.main(Main.java)"
    )
    thrown = 'Exception in thread "main" java.lang.IllegalStateException: no element greater than 12\n'
    assert failure_message(thrown, 'throw new IllegalStateException("no element greater than 12");') == (
        'Exception in thread "main" java.lang.IllegalStateException'
    )  # the detail quotes the solution
    assert quotes("x" * QUOTE_CHARS, "y" + "x" * QUOTE_CHARS) and not quotes(
        "x" * (QUOTE_CHARS - 1), "x" * 99
    )


def test_the_first_false_check_is_shown_from_the_test():
    tests = (
        "public class Main {\n    public static void main(String[] args) {\n        Solution s = new Solution();\n"
        "        List<Boolean> correct = Arrays.asList(\n                s.f(1) == 2,\n"
        "                s.f(new HashMap<String, Integer>(),\n                    3) == 4\n        );\n"
        "        if (correct.contains(false)) {\n            throw new AssertionError();\n        }\n    }\n}\n"
    )
    assert harness_checks(tests) == ["s.f(1) == 2", "s.f(new HashMap<String, Integer>(), 3) == 4"]
    row = {"message": 'Exception in thread "main" java.lang.AssertionError', "failing_check": 1}
    assert shown_message(row, tests) == (
        row["message"] + "\nThe first check of the test that is false (item 2 of 2):"
        "\n    s.f(new HashMap<String, Integer>(), 3) == 4"
    )
    assert shown_message(row | {"failing_check": None}, tests) == row["message"]
    assert harness_checks("public class Main { }") is None


# ---- the shipped set (joined with HumanEval-X from ../shared) ----


@pytest.fixture(scope="module")
def bench_dir(shared_dir):
    path = shared_dir / "benchmarks" / "humaneval-x" / "humaneval_java.jsonl.gz"
    if not path.is_file():
        pytest.skip("HumanEval-X Java is absent from ../shared/benchmarks")
    mp = pytest.MonkeyPatch()
    mp.setenv("CODEQUANT_BENCHMARKS_DIR", str(shared_dir / "benchmarks"))
    yield shared_dir / "benchmarks"
    mp.undo()


@pytest.fixture(scope="module")
def sources(bench_dir):
    return {p.task_id: p for p in load_benchmark("humaneval-x-java")}


@pytest.fixture(scope="module")
def repair(bench_dir):
    return load_benchmark("humaneval-java-repair")


@pytest.fixture(scope="module")
def repair_msg(bench_dir):
    return load_benchmark("humaneval-java-repair-msg")


def _tree_sitter_checks(tests: str) -> list[str] | None:
    """The checks as a Java parser sees them: the arguments of `correct`'s initializing call."""
    stack = [J.parse(tests).root_node]
    while stack:
        n = stack.pop()
        if n.type == "variable_declarator" and n.child_by_field_name("name").text == b"correct":
            value = n.child_by_field_name("value")
            if value is None or value.type != "method_invocation":
                return None
            return [
                " ".join(x.strip() for x in a.text.decode().splitlines())
                for a in value.child_by_field_name("arguments").named_children
                if a.type not in ("line_comment", "block_comment")
            ]
        stack.extend(reversed(n.children))
    return None


def test_the_lexer_reads_every_humaneval_x_check_as_the_parser_does(sources):
    """harness_checks runs at load time without tree-sitter; on all of HumanEval-X it must agree with it."""
    with_checks = 0
    for p in sources.values():
        expected = _tree_sitter_checks(p.tests)
        assert harness_checks(p.tests) == expected, p.task_id
        with_checks += expected is not None
    assert with_checks >= 160


def test_loading_the_java_repair_set_needs_neither_tree_sitter_nor_the_sandbox(bench_dir):
    code = (
        "import sys\nfrom codequant.benchmarks.registry import load_benchmark\n"
        "n = len(load_benchmark('humaneval-java-repair-msg'))\n"
        "print(n, sorted(m for m in sys.modules if m.startswith(('tree_sitter', 'codequant.sandbox', "
        "'codequant.benchmarks.build'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    count, loaded = out.stdout.split(" ", 1)
    assert int(count) >= 250 and loaded.strip() == "[]"


def test_shipped_rows_apply_and_match_their_source(sources):
    rows = read_rows()
    assert len(rows) >= 250 and len({r["task_id"] for r in rows}) == len(rows)
    for r in rows:
        src = sources[r["source_task_id"]]
        assert source_hash(src) == r["source_sha256"], r["task_id"]
        buggy = apply_row(src, r)
        assert buggy != src.canonical_solution and J.parses(src.prompt + buggy), r["task_id"]
        assert r["status"] in ("assertion", "exception") and r["exception_type"], r["task_id"]
        assert r["task_id"] == f"HumanEvalJavaRepair/{r['source_task_id'].split('/')[1]}/{r['operator']}"
    per_task = Counter(r["source_task_id"] for r in rows)
    assert max(per_task.values()) <= PER_TASK and len(per_task) >= 140
    for task in per_task:
        ops = [r["operator"] for r in rows if r["source_task_id"] == task]
        assert len(set(ops)) == len(ops)
    by_op = Counter(r["operator"] for r in rows)
    assert set(by_op) == set(J.OPERATORS) and min(by_op.values()) >= 5


def test_shipped_file_holds_no_solution_text(sources):
    """Licensing: no field of any row shares QUOTE_CHARS (20) consecutive characters with a canonical solution. The
    one exemption is the name of the exception the JVM threw (a JDK class such as NumberFormatException, which a
    solution may also name in a `catch`): it is the runtime's text, not the solution's."""
    solutions = "\n\0".join(p.canonical_solution for p in sources.values())
    for r in read_rows():
        for key, value in r.items():
            text = value if isinstance(value, str) else json.dumps(value)
            if r["exception_type"]:
                text = text.replace(r["exception_type"], "")
            assert not quotes(text, solutions), (r["task_id"], key, text)


def test_a_different_humaneval_x_file_fails_loudly(sources):
    from codequant.benchmarks.repair.java import repair_problems

    rows = read_rows()[:3]
    changed = [
        p
        if p.task_id != rows[0]["source_task_id"]
        else replace(p, canonical_solution=p.canonical_solution + "\n")
        for p in sources.values()
    ]
    with pytest.raises(CodequantError, match="build_java_repair.py"):
        repair_problems(rows, changed, False, "humaneval-java-repair")


def test_without_humaneval_x_the_loader_says_where_to_get_it(monkeypatch):
    monkeypatch.delenv("CODEQUANT_BENCHMARKS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CodequantError, match="--data"):
        load_benchmark("humaneval-java-repair")


def test_prompts_hold_the_buggy_method_and_in_msg_the_message(repair, repair_msg):
    assert (
        [p.task_id for p in repair] == [p.task_id for p in repair_msg] == [r["task_id"] for r in read_rows()]
    )
    for p, q in zip(repair, repair_msg, strict=True):
        assert p.language == "java" and p.extra["format"] == "humaneval-x" and p.extra["set_version"] == 1
        assert p.extra["operator"] in J.OPERATORS and p.benchmark == "humaneval-java-repair"
        first = p.extra["buggy_method"].splitlines()[0].strip()
        assert f"//     {first}" in p.prompt and p.prompt.rstrip().endswith(
            first
        )  # commented, then the signature
        message = p.extra["shown_message"]
        assert message.startswith(p.extra["message"])
        shown = "".join(f"    //     {line}".rstrip() + "\n" for line in message.splitlines())
        assert shown in q.prompt and shown not in p.prompt and "Running its tests fails" in q.prompt
        if p.extra["failing_check"] is not None:
            checks = harness_checks(p.tests)
            assert checks[p.extra["failing_check"]][:200] in q.prompt
        assert p.canonical_solution.rstrip().endswith("}") and p.tests.lstrip().startswith(
            "public class Main"
        )
    assert "```java\n" in chat_instruction(repair[0]) and "has a bug" in chat_instruction(repair[0])


def _check_in_sandbox(problems, workers=2):
    """Canonical (base continuation) passes, a chat answer with the whole fixed method and one with the whole class
    pass, and the buggy method fails the way the build recorded."""
    items = []
    for p in problems:
        signature = p.prompt.rstrip("\n").rsplit("\n", 1)[1] + "\n"
        method = signature + p.canonical_solution.rstrip()[:-1].rstrip() + "\n"
        whole_class = "import java.util.*;\n\nclass Solution {\n" + method + "}\n"
        base = extract_code(p, p.canonical_solution + "\npublic class Extra {}\n", "base")
        chat_method = extract_code(p, f"Here is the fix:\n```java\n{method}```\n", "chat")
        chat_class = extract_code(p, f"Fixed:\n\n```java\n{whole_class}```\nDone.", "chat")
        buggy_answer = extract_code(p, f"```java\n{p.extra['buggy_method']}```", "chat")
        items += [("java", build_program(p, x)) for x in (base, chat_method, chat_class, buggy_answer)]
    results = run_programs(items, workers=workers, progress=False)
    for i, p in enumerate(problems):
        base, chat_method, chat_class, buggy = results[4 * i : 4 * i + 4]
        for r in (base, chat_method, chat_class):
            assert r.passed, (p.task_id, r.status, r.stderr[-500:])
        assert not buggy.passed and str(buggy.status) == p.extra["status"], (
            p.task_id,
            buggy.status,
            buggy.stderr[-300:],
        )
        assert failure_message(buggy.stderr, p.canonical_solution) == p.extra["message"], p.task_id


@pytest.mark.java
@needs_javac
def test_canonical_passes_and_buggy_fails_on_a_sample(repair):
    """Every 40th problem (the whole set: the slow test below)."""
    _check_in_sandbox(repair[::40])


@pytest.mark.slow
@pytest.mark.java
@needs_javac
def test_every_java_repair_problem_in_the_sandbox(repair):
    _check_in_sandbox(repair)


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.java
@needs_javac
def test_rebuilding_a_few_problems_gives_the_shipped_rows(sources):
    wanted = ("Java/0", "Java/13", "Java/57")
    rows = build_rows([sources[t] for t in wanted], workers=2, log=lambda _: None)
    shipped = [r for r in read_rows() if r["source_task_id"] in wanted]
    assert rows == shipped and len(rows) >= 5


def test_listed_with_their_sizes(bench_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = {r["name"]: r for r in list_benchmarks()}
    n = len(read_rows())
    for name in ("humaneval-java-repair", "humaneval-java-repair-msg"):
        assert rows[name]["problems"] == n and rows[name]["language"] == "java"
        assert "humaneval_java_repair_v1.jsonl.gz" in rows[name]["source"]
        assert rows[name]["source"].endswith("humaneval-x/humaneval_java.jsonl.gz")
    assert "repair" in benchmark_info("humaneval-java-repair").description
