"""The iteration report: the selection rules (``seen``: the highest seen-split reward, the earlier
iteration on ties, the unseen split never used for selection, the untrained base model never a
candidate; ``seen_not_in_train``: the same on the seen tasks that are not train tasks; ``final``:
ETO's protocol, the last iteration, no selection), each stated in the summary, the metadata and the
champion's reason tag, with the seen/train overlap counted from the evaluated tasks; the champion
named by iteration, and one table (Markdown and CSV) with a row per policy."""

import csv
import io
import json

import pytest

from eto_assets.data.schemas import Message, PreferencePair, Trajectory, write_jsonl
from eto_assets.stages import report_iterations, report_table
from eto_assets.stages.evaluate import EvalReport, SplitMetrics, summarize, train_overlap
from eto_assets.stages.expert import comparability_path
from eto_assets.stages.layout import ArtifactLayout
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.report import SELECTION_RULES, TRAIN_RESULT, PolicyRow, best_row


def row(k, seen, unseen):
    return PolicyRow(k, {"eval_seen_avg_reward": seen, "eval_unseen_avg_reward": unseen})


def write_report(layout, k, seen, unseen=None, success=0.0, in_train=None, not_in_train=None):
    """An eval report; ``seen`` None: the seen split is empty (not evaluated)."""
    splits = {"unseen": SplitMetrics(4, seen if unseen is None else unseen, success, 5.0, {})}
    if seen is not None:
        splits["seen"] = SplitMetrics(4, seen, 0.0, 5.0, {})
    subset = None if not_in_train is None else SplitMetrics(4 - len(in_train), not_in_train, 0.0, 5.0, {})
    EvalReport(layout.task, k, f"ckpt{k}", splits, in_train, subset).write(layout.eval_report(k))


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
    prompt, answer = [Message("user", "task")], [Message("assistant", "Action: go")]
    pair = PreferencePair("t/0", "t", prompt, answer, answer, 1.0, 0.0, "expert", "agent")
    write_jsonl(layout.pairs_jsonl(1), [pair, pair])
    checkpoint = tmp_path / "checkpoints" / "eto-1"  # wherever the policy record says it is
    checkpoint.mkdir(parents=True)
    (checkpoint / TRAIN_RESULT).write_text(json.dumps({"metrics": {"train_loss": 0.5}}))
    PolicyRecord(str(checkpoint)).write(layout, 1)

    table, best = report_table(layout, 1)
    assert best.iteration == 1 and not layout.report_dir.exists()  # the CLI's table writes nothing
    assert "| base | base | 0.050 |" in table and "| 1 (best) | eto-1 | 0.400 |" in table

    result = report_iterations(layout, 1, wall_seconds={("eto", 0): 12.0, ("eto", 1): 30.0})
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


# ------------------------------------------------------------------------------ the selection rules


def test_every_rule_is_stated_in_the_summary_the_metadata_and_the_reason_tag(tmp_path):
    from eto_assets.config.profile import Profile

    assert set(SELECTION_RULES) == set(Profile.model_fields["selection"].annotation.__args__)
    for selection, rule in SELECTION_RULES.items():
        layout = ArtifactLayout(tmp_path / selection, "alfworld")
        for k, seen in enumerate([0.2, 0.4]):
            write_report(layout, k, seen, in_train=[])
        result = report_iterations(layout, 1, selection=selection)
        stated = f"Selection ({selection}): {rule}."
        assert stated in layout.summary_md.read_text() and result.metadata["selection"].startswith(stated)
        assert result.metadata["selection_rule"] == selection and result.tags["eto.selection"] == selection
        assert rule in result.policy_tags[1]["eto.champion_reason"]
        assert rule in result.tags["eto.champion"]
    with pytest.raises(ValueError, match="unknown selection"):
        report_iterations(layout, 1, selection="test")


