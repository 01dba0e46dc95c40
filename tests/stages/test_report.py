"""The iteration report: the best-iteration rule (the highest seen-split reward, the earlier
iteration on ties, the unseen split never used for selection, the untrained base model never a
candidate), the champion named by iteration, and one table (Markdown and CSV) with a row per policy."""

import csv
import io
import json

from eto_assets.data.schemas import Message, PreferencePair, write_jsonl
from eto_assets.stages import report_iterations, report_table
from eto_assets.stages.evaluate import EvalReport, SplitMetrics
from eto_assets.stages.expert import comparability_path
from eto_assets.stages.layout import ArtifactLayout
from eto_assets.stages.report import TRAIN_RESULT, PolicyRow, best_row


def row(k, seen, unseen):
    return PolicyRow(k, {"eval_seen_avg_reward": seen, "eval_unseen_avg_reward": unseen})


def write_report(layout, k, seen, unseen=None, success=0.0):
    splits = {
        "seen": SplitMetrics(4, seen, 0.0, 5.0, {}),
        "unseen": SplitMetrics(4, seen if unseen is None else unseen, success, 5.0, {}),
    }
    EvalReport(layout.task, k, f"ckpt{k}", splits).write(layout.eval_report(k))


def test_best_is_highest_seen_reward_never_unseen():
    assert best_row([row(0, 0.2, 0.9), row(1, 0.3, 0.1), row(2, 0.25, 0.5)]).iteration == 1


def test_ties_go_to_the_earlier_iteration():
    assert best_row([row(0, 0.3, 0.0), row(1, 0.3, 0.4)]).iteration == 0
    assert best_row([]) is None


def test_the_base_model_is_a_baseline_never_the_best():
    assert best_row([row(-1, 0.9, 0.9), row(0, 0.2, 0.1), row(1, 0.1, 0.0)]).iteration == 0
    assert best_row([row(-1, 0.9, 0.9)]) is None


def test_rows_are_named_by_method():
    assert [row(k, 0, 0).method for k in (-1, 0, 1, 2)] == ["base", "sft", "eto-1", "eto-2"]


def test_report_reads_reports_and_names_the_champion_iteration(tmp_path):
    layout = ArtifactLayout(tmp_path, "sciworld")
    write_report(layout, -1, 0.9)  # the untrained model scores highest here: still not a candidate
    for k, seen in enumerate([0.2, 0.4]):
        write_report(layout, k, seen)
    result = report_iterations(layout, 2)  # iteration 2 not evaluated: left out
    assert result.metadata["best_iteration"] == 1 and result.aliases == {"champion": 1}
    assert set(result.policy_tags) == {1}
    assert "highest seen-split average reward (0.400)" in result.policy_tags[1]["eto.champion_reason"]
    assert result.tags["eto.champion"].startswith("iteration 1: ")
    assert layout.summary_md == tmp_path / "artifacts" / "sciworld" / "report" / "summary.md"
    table = layout.summary_md.read_text()
    assert "| 1 (best) | eto-1 | 0.400" in table and "| 2" not in table
    assert "| base | base | 0.900" in table and "| 0 | sft | 0.200" in table


def test_report_says_the_rule_reports_test_numbers_and_comparability(tmp_path):
    layout = ArtifactLayout(tmp_path, "webshop")
    for k, (seen, unseen) in enumerate([(0.2, 0.7), (0.4, 0.3)]):
        write_report(layout, k, seen, unseen, success=0.25)
    comparability_path(layout).parent.mkdir(parents=True)
    comparability_path(layout).write_text(json.dumps({"reasons": ["generated catalog"]}))
    result = report_iterations(layout, 1)
    text = layout.summary_md.read_text()
    assert "seen-split (dev) average reward" in text and "never used to choose" in text
    assert "Chosen: iteration 1; its test (unseen) numbers: avg_reward 0.300, success_rate 0.250" in text
    assert result.tags["eto.comparable_with_paper"] == "false: generated catalog"
    assert "Comparable with the paper's table: false: generated catalog" in text


def test_one_table_with_a_row_per_policy_as_markdown_and_csv(tmp_path):
    layout = ArtifactLayout(tmp_path, "sciworld")
    for k, seen in ((-1, 0.05), (0, 0.2), (1, 0.4)):
        write_report(layout, k, seen)
    message = [Message("user", "task")]
    pair = PreferencePair("t/0", "t", message, message, message, 1.0, 0.0, "expert", "agent")
    write_jsonl(layout.pairs_jsonl(1), [pair, pair])
    layout.checkpoint_dir(1).mkdir(parents=True)
    (layout.checkpoint_dir(1) / TRAIN_RESULT).write_text(json.dumps({"metrics": {"train_loss": 0.5}}))

    table, best = report_table(layout, 1)
    assert best.iteration == 1 and not layout.report_dir.exists()  # the CLI's table writes nothing
    assert "| base | base | 0.050 |" in table and "| 1 (best) | eto-1 | 0.400 |" in table

    result = report_iterations(layout, 1, wall_seconds={0: 12.0, 1: 30.0})
    assert layout.report_csv == layout.report_dir / "iterations.csv"
    rows = list(csv.DictReader(io.StringIO(layout.report_csv.read_text())))
    assert [(r["iteration"], r["method"]) for r in rows] == [("base", "base"), ("0", "sft"), ("1", "eto-1")]
    assert [float(r["eval_seen_avg_reward"]) for r in rows] == [0.05, 0.2, 0.4]
    assert [r["pairs"] for r in rows] == ["", "", "2"]
    assert [r["train_loss"] for r in rows] == ["", "", "0.5"]
    assert [r["wall_seconds"] for r in rows] == ["", "12.0", "30.0"]
    assert len(result.metadata["table"].splitlines()) == 2 + 3  # head, rule, one row per policy
    assert result.metadata["table"] in layout.summary_md.read_text()
    assert "| base | base | 0.050 |" in result.metadata["table"]
    plots = {"reward_by_iteration.png", "efficiency_curve.png", "exploration_and_pairs.png"}
    assert {p.name for p in layout.report_dir.glob("*.png")} == plots
    assert {p.name for p, folder in result.artifacts if folder == "report"} == {
        "summary.md",
        "iterations.csv",
        *plots,
    }
