"""The selection rule through the real stages: with ``selection: final`` (ETO's protocol) WebShop
holds no dev slice, so the expert stage lists an empty seen split, the evaluation plays the test
goals only and records no train overlap, and the report names the last iteration champion and says
the seen split is empty. Real generated catalog, real environments, a scripted policy."""

import json
from collections import defaultdict

from eto_assets import stages
from eto_assets.config.profile import TaskScope, load_profile
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.registry import BenchmarkSources
from eto_assets.stages.policy import PolicyRecord
from tests.conftest import REPO

NANO = str(REPO / "tests" / "fixtures" / "nano.yaml")


class SearchingBackend:
    """Searches, then buys the first result: a policy that finishes WebShop episodes quickly."""

    max_context = None

    def __init__(self) -> None:
        self.turns: dict[str, int] = defaultdict(int)

    def prompt_tokens(self, conversation) -> None:
        return None

    def generate(self, conversations, config, *, seeds=None, sessions=None) -> list[str | None]:
        answers: list[str | None] = []
        for session in sessions or ["-"] * len(conversations):
            self.turns[session] += 1
            answers.append("Action: search[shoes]" if self.turns[session] == 1 else "Action: click[Buy Now]")
        return answers

    def end_session(self, session: str) -> None:
        self.turns.pop(session, None)

    def close(self) -> None:
        pass


def test_final_evaluates_webshop_on_test_only_and_names_the_last_iteration(tmp_path):
    nano = load_profile(NANO)
    scope = TaskScope(train_per_type=3, eval_per_type=2)
    profile = nano.model_copy(update={"selection": "final", "tasks": {"webshop": scope}})
    run = stages.open_task_run("webshop", profile, BenchmarkSources(home=tmp_path))
    assert run.tasks("seen") == [] and len(run.tasks("unseen")) == 2
    with EnvironmentPool() as envs:
        stages.generate_expert_data(run, envs)
        splits = json.loads(run.layout.splits_json.read_text())
        assert (len(splits["train"]), splits["seen"], len(splits["unseen"])) == (3, [], 2)
        results = {}
        for k in (0, 1):
            PolicyRecord(f"policy-{k}").write(run.layout, k)
            results[k] = stages.evaluate(run, k, lambda path: SearchingBackend(), envs)
    report = stages.EvalReport.read(run.layout.eval_report(1))
    assert set(report.splits) == {"unseen"} and report.seen_in_train == [] and report.seen_tasks == 0
    assert not any(m.startswith("eval_seen") for m in results[1].metrics)
    assert results[1].metadata["seen_in_train"] == "no seen task was evaluated (the seen split is empty)"
    result = stages.report_iterations(run.layout, 1, selection=run.profile.selection)
    assert result.aliases == {"champion": 1} and result.tags["eto.selection"] == "final"
    text = run.layout.summary_md.read_text()
    assert "Champion: iteration 1, the last one evaluated" in text and "the seen split is empty" in text
    assert "| seen_" not in text
