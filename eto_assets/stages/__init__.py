"""The ETO stages as plain functions: no Dagster, no MLflow (the asset layer above records them).
Each takes a :class:`TaskRun` (and a backend opener or environment pool where it plays episodes),
writes its artifacts under the task's :class:`~eto_assets.stages.layout.ArtifactLayout`, and returns
one :class:`StageResult`. A notebook runs an ETO iteration by calling them in order::

    run = open_task_run("sciworld", load_profile("micro"), BenchmarkSources(home=Path(".eto")))
    with EnvironmentPool() as envs:
        generate_expert_data(run, envs)
        build_base_model(run, "tiny")
        train_sft_policy(run, "tiny")
        open_backend = lambda path: load_backend("transformers", path)
        evaluate(run, 0, open_backend, envs)
        explore(run, 1, open_backend, envs)
        make_pairs(run, 1)
        train_dpo_policy(run, 1)
        evaluate(run, 1, open_backend, envs)
    report_iterations(run.layout, 1)
"""

from eto_assets.stages.dpo import train_dpo_policy
from eto_assets.stages.evaluate import EVAL_SPLITS, EvalReport, evaluate, evaluate_base_model
from eto_assets.stages.expert import NoExpertData, generate_expert_data
from eto_assets.stages.explore import explore
from eto_assets.stages.methods import make_selfplay_pairs, start_policy, train_rft_policy, train_rl_policy
from eto_assets.stages.pairs import make_pairs
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.report import report_iterations, report_table
from eto_assets.stages.result import DatasetInput, Markdown, StageResult
from eto_assets.stages.sft import build_base_model, train_sft_policy
from eto_assets.stages.step_methods import (
    discriminator_of,
    explore_branches,
    make_step_pairs,
    propose_steps,
    train_step_discriminator,
    value_steps,
)
from eto_assets.stages.task import TaskRun, open_task_run

__all__ = [
    "build_base_model",
    "EVAL_SPLITS",
    "DatasetInput",
    "EvalReport",
    "Markdown",
    "NoExpertData",
    "PolicyRecord",
    "StageResult",
    "TaskRun",
    "evaluate",
    "evaluate_base_model",
    "explore",
    "discriminator_of",
    "explore_branches",
    "train_step_discriminator",
    "make_step_pairs",
    "propose_steps",
    "value_steps",
    "make_selfplay_pairs",
    "start_policy",
    "train_rft_policy",
    "train_rl_policy",
    "generate_expert_data",
    "make_pairs",
    "open_task_run",
    "report_iterations",
    "report_table",
    "train_dpo_policy",
    "train_sft_policy",
]
