"""The Dagster layer: every asset is :func:`stage_asset` over a stage of :mod:`eto_assets.stages`."""

from eto_assets.assets.graph import build_assets, policy_key
from eto_assets.assets.stage_asset import stage_asset

__all__ = ["build_assets", "policy_key", "stage_asset"]
