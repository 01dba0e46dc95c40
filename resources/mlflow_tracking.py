"""MLflow as a resource: embedded sqlite under ETO_HOME by default, any tracking server when
``MLFLOW_TRACKING_URI`` (or the ``tracking_uri`` field) says so."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from eto_assets import tracking
from eto_assets.config import settings as env
from eto_assets.stages.result import StageResult


class MlflowTracking(ConfigurableResource):
    tracking_uri: str | None = Field(
        default=env.read("MLFLOW_TRACKING_URI"),
        description="None: sqlite:///<ETO_HOME>/mlflow/mlflow.db",
    )
    ui_url: str = Field(
        default=env.read("ETO_MLFLOW_UI_URL"),
        description="where users open the MLflow UI (for run links in Dagster metadata)",
    )
    copy_checkpoints: bool = Field(
        default=env.read_flag("ETO_MLFLOW_COPY_CHECKPOINTS"),
        description="copy every checkpoint into MLflow's artifact store; false: registered versions refer "
        "to the checkpoint folder in place (a few KB each; loadable where that folder is)",
    )

    def resolved_uri(self, home: Path) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        db = home / "mlflow" / "mlflow.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}"

    @contextmanager
    def stage_run(
        self,
        home: Path,
        task: str,
        stage: str,
        iteration: int,
        *,
        context=None,
        params: Mapping[str, Any] | None = None,
    ) -> Iterator[tuple[Any, str]]:
        """Open the stage's MLflow run; yields (run, link). Tags carry the Dagster run and asset; in a
        Dagster run the stage run is nested under the pipeline's parent run."""
        tags: dict[str, str] = {}
        if context is not None:
            tags["dagster.run_id"] = context.run_id
            tags["dagster.asset_key"] = context.asset_key.to_user_string()
            if context.has_partition_key:
                tags["dagster.partition"] = context.partition_key
            tags["mlflow.parentRunId"] = self.parent_run(home, task, context.run_id)
        uri = self.resolved_uri(home)
        with tracking.stage_run(
            uri, task, stage, iteration, artifact_root=home / "mlflow" / "artifacts", tags=tags, params=params
        ) as run:
            yield run, tracking.run_url(uri, run, self.ui_url)

    def parent_run(self, home: Path, task: str, dagster_run_id: str) -> str:
        """The pipeline run's parent MLflow run for ``task`` (created on first use)."""
        artifacts = home / "mlflow" / "artifacts"
        return tracking.pipeline_parent(self.resolved_uri(home), task, dagster_run_id, artifacts)

    def tag_run(self, home: Path, run_id: str, key: str, value: str) -> None:
        tracking.set_run_tag(self.resolved_uri(home), run_id, key, value)

    def record_result(
        self, result: StageResult, task: str, iteration: int, stage: str, run: Any = None
    ) -> str | None:
        """:func:`tracking.record_result` with this resource's checkpoint storage setting, evaluation
        metrics also on the parent of ``run`` (the active stage run)."""
        parent = run.data.tags.get("mlflow.parentRunId") if run is not None else None
        return tracking.record_result(
            result, task, iteration, stage, copy_checkpoint=self.copy_checkpoints, parent_run_id=parent
        )
