"""Paired comparison of text-scored runs: per-problem means, Wilcoxon per metric, BH per (baseline, metric)."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from codequant.errors import CodequantError
from codequant.stats import compare_runs, compare_score_runs, compare_scores, read_run
from codequant.stats.scores import problem_means


def write_run(folder, scores, benchmark="humaneval-summarize"):
    """A text-scored run folder as `evaluate` writes it: scores = {task: [(bleu, rouge_l) per sample]}."""
    folder.mkdir(parents=True)
    rows = [
        {
            "task_id": t,
            "sample_index": i,
            "language": "python",
            "status": "scored",
            "passed": None,
            "summary": "s",
            "reference": "r",
            "bleu": b,
            "rouge_l": r,
        }
        for t, samples in scores.items()
        for i, (b, r) in enumerate(samples)
    ]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    n = max(len(s) for s in scores.values())
    (folder / "summary.json").write_text(
        json.dumps({"config": {"model": "m", "benchmark": benchmark}, "scope": {"samples": n}})
    )
    return folder


BASE = {f"T/{k}": [(40.0 + k, 0.5 + k / 100)] for k in range(12)}


def test_clearly_better_run_has_small_p_and_identical_runs_p_one(tmp_path):
    base = write_run(tmp_path / "base", BASE)
    better = write_run(
        tmp_path / "better", {t: [(b + 10 + k, r + 0.1)] for k, (t, [(b, r)]) in enumerate(BASE.items())}
    )
    same = write_run(tmp_path / "same", BASE)
    rows = compare_score_runs(base, [better, same])
    by = {(r.other, r.metric): r for r in rows}
    up = by[("better", "bleu")]
    assert up.n_problems == 12 and up.n_nonzero == 12 and up.mean_diff == pytest.approx(15.5)
    assert up.p_value == pytest.approx(2 / 2**12)  # all 12 differences positive: exact two-sided p
    assert up.baseline_mean == pytest.approx(45.5) and up.other_mean == pytest.approx(61.0)
    assert by[("better", "rouge_l")].p_value < 0.001
    assert by[("same", "bleu")].p_value == 1.0 and by[("same", "rouge_l")].p_value == 1.0
    # BH per (baseline, metric): bleu family = {better: 2/4096, same: 1} -> adjusted 2 * 2/4096 / 1 ... min-p step
    assert up.p_adjusted == pytest.approx(2 * (2 / 2**12)) and up.correction == "bh"
    assert by[("same", "bleu")].p_adjusted == 1.0


def test_pairs_by_problem_not_by_position(tmp_path):
    # the other run improves every problem by 1 BLEU but lists the problems in another order; an unpaired
    # (rank-sum) view would see two nearly identical samples, the paired test sees 12 positive differences
    base = {t: [(float(10 * k), 0.5)] for k, t in enumerate(BASE)}
    other = {t: [(v[0][0] + 1, 0.5)] for t, v in reversed(base.items())}
    rows = compare_score_runs(write_run(tmp_path / "a", base), [write_run(tmp_path / "b", other)])
    bleu = next(r for r in rows if r.metric == "bleu")
    assert bleu.p_value == pytest.approx(2 / 2**12)
    unpaired = stats.mannwhitneyu([v[0][0] for v in base.values()], [v[0][0] for v in other.values()]).pvalue
    assert unpaired > 0.5


def test_samples_are_averaged_per_problem_first(tmp_path):
    assert problem_means({"a": {0: 10.0, 1: 30.0}, "b": {0: 5.0}}) == {"a": 20.0, "b": 5.0}
    res = compare_scores(
        {"a": {0: 10.0, 1: 30.0}, "b": {0: 5.0}}, {"a": {0: 20.0, 1: 20.0}, "b": {0: 6.0}}, metric="bleu"
    )
    assert res.n_problems == 2 and res.n_nonzero == 1 and res.mean_diff == pytest.approx(0.5)


def test_read_run_keeps_scores_not_fake_outcomes_and_mcnemar_refuses(tmp_path):
    run = read_run(write_run(tmp_path / "a", {"T/0": [(12.5, 0.25), (20.0, 0.5)]}))
    assert run.scored and run.outcomes == {}
    assert run.scores == {"bleu": {"T/0": {0: 12.5, 1: 20.0}}, "rouge_l": {"T/0": {0: 0.25, 1: 0.5}}}
    write_run(tmp_path / "b", {"T/0": [(1.0, 0.1), (2.0, 0.2)]})
    with pytest.raises(CodequantError, match="Wilcoxon"):
        compare_runs(tmp_path / "a", [tmp_path / "b"])
    with pytest.raises(CodequantError, match="different problems"):
        compare_score_runs(tmp_path / "a", [write_run(tmp_path / "c", {"T/9": [(1.0, 0.1)]})])


def test_cli_compare_prints_wilcoxon_table(tmp_path):
    from typer.testing import CliRunner

    from codequant.cli import app

    base = write_run(tmp_path / "base", BASE)
    better = write_run(tmp_path / "better", {t: [(b + 5, r)] for t, [(b, r)] in BASE.items()})
    res = CliRunner().invoke(app, ["compare", str(base), str(better), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [(r["metric"], r["test"]) for r in rows] == [("bleu", "wilcoxon"), ("rouge_l", "wilcoxon")]
    assert rows[0]["mean_diff"] == pytest.approx(5.0) and rows[1]["p_value"] == 1.0
    table = CliRunner().invoke(app, ["compare", str(base), str(better)])
    assert table.exit_code == 0 and "Wilcoxon signed-rank" in table.output
