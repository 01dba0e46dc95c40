"""The ETO asset graph for N unrolled iterations, derived from the stage table."""

from dagster import AssetsDefinition, SourceAsset

from eto_assets.assets.stage_asset import build_stage_assets
from eto_assets.assets.table import settings_groups, stage_table


def build_assets(n: int) -> list[AssetsDefinition | SourceAsset]:
    """The settings groups (observed source assets), expert data, the base model, SFT, the base
    model's and SFT's evaluations, N unrolled iterations and the report."""
    return build_stage_assets(stage_table(n), settings_groups(n), n)
