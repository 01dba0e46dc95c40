"""Quality checks on each stage's output, computed from its artifacts (no Dagster): the stage table
says which stage reports which, the Dagster layer reports them as asset checks, a script can print
them. A check that fails with severity
``WARN`` flags something to look at (an iteration worse than the one before) without failing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from eto_assets.data.schemas import Trajectory, read_pairs, read_trajectories
from eto_assets.envs.base import INVALID_FORMAT_OBSERVATION
from eto_assets.stages.evaluate import EVAL_SPLITS, EvalReport
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.task import TaskRun

Severity = Literal["ERROR", "WARN"]
# Benchmarks whose expert always reaches full reward (WebShop's expert data may score below 1).
FULL_REWARD_EXPERTS = frozenset({"sciworld", "alfworld"})


@dataclass(frozen=True)
class CheckSpec:
    name: str
    description: str
    severity: Severity = "ERROR"


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    severity: Severity = "ERROR"
    metadata: dict[str, Any] = field(default_factory=dict)


def _empty(trajectories: Sequence[Trajectory]) -> list[str]:
    return [t.task_id for t in trajectories if t.num_steps == 0]


def _out_of_range(trajectories: Sequence[Trajectory]) -> list[str]:
    return [t.task_id for t in trajectories if not 0.0 <= t.reward <= 1.0]


def _outcome(spec: CheckSpec, bad: Sequence[str], ok: str, failed: str, **metadata) -> CheckOutcome:
    shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
    text = ok if not bad else f"{failed}: {shown}"
    return CheckOutcome(spec.name, not bad, text, spec.severity, {"failing": len(bad), **metadata})


EXPERT_REWARDS = CheckSpec("expert_rewards", "Expert rewards are 1.0 (ScienceWorld, ALFWorld) or in (0, 1]")
NO_EMPTY = CheckSpec("no_empty_trajectories", "Every trajectory has at least one agent turn")
REWARDS_IN_RANGE = CheckSpec("rewards_in_range", "Every reward lies in [0, 1]")
PAIRS_ORDERED = CheckSpec("chosen_above_rejected", "Every pair's chosen reward is above its rejected reward")
PAIRS_PRESENT = CheckSpec("pairs_present", "Exploration produced at least one preference pair", "WARN")
CHECKPOINT_GENERATES = CheckSpec("checkpoint_generates", "The policy checkpoint loads and generates a turn")
COVERS_SPLITS = CheckSpec("covers_held_out_splits", "Evaluation played every task of each held-out split")
VALID_ACTIONS = CheckSpec(
    "mostly_valid_actions",
    "At most half of the agent's turns were answered with the invalid-format observation",
    "WARN",
)
INVALID_SHARE_LIMIT = 0.5
PROPOSALS_PARSE = CheckSpec(
    "proposals_have_actions", "At most half of the policy's proposals lack a parseable action", "WARN"
)
NO_REGRESSION = CheckSpec(
    "no_regression", "The held-out (seen) reward is not below the previous iteration's", "WARN"
)


def invalid_action_share(trajectories: Sequence[Trajectory]) -> tuple[int, int]:
    """(agent turns answered with the invalid-format observation, agent turns answered at all)."""
    invalid = answered = 0
    for trajectory in trajectories:
        messages = trajectory.messages
        for turn, reply in zip(messages, messages[1:], strict=False):
            if turn.role == "assistant" and reply.role == "user":
                answered += 1
                invalid += INVALID_FORMAT_OBSERVATION in reply.content
    return invalid, answered


def check_valid_actions(trajectories: Sequence[Trajectory], where: str) -> CheckOutcome:
    invalid, answered = invalid_action_share(trajectories)
    share = invalid / answered if answered else 0.0
    text = f"{invalid}/{answered} agent turns ({share:.0%}) had no valid action in {where}"
    if share > INVALID_SHARE_LIMIT:
        text = f"most actions were invalid: {text} (is rollout.max_new_tokens too small?)"
    return CheckOutcome(
        VALID_ACTIONS.name,
        share <= INVALID_SHARE_LIMIT,
        text,
        VALID_ACTIONS.severity,
        {"invalid_share": round(share, 4), "invalid_turns": invalid, "answered_turns": answered},
    )


def check_expert(run: TaskRun) -> list[CheckOutcome]:
    experts = read_trajectories(run.layout.expert_jsonl)
    if run.task in FULL_REWARD_EXPERTS:
        low = [t.task_id for t in experts if t.reward < 1.0]
    else:
        low = [t.task_id for t in experts if not 0.0 < t.reward <= 1.0]
    return [
        _outcome(EXPERT_REWARDS, low, f"{len(experts)} experts, rewards as expected", "unexpected rewards"),
        _outcome(NO_EMPTY, _empty(experts), "no empty trajectory", "empty trajectories"),
    ]


def check_exploration(run: TaskRun, iteration: int) -> list[CheckOutcome]:
    explored = read_trajectories(run.layout.rollouts_jsonl(iteration))
    return [
        _outcome(
            REWARDS_IN_RANGE, _out_of_range(explored), "all rewards in [0, 1]", "rewards outside [0, 1]"
        ),
        _outcome(NO_EMPTY, _empty(explored), "no empty trajectory", "empty trajectories"),
        check_valid_actions(explored, "exploration"),
    ]


def check_step_values(run: TaskRun, iteration: int) -> list[CheckOutcome]:
    """IPR's Monte-Carlo continuations: rewards in range."""
    played = read_trajectories(run.layout.step_values_jsonl(iteration))
    return [
        _outcome(REWARDS_IN_RANGE, _out_of_range(played), "all rewards in [0, 1]", "rewards outside [0, 1]")
    ]


