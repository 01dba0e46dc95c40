"""What a task's graph depends on from outside the project: the base model and the expert data
source. The sensor reruns a task when this fingerprint changes."""

import hashlib
import json
from pathlib import Path

from eto_assets.config.profile import Profile
from eto_assets.stages.layout import BASE_ITERATION

# Small files that identify a model folder or a data file without hashing gigabytes of weights.
MODEL_FILES = ("config.json", "tokenizer_config.json", "generation_config.json")


def _file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def path_identity(value: str) -> str:
    """A setting's value, plus the identity of the file or model folder it names (if any)."""
    path = Path(value).expanduser()
    if path.is_file():
        return f"{value}|{_file_identity(path)}"
    if path.is_dir():
        parts = [_file_identity(p) for p in sorted(path.iterdir()) if p.is_file()]
        return f"{value}|" + ",".join(parts)
    return value


def input_fingerprint(base_model: str, profile: Profile, task: str) -> str:
    """Base model setting and the profile's expert-data settings for ``task``, with their files."""
    expert = {k: v for k, v in profile.flat_params().items() if k.startswith("expert")}
    record = {
        "base_model": path_identity(base_model),
        "expert": {k: path_identity(v) for k, v in sorted(expert.items())},
        "scope": profile.scope(task).model_dump(),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------ stage fingerprints (CLI skipping)
#
# Every asset of a task's graph gets a fingerprint of what it depends on: its part of the profile, the
# settings that change its output, and the fingerprints of its upstream assets (so a change reruns
# everything downstream). The asset wrapper records an asset's fingerprint when it succeeds
# (``artifacts/<task>/fingerprints.json``); the CLI reruns only assets whose fingerprint changed or whose
# artifacts are missing.

FINGERPRINTS_FILE = "fingerprints.json"
BASE_EVAL = "base_model/eval_report"  # the untrained model's evaluation (profile: evaluate_base_model)


def _digest(record: object) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _section(profile: Profile, name: str) -> object:
    value = getattr(profile, name)
    return value.model_dump() if hasattr(value, "model_dump") else value


def stage_fingerprints(
    profile: Profile,
    task: str,
    *,
    base_model: str,
    backend: str,
    iterations: int,
    data_dir: str | None = None,
) -> dict[str, str]:
    """Asset key (user string) -> fingerprint, for the graph with ``iterations`` unrolled iterations."""
    scope = profile.scope(task).model_dump()
    runs = profile.iterations_for(task)
    out: dict[str, str] = {}
    out["expert_trajectories"] = _digest(
        {
            "task": task,
            "scope": scope,
            "expert": _section(profile, "expert"),
            "prompt": _section(profile, "prompt"),
            "data_dir": path_identity(data_dir) if data_dir else None,
        }
    )
    out["sft_checkpoint"] = _digest(
        {
            "up": out["expert_trajectories"],
            "sft": _section(profile, "sft"),
            "tiny_model": _section(profile, "tiny_model"),
            "base_model": path_identity(base_model),
        }
    )
    policy = {0: out["sft_checkpoint"]}
    rollout = {
        "rollout": _section(profile, "rollout"),
        "prompt": _section(profile, "prompt"),
        "backend": backend,
    }
    out[BASE_EVAL] = _digest(  # the base model itself, not SFT's training settings
        {
            "up": [out["expert_trajectories"], path_identity(base_model)],
            "tiny_model": _section(profile, "tiny_model") if base_model == "tiny" else None,
            "active": profile.evaluate_base_model,
            **rollout,
        }
    )
    out["iteration_0/eval_report"] = _digest({"up": policy[0], **rollout})
    for k in range(1, iterations + 1):
        active = k <= runs
        explore = out[f"iteration_{k}/exploration_rollouts"] = _digest(
            {"up": [policy[k - 1], out["expert_trajectories"]], "active": active, **rollout}
        )
        pairs = out[f"iteration_{k}/preference_pairs"] = _digest({"up": explore, "active": active})
        dpo = out[f"iteration_{k}/dpo_checkpoint"] = _digest(
            {"up": [pairs, policy[k - 1]], "dpo": profile.dpo_for(task, k).model_dump(), "active": active}
        )
        policy[k] = dpo
        out[f"iteration_{k}/eval_report"] = _digest({"up": dpo, "active": active, **rollout})
    evals = [out[f"iteration_{k}/eval_report"] for k in range(iterations + 1)]
    out["iteration_summary"] = _digest({"up": evals, "runs": runs})
    out["iteration_comparison"] = _digest({"up": [out[BASE_EVAL], *evals], "runs": runs, "kind": "compare"})
    return out


def upstream_of(iterations: int) -> dict[str, list[str]]:
    """Asset key -> the asset keys it depends on (the graph of ``eto_assets.assets.graph``)."""
    policy = {0: "sft_checkpoint", **{k: f"iteration_{k}/dpo_checkpoint" for k in range(1, iterations + 1)}}
    deps: dict[str, list[str]] = {
        "expert_trajectories": [],
        "sft_checkpoint": ["expert_trajectories"],
        # it runs after SFT (which builds the tiny model) but does not depend on how SFT trains
        BASE_EVAL: ["expert_trajectories"],
        "iteration_0/eval_report": ["sft_checkpoint"],
    }
    for k in range(1, iterations + 1):
        deps[f"iteration_{k}/exploration_rollouts"] = [policy[k - 1], "expert_trajectories"]
        deps[f"iteration_{k}/preference_pairs"] = [
            f"iteration_{k}/exploration_rollouts",
            "expert_trajectories",
        ]
        deps[f"iteration_{k}/dpo_checkpoint"] = [f"iteration_{k}/preference_pairs", policy[k - 1]]
        deps[f"iteration_{k}/eval_report"] = [policy[k]]
    evals = [f"iteration_{k}/eval_report" for k in range(iterations + 1)]
    deps["iteration_summary"] = list(evals)
    deps["iteration_comparison"] = [BASE_EVAL, *evals]
    return deps


def fingerprints_path(home: Path, task: str) -> Path:
    return home / "artifacts" / task / FINGERPRINTS_FILE


def read_fingerprints(home: Path, task: str) -> dict[str, str]:
    path = fingerprints_path(home, task)
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _update(home: Path, task: str, key: str, value: str | None) -> None:
    """Set (or with None, forget) one asset's recorded fingerprint, under a lock, written atomically."""
    import fcntl
    import os
    import tempfile

    path = fingerprints_path(home, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read_fingerprints(home, task)
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fingerprints-")
        with os.fdopen(fd, "w") as fh:
            json.dump(current, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)


def record_fingerprint(home: Path, task: str, key: str, value: str) -> None:
    _update(home, task, key, value)


def forget_fingerprint(home: Path, task: str, key: str) -> None:
    _update(home, task, key, None)


def missing_artifacts(home: Path, task: str, key: str) -> str | None:
    """What an asset wrote that is gone (so it must rerun), or None."""
    from eto_assets.stages.layout import ArtifactLayout

    layout = ArtifactLayout(home, task)
    head, _, name = key.rpartition("/")
    if head == BASE_EVAL.partition("/")[0]:
        k = BASE_ITERATION
    else:
        k = int(head.removeprefix("iteration_")) if head else 0
    expected = {
        "expert_trajectories": layout.expert_jsonl,
        "sft_checkpoint": layout.policy_json(0),
        "eval_report": layout.eval_report(k),
        "exploration_rollouts": layout.rollouts_jsonl(k),
        "preference_pairs": layout.pairs_jsonl(k),
        "dpo_checkpoint": layout.policy_json(k),
        "iteration_summary": layout.summary_md,
    }.get(name)
    if expected is not None and not expected.exists():
        return str(expected)
    if name in ("sft_checkpoint", "dpo_checkpoint"):
        try:
            checkpoint = Path(json.loads(expected.read_text())["checkpoint"])
        except (OSError, ValueError, KeyError):
            return str(expected)
        if not checkpoint.is_dir():
            return str(checkpoint)
    return None


def inactive_assets(profile: Profile, task: str, iterations: int) -> set[str]:
    """Assets the profile leaves out (they materialize as no-ops and write no artifacts): the base
    model's evaluation unless asked for, and iterations past the profile's."""
    out = set() if profile.evaluate_base_model else {BASE_EVAL}
    past = tuple(f"iteration_{k}/" for k in range(profile.iterations_for(task) + 1, iterations + 1))
    out.update(key for key in upstream_of(iterations) if key.startswith(past))
    return out


def stale_assets(
    home: Path, task: str, current: dict[str, str], iterations: int, inactive: set[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """(assets to run, why each is skipped or run): changed or missing, and everything downstream.
    ``inactive`` assets write nothing, so their artifacts are not looked for."""
    inactive = inactive or set()
    recorded = read_fingerprints(home, task)
    deps = upstream_of(iterations)
    reasons: dict[str, str] = {}
    stale: list[str] = []
    for key in deps:  # in graph order: upstream first
        if key not in recorded:
            why = "never materialized with these settings"
        elif recorded[key] != current[key]:
            why = "inputs or settings changed"
        elif key not in inactive and (gone := missing_artifacts(home, task, key)) is not None:
            why = f"artifact missing: {gone}"
        elif upstream := [d for d in deps[key] if d in stale]:
            why = f"upstream reruns: {', '.join(upstream)}"
        else:
            reasons[key] = "up to date (same inputs and settings, artifacts present)"
            continue
        stale.append(key)
        reasons[key] = why
    return stale, reasons
