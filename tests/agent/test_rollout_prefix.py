"""Forced-prefix episodes (``EpisodeStart.forced``) through the rollout engine on the real WebShop
environment (the generated catalog: no data files, no JVM).

The expert's first t-1 turns are replayed in the environment, then the policy plays on. The
policy is a scripted backend (one answer list per episode session) so the test can tell which turns
came from the model; a backend whose ``generate`` raises shows that a fully forced episode never
asks the model.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from eto_assets.agent.prompt import make_prompt_book
from eto_assets.agent.rollout import EpisodeStart, RolloutStats, load_finished, record_key, run_rollouts
from eto_assets.config.profile import RolloutConfig
from eto_assets.data.schemas import Message, Trajectory, read_trajectories
from eto_assets.data.step_pairs import agent_turns, forced_prefix
from eto_assets.envs.base import TaskInstance

POLICY = ("Thought: Let me see the other results.\nAction: click[< Prev]", "Action: click[Back to Search]")
CONFIG = RolloutConfig(concurrency=3, batch_fraction=1.0, max_new_tokens=16)


class ScriptedPolicy:
    """Answers every episode (session) with ``POLICY`` in order and notes what it was asked."""

    def __init__(self) -> None:
        self.turns: dict[str, int] = defaultdict(int)
        self.asked: dict[str, list[list[dict]]] = defaultdict(list)

    def generate(self, conversations, config, *, seeds=None, sessions=None) -> list[str | None]:
        assert sessions is not None and len(sessions) == len(conversations)
        answers = []
        for session, conversation in zip(sessions, conversations, strict=True):
            self.asked[session].append(conversation)
            answers.append(POLICY[self.turns[session] % len(POLICY)])
            self.turns[session] += 1
        return answers

    def end_session(self, session: str) -> None:
        pass

    def close(self) -> None:
        pass


class NoModel:
    """A backend that must not be asked: every call is counted and fails the episode's test."""

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, conversations, config, **kwargs):
        self.calls += 1
        raise AssertionError(f"the model was asked for {len(conversations)} turns")

    def end_session(self, session: str) -> None:
        pass

    def close(self) -> None:
        pass


class Envs:
    """``bench.make_env``, counting the environments made."""

    def __init__(self, bench) -> None:
        self.bench = bench
        self.made = 0

    def __call__(self):
        self.made += 1
        return self.bench.make_env()


def capped(task: TaskInstance, max_steps: int) -> TaskInstance:
    return TaskInstance(task.task_id, task.task_type, task.split, max_steps, task.payload)


def observations(t: Trajectory) -> list[str]:
    """The environment's replies after each agent turn (not the task turn)."""
    return [m.content for m in t.messages[2::2]]


@pytest.fixture(scope="module")
def webshop(tmp_path_factory):
    """A generated catalog, a task whose expert (replayed from scratch) buys with reward 1 in at
    least four steps, and a prompt book made from that expert."""
    from eto_assets.envs.webshop.benchmark import WebShopBenchmark
    from eto_assets.envs.webshop.generator import generate_catalog

    bench = WebShopBenchmark(data_dir=generate_catalog(tmp_path_factory.mktemp("webshop_catalog")))
    env = bench.make_env()
    try:
        for task in bench.tasks("seen"):
            expert = bench.expert_trajectory(env, task)
            if expert is not None and expert.reward == 1.0 and len(agent_turns(expert)) >= 4:
                book = make_prompt_book(bench.prompt_spec(), [expert])
                return bench, task, expert, book
    finally:
        env.close()
    pytest.fail("no WebShop task whose expert buys with reward 1 in four steps or more")


@pytest.fixture(scope="module")
def reference(webshop, tmp_path_factory):
    """The expert's turns all forced: the episode the expert had, replayed by the engine."""
    bench, task, expert, book = webshop
    backend = NoModel()
    stats = RolloutStats()
    [played] = run_rollouts(
        [],
        bench.make_env,
        backend,
        book,
        tmp_path_factory.mktemp("reference") / "reference.jsonl",
        CONFIG,
        stats=stats,
        starts=[EpisodeStart(task, forced=tuple(agent_turns(expert)), branch="all")],
    )
    return played, backend, stats


def test_forcing_every_expert_turn_reproduces_its_episode_without_the_model(webshop, reference):
    _, _, expert, _ = webshop
    played, backend, stats = reference
    assert backend.calls == 0
    assert stats.episodes == 1 and stats.model_seconds == 0.0
    assert played.messages == expert.messages  # the same turns and the same observations
    assert played.reward == expert.reward == 1.0 and played.success
    assert played.metadata["ended_by"] == "done"
    assert played.metadata["forced_steps"] == played.metadata["steps"] == len(agent_turns(expert))
    assert played.metadata["branch"] == "all"
    assert played.metadata["step_rewards"] == expert.metadata["step_rewards"]


def branch_starts(task: TaskInstance, expert: Trajectory) -> list[EpisodeStart]:
    """A branch from every step t of the expert, the policy given two turns (step cap t + 1)."""
    n = len(agent_turns(expert))
    return [
        EpisodeStart(capped(task, t + 1), forced=forced_prefix(expert, t), branch=f"step{t}")
        for t in range(1, n + 1)
    ]


