"""One ETO iteration as assets, built by a factory for k = 1..N (Dagster forbids cycles, so the
loop is unrolled into asset keys): exploration with the policy of iteration k-1, preference pairs
against the expert, DPO with that policy as the reference, and evaluation of the new policy."""

import mlflow
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from eto_assets import pipeline, tracking
from eto_assets.assets.common import (
    TASK_PARTITIONS,
    StageContext,
    run_link_metadata,
    settings_params,
    stage_context,
    user_errors,
)
from eto_assets.data.schemas import read_pairs, read_trajectories
from eto_assets.envs.registry import scoped_tasks
from eto_assets.layout import read_policy_info, write_policy_info
from eto_assets.training.launch import TrainSpec, train
from resources import EnvironmentPool, EtoSettings, InferenceResource, MlflowTracking


def policy_key(k: int) -> AssetKey:
    return AssetKey("sft_checkpoint") if k == 0 else AssetKey([f"iteration_{k}", "dpo_checkpoint"])


def _iteration_asset(k: int, name: str, *, deps, kinds: set[str], description: str):
    """The decorator every iteration-k asset shares: key ``iteration_k/<name>``, task partitions."""
    return asset(
        name=name,
        key_prefix=[f"iteration_{k}"],
        partitions_def=TASK_PARTITIONS,
        group_name=f"iteration_{k}",
        deps=deps,
        kinds=kinds,
        description=description,
    )


def _skipped(sc: StageContext, k: int) -> MaterializeResult | None:
    """Iterations past the task's configured count materialize as explicit no-ops."""
    n = sc.profile.iterations_for(sc.task)
    if k <= n:
        return None
    return MaterializeResult(
        metadata={"skipped": f"profile {sc.profile.name!r} runs {n} iteration(s) for {sc.task}"}
    )


def eval_report_asset(k: int) -> AssetsDefinition:
    @_iteration_asset(
        k,
        "eval_report",
        deps=[policy_key(k)],
        kinds={"python", "mlflow"},
        description=f"Greedy evaluation of the iteration-{k} policy on the held-out seen/unseen splits.",
    )
    def _eval(
        context: AssetExecutionContext,
        settings: EtoSettings,
        mlflow_tracking: MlflowTracking,
        inference: InferenceResource,
        envs: EnvironmentPool,
    ) -> MaterializeResult:
        sc = stage_context(context, settings)
        if (skip := _skipped(sc, k)) is not None:
            return skip
        with user_errors():
            policy = read_policy_info(sc.layout, k)
            book = pipeline.read_prompt_book(sc.layout.prompt_book)
        split_tasks = {s: scoped_tasks(sc.benchmark, s, sc.scope) for s in pipeline.EVAL_SPLITS}
        out_paths = {s: sc.layout.eval_jsonl(k, s) for s in pipeline.EVAL_SPLITS}
        params = {
            **settings_params(settings, sc.profile),
            "checkpoint": policy["checkpoint"],
            "backend": inference.backend,
        }
        with mlflow_tracking.stage_run(sc.home, sc.task, "eval", k, context=context, params=params) as (
            run,
            link,
        ):
            backend = inference.open(policy["checkpoint"])
            try:
                report = pipeline.evaluate(
                    sc.task,
                    k,
                    policy["checkpoint"],
                    split_tasks,
                    lambda: envs.acquire_for_rollouts(sc.benchmark),
                    backend,
                    book,
                    out_paths,
                    sc.profile.rollout.config(),
                    release_env=lambda e: envs.release_from_rollouts(sc.benchmark, e),
                )
            finally:
                backend.close()
            report.write(sc.layout.eval_report(k))
            metrics = report.metrics()
            mlflow.log_metrics(metrics, step=k)
            mlflow.set_tag("eto.model_version", policy.get("model_version", ""))
            mlflow.log_artifact(str(sc.layout.eval_report(k)), artifact_path="eval")
            for path in out_paths.values():
                if path.exists():
                    mlflow.log_artifact(str(path), artifact_path="eval")
        return MaterializeResult(
            metadata={
                **metrics,
                "per_type": MetadataValue.json({s: m.per_type for s, m in report.splits.items()}),
                "model_version": policy.get("model_version", ""),
                "path": MetadataValue.path(str(sc.layout.eval_report(k))),
                **run_link_metadata(link, run),
            }
        )

    return _eval


