"""The best-iteration rule: the highest seen-split reward, the earlier iteration on ties, and the
unseen split never used for selection."""

from eto_assets.stages.evaluate import EvalReport, SplitMetrics
from eto_assets.stages.layout import ArtifactLayout
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.summary import IterationRow, best_row, summarize_iterations


def row(k, seen, unseen):
    return IterationRow(
        k, "sft" if k == 0 else "eto", {"eval_seen_avg_reward": seen, "eval_unseen_avg_reward": unseen}, ""
    )


def test_best_is_highest_seen_reward_never_unseen():
    assert best_row([row(0, 0.2, 0.9), row(1, 0.3, 0.1), row(2, 0.25, 0.5)]).iteration == 1


def test_ties_go_to_the_earlier_iteration():
    assert best_row([row(0, 0.3, 0.0), row(1, 0.3, 0.4)]).iteration == 0
    assert best_row([]) is None


def test_summary_reads_reports_and_names_the_best_version(tmp_path):
    layout = ArtifactLayout(tmp_path, "sciworld")
    for k, seen in enumerate([0.2, 0.4]):
        split = SplitMetrics(4, seen, 0.0, 5.0, {})
        EvalReport("sciworld", k, f"ckpt{k}", {"seen": split, "unseen": split}).write(layout.eval_report(k))
        PolicyRecord(f"ckpt{k}", model_version=str(k + 1)).write(layout, k)
    result = summarize_iterations(layout, 2)  # iteration 2 not evaluated: left out
    assert result.metadata["best_iteration"] == 1 and result.aliases == {"champion": "2"}
    assert "highest seen-split average reward (0.400)" in result.version_tags["2"]["eto.champion_reason"]
    table = layout.summary_md.read_text()
    assert "| 1 (best) | eto v2 | 0.400" in table and "| 2" not in table


def test_summary_says_the_rule_reports_test_numbers_and_comparability(tmp_path):
    import json

    layout = ArtifactLayout(tmp_path, "webshop")
    for k, (seen, unseen) in enumerate([(0.2, 0.7), (0.4, 0.3)]):
        splits = {
            "seen": SplitMetrics(4, seen, 0.0, 5.0, {}),
            "unseen": SplitMetrics(4, unseen, 0.25, 5.0, {}),
        }
        EvalReport("webshop", k, f"ckpt{k}", splits).write(layout.eval_report(k))
    layout.expert_dir.mkdir(parents=True)
    (layout.expert_dir / "comparability.json").write_text(json.dumps({"reasons": ["generated catalog"]}))
    result = summarize_iterations(layout, 1)
    text = layout.summary_md.read_text()
    assert "seen-split (dev) average reward" in text and "never used to choose" in text
    assert "Chosen: iteration 1; its test (unseen) numbers: avg_reward 0.300, success_rate 0.250" in text
    assert result.tags["eto.comparable_with_paper"] == "false: generated catalog"
    assert "Comparable with the paper's table: false: generated catalog" in text