def test_branches_replay_the_experts_prefix_then_the_policy_plays(webshop, reference, tmp_path):
    bench, task, expert, book = webshop
    played_reference, _, _ = reference
    starts = branch_starts(task, expert)
    policy = ScriptedPolicy()
    branches = run_rollouts(
        [], bench.make_env, policy, book, tmp_path / "branches.jsonl", CONFIG, starts=starts
    )
    assert [b.metadata["branch"] for b in branches] == [s.branch for s in starts]  # in the order given
    for t, branch in enumerate(branches, start=1):
        cut = 1 + 2 * (t - 1)
        assert agent_turns(branch)[: t - 1] == list(forced_prefix(expert, t))
        assert branch.messages[:cut] == expert.messages[:cut] == played_reference.messages[:cut]
        assert observations(branch)[: t - 1] == observations(played_reference)[: t - 1]
        # then the policy's own turns, in the real environment
        assert agent_turns(branch)[t - 1 :] == list(POLICY)
        # WebShop's env ends the episode itself at the task's step cap (reward 0)
        assert branch.metadata["steps"] == t + 1 and branch.metadata["ended_by"] == "done"
        assert branch.reward == 0.0 and not branch.success  # nothing was bought
        assert branch.metadata["branch"] == f"step{t}" and branch.metadata["sample"] == 0
        if t > 1:
            assert branch.metadata["forced_steps"] == t - 1
        # the model was asked twice, the first time with the replayed prefix as the episode so far
        asked = policy.asked[record_key(branch)]
        assert len(asked) == 2
        tail = [{"role": m.role, "content": m.content} for m in expert.messages[:cut]]
        assert asked[0][-cut:] == tail
    assert "forced_steps" not in branches[0].metadata  # step 1: nothing forced, nothing noted
    # the policy's "< Prev" from the item page went back to the results the expert's search showed
    step3 = branches[2]
    assert observations(step3)[2] != observations(played_reference)[2]
    assert observations(step3)[2] == observations(played_reference)[0]


def test_forced_turns_are_kept_whole_with_their_thought(webshop, reference, tmp_path):
    bench, task, expert, book = webshop
    played_reference, _, _ = reference
    search = agent_turns(expert)[0]
    with_thought = "Thought: I should search for the item first.\n" + search
    [branch] = run_rollouts(
        [],
        bench.make_env,
        ScriptedPolicy(),
        book,
        tmp_path / "thought.jsonl",
        CONFIG,
        starts=[EpisodeStart(capped(task, 2), forced=(with_thought,), branch="step2")],
    )
    assert branch.messages[1] == Message("assistant", with_thought)
    assert branch.messages[2] == played_reference.messages[2]  # the same action, the same page
    assert agent_turns(branch)[1] == POLICY[0]


def test_rerun_resumes_every_branch_and_plays_nothing(webshop, tmp_path):
    bench, task, expert, book = webshop
    starts = branch_starts(task, expert)
    out = tmp_path / "branches.jsonl"
    first = run_rollouts(
        [], bench.make_env, ScriptedPolicy(), book, out, CONFIG, fingerprint="fp-1", starts=starts
    )
    # every start has the same task and sample, only the branch differs: all are kept
    records = read_trajectories(out)
    assert len({(r.task_id, r.metadata["sample"]) for r in records}) == 1
    assert sorted(r.metadata["branch"] for r in records) == sorted(s.branch for s in starts)
    assert sorted(load_finished(out, "fp-1")) == sorted(s.key for s in starts)
    saved = out.read_text()

    envs, backend, stats = Envs(bench), NoModel(), RolloutStats()
    again = run_rollouts([], envs, backend, book, out, CONFIG, stats=stats, fingerprint="fp-1", starts=starts)
    assert stats.resumed == len(starts) and stats.episodes == 0 and stats.discarded == 0
    assert backend.calls == 0 and envs.made == 0
    assert [t.to_dict() for t in again] == [t.to_dict() for t in first]
    assert out.read_text() == saved  # nothing appended, nothing rewritten
    assert [json.loads(line)["metadata"]["fingerprint"] for line in saved.splitlines()] == ["fp-1"] * len(
        starts
    )


def test_two_starts_with_the_same_key_are_refused(webshop, tmp_path):
    bench, task, expert, book = webshop
    envs = Envs(bench)
    out = tmp_path / "dup.jsonl"
    twice = [
        EpisodeStart(task, sample=0, forced=forced_prefix(expert, 2), branch="step2"),
        EpisodeStart(task, sample=0, forced=forced_prefix(expert, 3), branch="step2"),
    ]
    with pytest.raises(ValueError, match="share a task, sample and branch"):
        run_rollouts([], envs, NoModel(), book, out, CONFIG, starts=twice)
    assert envs.made == 0 and not out.exists()
    same_branch_other_sample = [
        twice[0],
        EpisodeStart(task, sample=1, forced=twice[0].forced, branch="step2"),
    ]
    played = run_rollouts(
        [], bench.make_env, ScriptedPolicy(), book, out, CONFIG, starts=same_branch_other_sample
    )
    assert [(t.metadata["sample"], t.metadata["branch"]) for t in played] == [(0, "step2"), (1, "step2")]


def test_unforced_episodes_keep_their_old_keys(webshop, tmp_path: Path):
    """Without ``starts`` (or with no branch) a record's key is the task and sample alone, so files
    written before branches existed still resume."""
    bench, task, _, book = webshop
    out = tmp_path / "plain.jsonl"
    [plain] = run_rollouts([capped(task, 1)], bench.make_env, ScriptedPolicy(), book, out, CONFIG)
    assert record_key(plain) == f"{task.task_id}#0"
    assert "branch" not in plain.metadata and "forced_steps" not in plain.metadata
    stats = RolloutStats()
    run_rollouts([], Envs(bench), NoModel(), book, out, CONFIG, stats=stats, starts=[EpisodeStart(task)])
    assert stats.resumed == 1 and stats.episodes == 0
