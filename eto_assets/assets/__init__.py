"""The Dagster layer: thin assets over :mod:`eto_assets.pipeline`."""

from eto_assets.assets.expert import expert_trajectories
from eto_assets.assets.iteration import build_iteration_assets, eval_report_asset
from eto_assets.assets.sft import sft_checkpoint
from eto_assets.assets.summary import build_summary_asset

__all__ = [
    "build_iteration_assets",
    "build_summary_asset",
    "eval_report_asset",
    "expert_trajectories",
    "sft_checkpoint",
]
