"""MLflow as a resource: where runs are tracked (embedded sqlite under ETO_HOME by default, any
tracking server when ``MLFLOW_TRACKING_URI`` or the ``tracking_uri`` field says so), where users
open the UI, and how checkpoints are stored. The resource holds settings only: the MLflow calls
live in the asset layer (:mod:`eto_assets.assets.tracking`)."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from eto_assets.config import settings as env


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

    @staticmethod
    def artifact_root(home: Path) -> Path:
        """Where a local store keeps artifacts (a server keeps its own)."""
        return home / "mlflow" / "artifacts"