def check_proposals(run: TaskRun, iteration: int) -> list[CheckOutcome]:
    """StepAgent's proposals: one per expert step, most of them an action the environment reads."""
    from eto_assets.data.react import parse_answer
    from eto_assets.envs.base import is_invalid_format

    proposals = read_trajectories(run.layout.rollouts_jsonl(iteration))
    unparsed = [
        f"{t.task_id}@{t.metadata.get('branch', '')}"
        for t in proposals
        if is_invalid_format(parse_answer(t.messages[-1].content).action)
    ]
    share = len(unparsed) / len(proposals) if proposals else 0.0
    return [
        _outcome(NO_EMPTY, [] if proposals else ["no proposals"], f"{len(proposals)} proposals", "empty"),
        CheckOutcome(
            PROPOSALS_PARSE.name,
            share <= INVALID_SHARE_LIMIT,
            f"{len(unparsed)}/{len(proposals)} proposals ({share:.0%}) had no parseable action",
            PROPOSALS_PARSE.severity,
            {"unparsed_share": round(share, 4)},
        ),
    ]


def check_pairs(run: TaskRun, iteration: int) -> list[CheckOutcome]:
    pairs = read_pairs(run.layout.pairs_jsonl(iteration))
    wrong = [p.task_id for p in pairs if not p.chosen_reward > p.rejected_reward]
    return [
        _outcome(PAIRS_ORDERED, wrong, f"{len(pairs)} pairs ordered", "chosen not above rejected"),
        _outcome(
            PAIRS_PRESENT,
            [] if pairs else ["no pairs"],
            f"{len(pairs)} pairs",
            "every explored trajectory tied with its expert",
        ),
    ]


def check_checkpoint(run: TaskRun, iteration: int, open_backend: Callable[[str], Any]) -> list[CheckOutcome]:
    """Load the iteration's policy and ask it for one turn of a train task's conversation."""
    from eto_assets.agent.backends import GenerationConfig
    from eto_assets.agent.prompt import PromptBook, build_conversation

    policy = PolicyRecord.read(run.layout, iteration)
    expert = read_trajectories(run.layout.expert_jsonl)[0]
    book = PromptBook.read(run.layout.prompt_book)
    try:
        backend = open_backend(policy.checkpoint)
        try:
            [answer] = backend.generate(
                [build_conversation(book, expert.task_type, expert.messages[:1])], GenerationConfig(8)
            )
        finally:
            backend.close()
    except Exception as exc:  # the check reports any load or generation failure
        return [CheckOutcome(CHECKPOINT_GENERATES.name, False, f"{type(exc).__name__}: {exc}")]
    return [
        CheckOutcome(
            CHECKPOINT_GENERATES.name,
            answer is not None,
            f"{policy.checkpoint} answered {answer!r}" if answer is not None else "no room left to generate",
        )
    ]


def check_evaluation(run: TaskRun, iteration: int) -> list[CheckOutcome]:
    report = EvalReport.read(run.layout.eval_report(iteration))
    missing = [
        f"{split} {report.splits[split].episodes if split in report.splits else 0}/{len(run.tasks(split))}"
        for split in EVAL_SPLITS
        if len(run.tasks(split)) != (report.splits[split].episodes if split in report.splits else 0)
    ]
    outcomes = [_outcome(COVERS_SPLITS, missing, "every held-out task played", "splits not covered")]
    played = [
        t
        for split in EVAL_SPLITS
        if (p := run.layout.eval_jsonl(iteration, split)).is_file()
        for t in read_trajectories(p)
    ]
    outcomes.append(check_valid_actions(played, "evaluation"))
    previous = run.layout.eval_report(iteration - 1)
    if iteration > 0 and previous.is_file():
        now = report.metrics().get("eval_seen_avg_reward", 0.0)
        before = EvalReport.read(previous).metrics().get("eval_seen_avg_reward", 0.0)
        worse = [f"{now:.3f} < {before:.3f}"] if now < before else []
        outcomes.append(
            _outcome(
                NO_REGRESSION, worse, f"{now:.3f} >= {before:.3f}", "held-out reward fell", previous=before
            )
        )
    else:
        outcomes.append(
            CheckOutcome(NO_REGRESSION.name, True, "no earlier iteration", NO_REGRESSION.severity)
        )
    return outcomes
