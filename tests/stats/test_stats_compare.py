import json

import pytest
from scipy.stats import chi2
from typer.testing import CliRunner

from codequant.cli import app
from codequant.errors import CodequantError
from codequant.stats.compare import compare_csv, compare_runs, parse_pair
from codequant.stats.correction import adjust
from codequant.stats.mcnemar import mcnemar_counts
from codequant.stats.options import CompareOptions
from codequant.stats.runs import read_run


def _write_run(folder, outcomes, *, model="m", benchmark="humaneval", samples=None, extra_lines=""):
    folder.mkdir(parents=True)
    with open(folder / "samples.jsonl", "w") as fh:
        for task, values in outcomes.items():
            for i, passed in enumerate(values):
                fh.write(
                    json.dumps({"task_id": task, "sample_index": i, "passed": passed, "language": "python"})
                    + "\n"
                )
        fh.write(extra_lines)
    n = samples or max(len(v) for v in outcomes.values())
    summary = {
        "pass@1": 0.0,
        "config": {"model": model, "benchmark": benchmark},
        "model": model,
        "scope": {"limit": None, "samples": n},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def three_runs(tmp_path):
    tasks = [f"HumanEval/{i}" for i in range(6)]
    base = {t: [True, True] if i < 5 else [False, False] for i, t in enumerate(tasks)}
    # worse: loses 8 completions, gains 1  -> b = 8, c = 1
    worse = {t: [False, False] if i < 3 else [True, False] for i, t in enumerate(tasks[:5])}
    worse[tasks[5]] = [True, False]
    same = {t: list(v) for t, v in base.items()}
    return (
        _write_run(tmp_path / "fp32", base),
        _write_run(tmp_path / "int2", worse, model="q2"),
        _write_run(tmp_path / "copy", same),
    )


def test_compare_two_synthetic_runs(three_runs):
    base, worse, same = three_runs
    rows = compare_runs(base, [worse, same], CompareOptions(correction="bh", test="mcnemar"))
    r, s = rows
    assert (r.baseline, r.other, r.model, r.language) == ("fp32", "int2", "m", "python")
    assert (r.b, r.c, r.n_pairs) == (8, 1, 12)
    assert r.odds_ratio == 8.0
    assert r.p_value == pytest.approx(2 * 10 / 512)  # P(X <= 1 | n = 9) doubled
    assert (s.b, s.c, s.p_value) == (0, 0, 1.0)
    assert [r.p_adjusted, s.p_adjusted] == pytest.approx(adjust([r.p_value, 1.0], "bh"))
    assert r.baseline_pass_rate == pytest.approx(10 / 12) and r.other_pass_rate == pytest.approx(3 / 12)
    by_problem = compare_runs(base, [worse], CompareOptions(by="problem", rule="any", correction="none"))[0]
    assert (by_problem.b, by_problem.c, by_problem.n_pairs) == (3, 1, 6)
    assert by_problem.test == "mcnemar"  # one outcome per problem: auto is McNemar's own test


def test_auto_test_is_clustered_with_several_completions_per_problem(three_runs):
    base, worse, _ = three_runs
    r = compare_runs(base, [worse], CompareOptions(correction="none"))[0]
    # d_p = b_p - c_p: 2, 2, 2, 1, 1, -1 -> (B - C)^2 / sum d_p^2 = 49 / 15 (Durkalski)
    assert r.test == "clustered" and r.method == "durkalski"
    assert r.p_value == pytest.approx(chi2.sf(49 / 15, 1), rel=1e-12)
    assert r.p_mcnemar == pytest.approx(2 * 10 / 512)  # the per-completion test stays in the row
    assert (r.n_problems, r.samples_per_problem) == (6, 2.0)
    assert r.pass_diff == pytest.approx(3 / 12 - 10 / 12)
    assert r.diff_ci_low < r.pass_diff < r.diff_ci_high
    perm = compare_runs(base, [worse], CompareOptions(correction="none", test="permutation"))[0]
    # 6 discordant problems, all 64 sign patterns: |2 (s1 + s2 + s3) + s4 + s5 - s6| >= 7 needs s1 = s2 = s3 and
    # s4 + s5 - s6 of the same sign >= 1: 4 patterns, and their 4 mirror images
    assert perm.test == "permutation" and perm.method == "exact" and perm.p_value == pytest.approx(8 / 64)
    with pytest.raises(CodequantError, match="unknown test"):
        compare_runs(base, [worse], CompareOptions(test="ttest"))


def test_read_run_respects_scope_and_drops_truncated_tail(tmp_path):
    folder = _write_run(
        tmp_path / "r", {"a": [True, False, True]}, samples=2, extra_lines='{"task_id": "a", "sa'
    )
    run = read_run(folder)
    assert run.outcomes == {"a": {0: True, 1: False}} and run.model == "m"
    with pytest.raises(CodequantError, match=r"no samples.jsonl.*codequant evaluate MODEL --benchmark NAME"):
        read_run(tmp_path / "missing")
    dup = _write_run(
        tmp_path / "d",
        {"a": [True]},
        extra_lines=json.dumps({"task_id": "a", "sample_index": 0, "passed": False}) + "\n",
    )
    with pytest.raises(CodequantError, match="twice"):
        read_run(dup)


def test_runs_of_different_benchmarks_or_problems_are_refused(tmp_path, three_runs):
    base = three_runs[0]
    other = _write_run(tmp_path / "mbpp", {"x": [True]}, benchmark="mbpp")
    with pytest.raises(CodequantError, match="same benchmark"):
        compare_runs(base, [other])
    partial = _write_run(tmp_path / "partial", {"HumanEval/0": [True, True], "HumanEval/1": [False, True]})
    with pytest.raises(CodequantError, match="different completions"):
        compare_runs(base, [partial])
    r = compare_runs(base, [partial], common_only=True)[0]
    assert (r.b, r.c, r.n_pairs) == (1, 0, 4)


def test_compare_csv_families_and_pairs(tmp_path):
    lines = ["model,quantization,language,problem,pass"]
    outcomes = {"16bit": [1, 1, 1, 1, 0, 1], "4bit": [1, 0, 1, 1, 0, 1], "2bit": [0, 0, 0, 1, 1, 0]}
    for lang in ("py", "java"):
        for quant, values in outcomes.items():
            for k, v in enumerate(values):  # two problems, three completions each, rows in completion order
                lines.append(f"mdl,{quant},{lang},P{k // 3},{v}")
    path = tmp_path / "cg.csv"
    path.write_text("\n".join(lines) + "\n")
    rows = compare_csv(path, "16bit", CompareOptions(correction="bh", test="mcnemar"))
    assert {r.pairing_key for r in rows} == {"order"}
    assert len(rows) == 4 and {r.family for r in rows} == {"mdl/py", "mdl/java"}
    two = next(r for r in rows if r.language == "py" and r.other == "2bit")
    four = next(r for r in rows if r.language == "py" and r.other == "4bit")
    assert (two.b, two.c, four.b, four.c) == (4, 1, 1, 0)
    ps = [mcnemar_counts(4, 1).p_value, mcnemar_counts(1, 0).p_value]
    assert [two.p_adjusted, four.p_adjusted] == pytest.approx(adjust(ps, "bh"))
    assert {r.test for r in compare_csv(path, "16bit")} == {"clustered"}
    pair = compare_csv(path, options=CompareOptions(correction="none"), pairs=[parse_pair("4bit:2bit")])
    assert len(pair) == 2 and (pair[0].b, pair[0].c) == (3, 1)
    with pytest.raises(CodequantError, match="no quantization '1bit'"):
        compare_csv(path, "1bit")
    with pytest.raises(CodequantError, match="either a baseline"):
        compare_csv(path)
    with pytest.raises(CodequantError, match="BASELINE:OTHER"):
        parse_pair("16bit")


def test_cli_compare_json_and_table(three_runs):
    base, worse, _ = three_runs
    runner = CliRunner()
    res = runner.invoke(app, ["compare", str(base), str(worse), "--json", "--correction", "holm"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows[0]["b"] == 8 and rows[0]["c"] == 1 and rows[0]["correction"] == "holm"
    for key in (
        "model",
        "language",
        "baseline",
        "other",
        "b",
        "c",
        "n_pairs",
        "odds_ratio",
        "p_value",
        "p_adjusted",
    ):
        assert key in rows[0]
    table = runner.invoke(app, ["compare", str(base), str(worse)])
    assert table.exit_code == 0 and "int2" in table.output and "8.000" in table.output
    bad = runner.invoke(app, ["compare", str(base)])
    assert isinstance(bad.exception, CodequantError) and "at least one other" in str(bad.exception)


def test_cli_compare_test_option(three_runs):
    base, worse, _ = three_runs
    runner = CliRunner()
    auto = runner.invoke(app, ["compare", str(base), str(worse)])
    assert auto.exit_code == 0, auto.output
    assert "clustered McNemar (Durkalski)" in auto.output and "--test mcnemar" in auto.output
    rows = {
        t: json.loads(runner.invoke(app, ["compare", str(base), str(worse), "--json", "--test", t]).output)[0]
        for t in ("mcnemar", "clustered", "permutation")
    }
    assert rows["mcnemar"]["p_value"] == pytest.approx(2 * 10 / 512)
    assert rows["clustered"]["p_value"] == pytest.approx(chi2.sf(49 / 15, 1))
    assert rows["permutation"]["p_value"] == pytest.approx(8 / 64)
    assert all(r["p_mcnemar"] == pytest.approx(2 * 10 / 512) for r in rows.values())
    assert all(r["pass_diff"] == pytest.approx(-7 / 12) for r in rows.values())
    bad = runner.invoke(app, ["compare", str(base), str(worse), "--test", "ttest"])
    assert isinstance(bad.exception, CodequantError) and "unknown test" in str(bad.exception)


def test_cli_from_csv_says_how_it_paired(tmp_path):
    lines = ["model,quantization,language,problem,pass"]
    for quant, values in {"16bit": [1, 1, 1, 1, 0, 1], "2bit": [0, 0, 0, 1, 1, 0]}.items():
        lines += [f"mdl,{quant},py,P{k // 3},{v}" for k, v in enumerate(values)]
    path = tmp_path / "cg.csv"
    path.write_text("\n".join(lines) + "\n")
    out = CliRunner().invoke(app, ["compare", "--from-csv", str(path), "--baseline", "16bit"])
    assert out.exit_code == 0, out.output
    assert "paired by their order within each problem" in out.output


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 1.0}, "--alpha must lie strictly between 0 and 1"),
        ({"resamples": 0}, "--resamples must be at least 1"),
        ({"by": "task"}, "unknown pairing 'task'"),
        ({"rule": "most"}, "unknown problem rule 'most'"),
        ({"method": "midp"}, "unknown McNemar method 'midp'"),
        ({"ci": "wilson"}, "unknown CI method 'wilson'"),
        ({"correction": "sidak"}, "unknown correction 'sidak'"),
    ],
)
def test_compare_options_are_checked_once_when_made(kwargs, message):
    with pytest.raises(CodequantError, match=message):
        CompareOptions(**kwargs)
    assert CompareOptions(correction="BH").correction == "bh"  # aliases normalised once
