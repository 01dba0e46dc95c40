"""The invalid-format reward rule (``rollout.invalid_format_reward``) on the real engines.

ETO's ``step`` (eval_agent/envs/*_env.py) sets the episode reward to 0 on a reply without an
``Action:`` line, so an episode that ends on such a turn scores 0; ``"keep"`` is the project's earlier
rule (the running maximum stays). The rollout engine applies the rule to every benchmark; these tests
play scripted answers through ``run_rollouts`` against ScienceWorld's JVM, real ALFWorld games and the
WebShop env. Only ScienceWorld has partial scores before the episode ends, so only there can the rule
change a final reward (and with it a tie and the direction of a preference pair).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

from eto_assets.agent.prompt import PromptBook
from eto_assets.agent.rollout import run_rollouts
from eto_assets.config.profile import RolloutConfig
from eto_assets.data.pairs import make_pair
from eto_assets.data.react import parse_answer
from eto_assets.data.schemas import Trajectory
from eto_assets.envs.base import INVALID_FORMAT_OBSERVATION, TaskInstance, replay_actions

INVALID = "I should look around first."  # no "Action:" line: an invalid-format turn
BOOK = PromptBook(instruction="Play the task.", examples={})


class ScriptedBackend:
    """Answers each episode's turns from a fixed script, so the tests drive the real engines."""

    def __init__(self, script: Sequence[str]) -> None:
        self.script = list(script)
        self.turns: dict[str, int] = defaultdict(int)

    def generate(self, conversations, config, *, seeds=None, sessions=None) -> list[str | None]:
        answers: list[str | None] = []
        for session in sessions or ["-"] * len(conversations):
            turn = self.turns[session]
            self.turns[session] += 1
            answers.append(self.script[turn] if turn < len(self.script) else None)
        return answers

    def end_session(self, session: str) -> None:
        self.turns.pop(session, None)

    def close(self) -> None:
        pass


def play(bench, task: TaskInstance, script: Sequence[str], rule: str, tmp_path: Path) -> Trajectory:
    """One episode of ``script`` under ``rule`` through the rollout engine and ``bench``'s real engine."""
    [traj] = run_rollouts(
        [task],
        bench.make_env,
        ScriptedBackend(script),
        BOOK,
        tmp_path / f"{rule}-{len(script)}.jsonl",
        RolloutConfig(concurrency=1, invalid_format_reward=rule),
    )
    return traj


def with_max_steps(task: TaskInstance, max_steps: int) -> TaskInstance:
    return TaskInstance(task.task_id, task.task_type, task.split, max_steps, task.payload)


def expert_answers(traj: Trajectory) -> list[str]:
    return [f"Action: {parse_answer(m.content).action}" for m in traj.messages if m.role == "assistant"]


