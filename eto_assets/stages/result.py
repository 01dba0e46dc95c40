"""What every stage returns: one record the caller turns into an MLflow run and a Dagster result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eto_assets.stages.policy import PolicyRecord


class Markdown(str):
    """A metadata value to show as Markdown (a table), not as plain text."""


@dataclass(frozen=True)
class DatasetInput:
    """An upstream file the stage read, recorded as an MLflow dataset input (lineage)."""

    path: Path
    name: str
    context: str  # "train", "expert", "explored", ...


@dataclass
class StageResult:
    """The outcome of one ETO stage for one task.

    ``metrics`` are logged at ``metrics_step`` (the iteration, for per-iteration charts) and shown in
    Dagster; ``history`` rows are trainer logs, logged per step under ``history_prefix``;
    ``artifacts`` are ``(file, folder)`` pairs; ``policy`` is the checkpoint the stage produced,
    registered as a model version when ``register_policy``. Stages know iterations, not registry
    versions: ``policy_tags`` annotate the policy of an iteration (iteration -> tags) and ``aliases``
    name one (``champion`` -> iteration); the caller resolves them to model versions. ``summary``
    holds the pipeline's headline numbers (the champion's), logged on its parent MLflow run so that
    run's overview shows them. ``metadata`` is shown in Dagster only."""

    metrics: dict[str, float] = field(default_factory=dict)
    metrics_step: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[DatasetInput] = field(default_factory=list)
    artifacts: list[tuple[Path, str]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    history_prefix: str = ""
    policy: PolicyRecord | None = None
    register_policy: bool = False
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> iteration
    policy_tags: dict[int, dict[str, str]] = field(default_factory=dict)  # iteration -> tags
    summary: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