def exploration_asset(k: int) -> AssetsDefinition:
    @_iteration_asset(
        k,
        "exploration_rollouts",
        deps=[policy_key(k - 1), AssetKey("expert_trajectories")],
        kinds={"python", "mlflow"},
        description=f"The iteration-{k - 1} policy plays every training instruction (1-shot prompt); "
        "each finished episode is appended at once, so a rerun resumes.",
    )
    def _explore(
        context: AssetExecutionContext,
        settings: EtoSettings,
        mlflow_tracking: MlflowTracking,
        inference: InferenceResource,
        envs: EnvironmentPool,
    ) -> MaterializeResult:
        sc = stage_context(context, settings)
        if (skip := _skipped(sc, k)) is not None:
            return skip
        with user_errors():
            policy = read_policy_info(sc.layout, k - 1)
            book = pipeline.read_prompt_book(sc.layout.prompt_book)
            expert_ids = {t.task_id for t in read_trajectories(sc.layout.expert_jsonl)}
        tasks = [t for t in scoped_tasks(sc.benchmark, "train", sc.scope) if t.task_id in expert_ids]
        config = sc.profile.rollout.config(temperature=sc.profile.rollout.explore_temperature)
        params = {
            **settings_params(settings, sc.profile),
            "policy": policy["checkpoint"],
            "backend": inference.backend,
            "temperature": config.temperature,
        }
        out = sc.layout.rollouts_jsonl(k)
        with mlflow_tracking.stage_run(sc.home, sc.task, "explore", k, context=context, params=params) as (
            run,
            link,
        ):
            tracking.log_dataset_input(sc.layout.expert_jsonl, f"{sc.task}-expert", "instructions")
            backend = inference.open(policy["checkpoint"])
            try:
                trajs, stats = pipeline.explore(
                    tasks,
                    lambda: envs.acquire_for_rollouts(sc.benchmark),
                    backend,
                    book,
                    out,
                    config,
                    f"explore it{k}",
                    release_env=lambda e: envs.release_from_rollouts(sc.benchmark, e),
                )
            finally:
                backend.close()
            summary = pipeline.summarize(trajs)
            metrics = {
                "explore_episodes": summary.episodes,
                "explore_avg_reward": summary.avg_reward,
                "explore_success_rate": summary.success_rate,
                "explore_resumed": stats.resumed,
                "explore_model_seconds": stats.model_seconds,
                "explore_env_seconds": stats.env_seconds,
            }
            mlflow.log_metrics(metrics, step=k)
            mlflow.log_artifact(str(out), artifact_path="explore")
        return MaterializeResult(
            metadata={**metrics, "path": MetadataValue.path(str(out)), **run_link_metadata(link, run)}
        )

    return _explore


def preference_pairs_asset(k: int) -> AssetsDefinition:
    @_iteration_asset(
        k,
        "preference_pairs",
        deps=[AssetKey([f"iteration_{k}", "exploration_rollouts"]), AssetKey("expert_trajectories")],
        kinds={"python", "mlflow"},
        description="Expert vs explored trajectory of the same instruction; higher reward chosen, ties "
        "dropped, rejected cut to the chosen length + 10 messages. Also exported in ETO's DPO JSON layout.",
    )
    def _pairs(
        context: AssetExecutionContext, settings: EtoSettings, mlflow_tracking: MlflowTracking
    ) -> MaterializeResult:
        from eto_assets.data.eto_format import dpo_records, write_json

        sc = stage_context(context, settings)
        if (skip := _skipped(sc, k)) is not None:
            return skip
        with user_errors():
            experts = read_trajectories(sc.layout.expert_jsonl)
            explored = read_trajectories(sc.layout.rollouts_jsonl(k))
            book = pipeline.read_prompt_book(sc.layout.prompt_book)
        out = sc.layout.pairs_jsonl(k)
        params = settings_params(settings, sc.profile)
        with mlflow_tracking.stage_run(sc.home, sc.task, "pairs", k, context=context, params=params) as (
            run,
            link,
        ):
            tracking.log_dataset_input(sc.layout.expert_jsonl, f"{sc.task}-expert", "expert")
            tracking.log_dataset_input(sc.layout.rollouts_jsonl(k), f"{sc.task}-explore-it{k}", "explored")
            pairs, stats = pipeline.make_pairs(experts, explored, out)
            eto_json = write_json(out.with_suffix(".eto.json"), dpo_records(pairs, book))
            metrics = {
                "pairs_count": stats.pairs,
                "pairs_dropped_ties": stats.dropped_ties,
                "pairs_agent_chosen": stats.agent_chosen,
            }
            mlflow.log_metrics(metrics, step=k)
            mlflow.log_artifact(str(out), artifact_path="pairs")
            mlflow.log_artifact(str(eto_json), artifact_path="pairs")
        return MaterializeResult(
            metadata={**metrics, "path": MetadataValue.path(str(out)), **run_link_metadata(link, run)}
        )

    return _pairs