# -- ScienceWorld: partial scores, so the rule decides the final reward -------------------------------
@pytest.fixture(scope="module")
def sciworld_scoring(sciworld_small):
    """A task and a gold-path prefix that scores partially (0 < reward < 1) without ending."""
    bench, env = sciworld_small
    task = bench.tasks("seen")[0]
    gold = env.gold_actions(task)
    prefix = gold[: len(gold) // 2]
    partial = replay_actions(env, with_max_steps(task, len(gold)), [(None, a) for a in prefix])
    assert 0.0 < partial.reward < 1.0 and not partial.success
    return bench, task, gold, prefix, partial


@pytest.mark.parametrize("rule", ["zero", "keep"])
def test_sciworld_episode_ending_on_invalid_format(sciworld_scoring, rule, tmp_path):
    bench, task, _, prefix, partial = sciworld_scoring
    script = [f"Action: {a}" for a in prefix] + [INVALID]
    traj = play(bench, with_max_steps(task, len(script)), script, rule, tmp_path)
    assert traj.metadata["ended_by"] == "max_steps"
    assert traj.messages[-1].content == INVALID
    assert traj.metadata["step_rewards"][-2] == partial.reward
    expected = 0.0 if rule == "zero" else partial.reward  # ETO: sciworld_env.py sets 0 and ends there
    assert traj.reward == expected
    assert traj.metadata["step_rewards"][-1] == expected


@pytest.mark.parametrize("rule", ["zero", "keep"])
def test_sciworld_later_valid_step_scores_again(sciworld_scoring, rule, tmp_path):
    """ETO: the next valid step takes the engine's score again (its running max restarts from 0)."""
    bench, task, gold, prefix, partial = sciworld_scoring
    script = [f"Action: {a}" for a in prefix] + [INVALID, f"Action: {gold[len(prefix)]}"]
    traj = play(bench, with_max_steps(task, len(script)), script, rule, tmp_path)
    rewards = traj.metadata["step_rewards"]
    assert rewards[-3] == partial.reward
    assert rewards[-2] == (0.0 if rule == "zero" else partial.reward)
    assert rewards[-1] >= partial.reward and traj.reward == rewards[-1]


def test_sciworld_rule_decides_the_tie_and_the_pair(sciworld_scoring, tmp_path):
    """Against a reference of the same partial score, "keep" ties (no pair) while ETO's "zero"
    makes the agent lose: the reference is chosen."""
    bench, task, _, prefix, partial = sciworld_scoring
    script = [f"Action: {a}" for a in prefix] + [INVALID]
    short = with_max_steps(task, len(script))
    kept = play(bench, short, script, "keep", tmp_path)
    zeroed = play(bench, short, script, "zero", tmp_path)
    assert make_pair(partial, kept) is None
    pair = make_pair(partial, zeroed)
    assert pair is not None
    assert pair.chosen_source == partial.source and pair.rejected_reward == 0.0
    assert pair.chosen_reward == partial.reward


# -- ALFWorld: the reward is 0 until the game is won, which ends the episode ---------------------------
@pytest.fixture(scope="module")
def alfworld(data_dir: Path):
    if not (data_dir / "alfworld" / "json_2.1.1").is_dir():
        pytest.skip(f"no ALFWorld game files under {data_dir / 'alfworld' / 'json_2.1.1'}")
    pytest.importorskip("textworld", reason="ALFWorld's engine needs textworld[pddl]==1.6.2")
    pytest.importorskip("fast_downward", reason="ALFWorld's engine needs fast-downward-textworld")
    from eto_assets.envs.alfworld.benchmark import AlfWorldBenchmark

    bench = AlfWorldBenchmark(data_dir=data_dir)
    task = bench.tasks("seen")[0]
    env = bench.make_env()
    try:
        expert = bench.expert_trajectory(env, task)
    finally:
        env.close()
    assert expert is not None and expert.reward == 1.0
    return bench, task, expert_answers(expert)


@pytest.mark.parametrize("rule", ["zero", "keep"])
def test_alfworld_invalid_format_then_win(alfworld, rule, tmp_path):
    bench, task, answers = alfworld
    traj = play(bench, task, [INVALID, *answers], rule, tmp_path)
    assert traj.messages[2].content.endswith(INVALID_FORMAT_OBSERVATION)
    assert traj.metadata["step_rewards"][0] == 0.0
    assert traj.reward == 1.0 and traj.success


@pytest.mark.parametrize("rule", ["zero", "keep"])
def test_alfworld_episode_ending_on_invalid_format_scores_zero(alfworld, rule, tmp_path):
    bench, task, answers = alfworld
    script = [*answers[:-1], INVALID]
    traj = play(bench, with_max_steps(task, len(script)), script, rule, tmp_path)
    assert traj.metadata["steps"] == len(script) and not traj.success  # the engine ends it at the limit
    assert traj.reward == 0.0  # nothing is won before the last action, under either rule


# -- WebShop: the purchase reward comes only with "Buy Now", which ends the episode ---------------------
@pytest.fixture(scope="module")
def webshop(tmp_path_factory: pytest.TempPathFactory):
    from eto_assets.envs.webshop.benchmark import WebShopBenchmark
    from eto_assets.envs.webshop.generator import generate_catalog

    bench = WebShopBenchmark(data_dir=generate_catalog(tmp_path_factory.mktemp("webshop_catalog")))
    env = bench.make_env()
    try:
        for task in bench.tasks("seen"):
            expert = bench.expert_trajectory(env, task)
            if expert is not None and expert.reward > 0:
                return bench, task, expert, expert_answers(expert)
    finally:
        env.close()
    pytest.fail("no WebShop task with a rewarded expert")


@pytest.mark.parametrize("rule", ["zero", "keep"])
def test_webshop_invalid_format_then_purchase(webshop, rule, tmp_path):
    bench, task, expert, answers = webshop
    traj = play(bench, task, [INVALID, *answers], rule, tmp_path)
    assert traj.messages[2].content.endswith(INVALID_FORMAT_OBSERVATION)
    assert traj.metadata["step_rewards"][0] == 0.0
    assert traj.reward == expert.reward


@pytest.mark.parametrize("rule", ["zero", "keep"])
def test_webshop_episode_ending_on_invalid_format_scores_zero(webshop, rule, tmp_path):
    bench, task, _, answers = webshop
    script = [*answers[:-1], INVALID]
    traj = play(bench, with_max_steps(task, len(script)), script, rule, tmp_path)
    assert traj.metadata["steps"] == len(script) and not traj.success  # the env ends it at the limit
    assert traj.reward == 0.0  # nothing is bought before the last action, under either rule


def test_rule_is_part_of_the_resume_fingerprint(tmp_path):
    """Records played under one rule carry other rewards than the other's: a rerun must not resume them."""
    from eto_assets.agent.rollout import rollout_fingerprint

    (tmp_path / "config.json").write_text("{}")
    prints = {
        rule: rollout_fingerprint(
            tmp_path, RolloutConfig(invalid_format_reward=rule), temperature=0.0, max_steps=None
        )
        for rule in ("zero", "keep")
    }
    assert prints["zero"] != prints["keep"]
    assert RolloutConfig().invalid_format_reward == "zero"  # ETO's rule by default