def test_final_names_the_last_iteration_champion_whatever_the_seen_split_says(tmp_path):
    """ETO's protocol (run_eto.sh evaluates --split test after SFT and every iteration): no selection."""
    layout = ArtifactLayout(tmp_path, "sciworld")
    for k, (seen, unseen) in enumerate([(0.9, 0.1), (0.3, 0.5), (0.2, 0.4)]):
        write_report(layout, k, seen, unseen, success=0.25)
    assert best_row([row(0, 0.9, 0.1), row(1, 0.3, 0.5), row(2, 0.2, 0.4)], "final").iteration == 2
    assert best_row([row(0, 0.9, 0.1), row(1, 0.3, 0.5), row(2, 0.2, 0.4)], "seen").iteration == 0
    result = report_iterations(layout, 2, selection="final")
    assert result.metadata["best_iteration"] == 2 and result.aliases == {"champion": 2}
    text = layout.summary_md.read_text()
    assert "no model selection, as in ETO" in text
    assert "Champion: iteration 2, the last one evaluated, not chosen on any split" in text
    assert "its test (unseen) numbers: avg_reward 0.400, success_rate 0.250" in text
    # every iteration's test numbers are in the table; only the champion is marked
    assert "| 0 | sft | 0.900 | 0.000 | 0.100 |" in text and "| 1 | eto-1 | 0.300 | 0.000 | 0.500 |" in text
    assert "| 2 (champion) | eto-2 | 0.200 | 0.000 | 0.400 |" in text and "(best)" not in text
    reason = result.policy_tags[2]["eto.champion_reason"]
    assert reason.startswith("iteration 2 is the last iteration evaluated (selection: final)")


def test_seen_not_in_train_chooses_on_the_seen_tasks_that_are_not_train_tasks(tmp_path):
    """Iteration 1 is best on the whole seen split, iteration 0 on its tasks that are not train tasks."""
    layout = ArtifactLayout(tmp_path, "sciworld")
    in_train = ["boil/1", "boil/2", "melt/3"]  # 3 of the 4 seen tasks are train tasks
    write_report(layout, 0, 0.30, in_train=in_train, not_in_train=0.60)
    write_report(layout, 1, 0.50, in_train=in_train, not_in_train=0.20)
    seen = report_iterations(layout, 1, selection="seen")
    assert seen.aliases == {"champion": 1}
    assert "3 of the 4 seen (dev) tasks are also train tasks" in seen.metadata["selection"]
    assert "`selection: seen_not_in_train` chooses on the 1 that are not" in seen.metadata["selection"]
    assert "3 of the 4 seen (dev) tasks are also train tasks" in seen.policy_tags[1]["eto.champion_reason"]

    chosen = report_iterations(layout, 1, selection="seen_not_in_train")
    assert chosen.aliases == {"champion": 0} and chosen.metadata["best_iteration"] == 0
    text = layout.summary_md.read_text()
    assert "3 of the 4 seen (dev) tasks are also train tasks; the choice uses the 1 that are not" in text
    assert "| 0 (best) | sft | 0.300 | 0.000 | 0.600 | 0.000 |" in text  # seen, then seen_not_in_train
    head = text.splitlines()[2]
    assert "| seen_avg_reward | seen_success_rate | seen_not_in_train_avg_reward |" in head
    reason = chosen.policy_tags[0]["eto.champion_reason"]
    assert reason.startswith("iteration 0 has the highest average reward on the seen tasks that are not")
    assert "(0.600)" in reason


def test_seen_not_in_train_is_the_seen_rule_where_no_seen_task_is_a_train_task(tmp_path):
    layout = ArtifactLayout(tmp_path, "alfworld")
    for k, seen in enumerate([0.2, 0.4]):
        write_report(layout, k, seen, in_train=[])
    result = report_iterations(layout, 1, selection="seen_not_in_train")
    assert result.aliases == {"champion": 1}
    assert (
        "No seen task is a train task here, so this is the seen-split rule." in result.metadata["selection"]
    )
    assert "seen_not_in_train" not in result.metadata["table"]  # no column that repeats the seen one


def test_the_overlap_is_counted_from_etos_sciworld_splits(tmp_path, data_dir):
    """With ETO's own lists, 54 of the 194 dev (seen) tasks are train tasks: the evaluation counts
    them from the tasks it played, and the report says so for the rules that read the seen split."""
    from eto_assets.envs.sciworld import SciWorldBenchmark

    bench = SciWorldBenchmark(data_dir=data_dir)
    train_ids = {t.task_id for t in bench.tasks("train")}
    layout = ArtifactLayout(tmp_path, "sciworld")
    for k in (0, 1):
        played = [
            Trajectory(t.task_id, t.task_type, "seen", [Message("user", "x")], float(k), False, "agent")
            for t in bench.tasks("seen")
        ]
        in_train, subset = train_overlap(played, train_ids)
        EvalReport("sciworld", k, f"ckpt{k}", {"seen": summarize(played)}, in_train, subset).write(
            layout.eval_report(k)
        )
    assert (len(in_train), subset.episodes) == (54, 140)
    note = report_iterations(layout, 1, selection="seen").metadata["selection"]
    assert "54 of the 194 seen (dev) tasks are also train tasks" in note
    assert "`selection: seen_not_in_train` chooses on the 140 that are not" in note
    note = report_iterations(layout, 1, selection="seen_not_in_train").metadata["selection"]
    assert "54 of the 194 seen (dev) tasks are also train tasks; the choice uses the 140" in note
    assert "54 of the 194" in layout.summary_md.read_text()