def dpo_asset(k: int) -> AssetsDefinition:
    @_iteration_asset(
        k,
        "dpo_checkpoint",
        deps=[AssetKey([f"iteration_{k}", "preference_pairs"]), policy_key(k - 1)],
        kinds={"pytorch", "mlflow"},
        description=f"DPO on the iteration-{k} pairs from the iteration-{k - 1} policy, which is also the "
        "frozen reference; only action tokens count in the log-probabilities.",
    )
    def _dpo(
        context: AssetExecutionContext, settings: EtoSettings, mlflow_tracking: MlflowTracking
    ) -> MaterializeResult:
        sc = stage_context(context, settings)
        if (skip := _skipped(sc, k)) is not None:
            return skip
        with user_errors():
            previous = read_policy_info(sc.layout, k - 1)
            pairs = read_pairs(sc.layout.pairs_jsonl(k))
        params_obj = sc.profile.dpo_for(sc.task)
        out_dir = sc.layout.checkpoint_dir(k)
        params = {
            **settings_params(settings, sc.profile),
            "reference": previous["checkpoint"],
            "dpo.beta": params_obj.beta,
        }
        with mlflow_tracking.stage_run(sc.home, sc.task, "dpo", k, context=context, params=params) as (
            run,
            link,
        ):
            tracking.log_dataset_input(sc.layout.pairs_jsonl(k), f"{sc.task}-pairs-it{k}", "train")
            if not pairs:
                # Nothing to contrast (every pair tied): the policy carries over unchanged.
                context.log.warning(
                    f"{sc.task} iteration {k}: no preference pairs; keeping the previous policy"
                )
                mlflow.set_tag("eto.dpo_skipped", "no pairs")
                write_policy_info(sc.layout, k, {**previous, "carried_over_from": k - 1})
                return MaterializeResult(
                    metadata={
                        "pairs": 0,
                        "carried_over": previous["checkpoint"],
                        **run_link_metadata(link, run),
                    }
                )
            spec = TrainSpec(
                "dpo",
                previous["checkpoint"],
                str(sc.layout.pairs_jsonl(k)),
                str(sc.layout.prompt_book),
                str(out_dir),
                params_obj.model_dump(),
            )
            result = train(spec, settings.accelerate_config)
            tracking.log_history(result.log_history, "dpo")
            mlflow.log_metrics({f"dpo_{k_}": v for k_, v in result.metrics.items()})
            version = tracking.register_checkpoint(sc.task, out_dir, iteration=k, stage="dpo")
        write_policy_info(
            sc.layout,
            k,
            {"checkpoint": str(out_dir), "model_version": version, "mlflow_run_id": run.info.run_id},
        )
        return MaterializeResult(
            metadata={
                "train_loss": result.metrics.get("train_loss", float("nan")),
                "pairs": result.num_examples,
                "beta": params_obj.beta,
                "model_version": f"eto-{sc.task} v{version}",
                "path": MetadataValue.path(str(out_dir)),
                **run_link_metadata(link, run),
            }
        )

    return _dpo


def build_iteration_assets(k: int) -> list[AssetsDefinition]:
    if k < 1:
        raise ValueError("ETO iterations are numbered from 1 (iteration 0 is SFT)")
    return [exploration_asset(k), preference_pairs_asset(k), dpo_asset(k), eval_report_asset(k)]
