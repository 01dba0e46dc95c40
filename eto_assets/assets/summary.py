"""The iteration comparison: reward by iteration, and the best iteration (by the seen split),
which also becomes the ``best`` alias of the registered model."""

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset
from mlflow.tracking import MlflowClient

from eto_assets import tracking
from eto_assets.assets.common import TASK_PARTITIONS, stage_context
from eto_assets.report import write_summary
from resources import EtoSettings, MlflowTracking


def build_summary_asset(iterations: int) -> AssetsDefinition:
    @asset(
        name="iteration_summary",
        partitions_def=TASK_PARTITIONS,
        group_name="report",
        deps=[AssetKey([f"iteration_{k}", "eval_report"]) for k in range(iterations + 1)],
        kinds={"python", "mlflow"},
        description="Reward and success rate by iteration, the best iteration marked; the best "
        "checkpoint gets the 'best' alias in the MLflow model registry.",
    )
    def _summary(
        context: AssetExecutionContext, settings: EtoSettings, mlflow_tracking: MlflowTracking
    ) -> MaterializeResult:
        sc = stage_context(context, settings)
        path, table, best = write_summary(sc.layout, iterations)
        context.log.info(f"ETO on {sc.task}:\n{table}")
        metadata = {"table": MetadataValue.md(table), "path": MetadataValue.path(str(path))}
        if best is not None:
            metadata["best_iteration"] = best.iteration
            if best.model_version:
                tracking.use_experiment(mlflow_tracking.resolved_uri(sc.home), sc.task, None)
                MlflowClient().set_registered_model_alias(
                    tracking.model_name(sc.task), "best", best.model_version
                )
                metadata["best_model"] = f"models:/{tracking.model_name(sc.task)}@best"
        return MaterializeResult(metadata=metadata)

    return _summary
