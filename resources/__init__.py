"""Dagster resources: settings, MLflow, inference backend and environment pool."""

from resources.environments import EnvironmentsResource
from resources.inference import InferenceResource
from resources.mlflow_tracking import MlflowTracking
from resources.settings import EtoSettings

__all__ = ["EnvironmentsResource", "EtoSettings", "InferenceResource", "MlflowTracking", "default_resources"]


def default_resources() -> dict:
    """Every resource the assets, the settings observations and the sensor use, with defaults from
    the environment (a run's config overrides any field)."""
    return {
        "settings": EtoSettings(),
        "mlflow_tracking": MlflowTracking(),
        "inference": InferenceResource(),
        "envs": EnvironmentsResource(),
    }
