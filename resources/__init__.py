"""Dagster resources: settings, MLflow, inference backend and environment pool."""

from resources.environments import EnvironmentsResource
from resources.inference import InferenceResource
from resources.mlflow_tracking import MlflowTracking
from resources.settings import EtoSettings

__all__ = ["EnvironmentsResource", "EtoSettings", "InferenceResource", "MlflowTracking"]
