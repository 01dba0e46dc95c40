"""Where every artifact of a task lives under ``ETO_HOME`` (one folder per task and iteration)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BASE_ITERATION = -1  # the untrained base model, evaluated as the policy before SFT (iteration 0)


def iteration_label(k: int) -> str:
    """How an iteration is named in folders, runs and tables: ``base`` for the untrained model."""
    return "base" if k == BASE_ITERATION else str(k)


ETO = "eto"  # the method whose iterations live at the task's root (the others in a folder each)
# one policy for several benchmarks: the union's folder (artifacts/multitask), and the method name of
# its policies in each task's folder and report (see stages/multitask.py)
MULTITASK = "multitask"


@dataclass(frozen=True)
class ArtifactLayout:
    """``method``: whose iterations these are. ETO's live in ``iteration_k``; another method's (a
    baseline, self-play) in ``<method>/iteration_k``; the expert data, prompt book, base model and
    report are the task's, shared by every method."""

    home: Path
    task: str
    method: str = ETO

    def for_method(self, method: str) -> ArtifactLayout:
        return ArtifactLayout(self.home, self.task, method)

    @property
    def root(self) -> Path:
        return self.home / "artifacts" / self.task

    @property
    def expert_dir(self) -> Path:
        return self.root / "expert"

    @property
    def expert_jsonl(self) -> Path:
        return self.expert_dir / "expert_trajectories.jsonl"

    @property
    def prompt_book(self) -> Path:
        return self.expert_dir / "prompt_book.json"

    @property
    def splits_json(self) -> Path:
        return self.expert_dir / "splits.json"

    @property
    def base_model_dir(self) -> Path:
        return self.root / "base_model"

    def iteration_dir(self, k: int) -> Path:
        """Folder of iteration ``k``; the untrained base model's evaluation is ``base_model_eval``."""
        if k == BASE_ITERATION:
            return self.root / "base_model_eval"
        return (self.root if self.method == ETO else self.root / self.method) / f"iteration_{k}"

    def training_data_jsonl(self, k: int) -> Path:
        """What a method's SFT of iteration ``k`` trains on (RFT: the experts and the kept samples)."""
        return self.iteration_dir(k) / "training_data.jsonl"

    def checkpoints_dir(self, k: int) -> Path:
        """Policies trained in iteration ``k`` (SFT for 0, DPO for k >= 1), one folder per training
        inputs and settings (see :func:`~eto_assets.training.launch.plan_training`); ``policy.json``
        names the current one."""
        return self.iteration_dir(k) / "checkpoints"

    def rollouts_jsonl(self, k: int) -> Path:
        return self.iteration_dir(k) / "exploration_rollouts.jsonl"

    def step_values_jsonl(self, k: int) -> Path:
        """IPR's Monte-Carlo continuations of iteration ``k`` (the step values are their means)."""
        return self.iteration_dir(k) / "step_values.jsonl"

    def discriminator_json(self, k: int) -> Path:
        """Names the discriminator trained in iteration ``k`` (StepAgent's inverse-RL form)."""
        return self.iteration_dir(k) / "discriminator.json"

    def pairs_jsonl(self, k: int) -> Path:
        return self.iteration_dir(k) / "preference_pairs.jsonl"

    def eval_jsonl(self, k: int, split: str) -> Path:
        return self.iteration_dir(k) / f"eval_{split}.jsonl"

    def eval_report(self, k: int) -> Path:
        return self.iteration_dir(k) / "eval_report.json"

    def policy_json(self, k: int) -> Path:
        return self.iteration_dir(k) / "policy.json"

    @property
    def report_dir(self) -> Path:
        """The iteration report: summary, table (CSV and Markdown) and plots."""
        return self.root / "report"

    @property
    def summary_md(self) -> Path:
        return self.report_dir / "summary.md"

    @property
    def report_csv(self) -> Path:
        return self.report_dir / "iterations.csv"