def test_an_empty_seen_split_leaves_no_seen_column_and_no_division_by_zero(tmp_path):
    """WebShop under `final` holds no dev slice: only the test goals are evaluated."""
    assert summarize([]).episodes == 0
    empty = EvalReport("webshop", 0, "ckpt", {}, [], None)
    assert empty.metrics() == {"eval_avg_steps": 0.0} and empty.seen_tasks == 0
    layout = ArtifactLayout(tmp_path, "webshop")
    for k, unseen in enumerate([0.5, 0.4]):
        write_report(layout, k, None, unseen, in_train=[])
    result = report_iterations(layout, 1, selection="final")
    assert result.aliases == {"champion": 1}
    text = layout.summary_md.read_text()
    assert (
        text.splitlines()[2] == "| iteration | method | unseen_avg_reward | unseen_success_rate | avg_steps |"
    )
    assert "| 1 (champion) | eto-1 | 0.400 | 0.000 | 5.000 |" in text
    assert "the seen split is empty" in text and "also train tasks" not in text
    assert layout.report_csv.read_text().splitlines()[0] == (
        "iteration,method,eval_unseen_avg_reward,eval_unseen_success_rate,eval_avg_steps"
    )


def test_eval_reports_round_trip_the_overlap_and_read_older_reports(tmp_path):
    seen = [
        Trajectory(task, "boil", "seen", [Message("user", "x")], reward, reward == 1.0, "agent")
        for task, reward in (("boil/1", 1.0), ("boil/2", 0.0), ("boil/3", 0.5))
    ]
    in_train, subset = train_overlap(seen, {"boil/1", "boil/9"})
    assert in_train == ["boil/1"] and (subset.episodes, subset.avg_reward) == (2, 0.25)
    assert train_overlap(seen, {"boil/9"}) == ([], None)  # no overlap: nothing extra recorded
    report = EvalReport("sciworld", 1, "ckpt", {"seen": summarize(seen)}, in_train, subset)
    report.write(tmp_path / "r.json")
    again = EvalReport.read(tmp_path / "r.json")
    assert again == report
    assert again.metrics()["eval_seen_not_in_train_avg_reward"] == 0.25
    old = {k: v for k, v in report.to_dict().items() if k not in ("seen_in_train", "seen_not_in_train")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    older = EvalReport.read(tmp_path / "old.json")
    assert older.seen_in_train is None and "eval_seen_not_in_train_avg_reward" not in older.metrics()


def test_an_older_evaluation_gets_the_overlap_from_the_run_files(tmp_path):
    """Reports written before the overlap was recorded: the train ids of splits.json and the seen
    episodes played give the same counts and the same seen_not_in_train numbers."""
    layout = ArtifactLayout(tmp_path, "sciworld")
    played = [
        Trajectory(task, "boil", "seen", [Message("user", "x")], reward, False, "agent")
        for task, reward in (("boil/1", 1.0), ("boil/2", 0.0), ("boil/3", 0.5))
    ]
    write_jsonl(layout.eval_jsonl(0, "seen"), played)
    layout.splits_json.parent.mkdir(parents=True)
    layout.splits_json.write_text(json.dumps({"train": ["boil/1", "boil/7"], "seen": [], "unseen": []}))
    EvalReport("sciworld", 0, "ckpt", {"seen": summarize(played)}).write(layout.eval_report(0))
    result = report_iterations(layout, 0, selection="seen_not_in_train")
    assert (
        "1 of the 3 seen (dev) tasks are also train tasks; the choice uses the 2"
        in result.metadata["selection"]
    )
    assert "| 0 (best) | sft | 0.500 | 0.000 | 0.250 | 0.000 |" in layout.summary_md.read_text()
