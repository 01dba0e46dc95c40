"""Run-wide settings, read once at the edge: where artifacts live, which profile and base model."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from eto_assets.config import settings as env
from eto_assets.config.profile import Profile, load_profile
from eto_assets.layout import ArtifactLayout


class EtoSettings(ConfigurableResource):
    """``home`` holds every generated artifact; ``data_dir`` the benchmark data that is not
    generated (ALFWorld games, WebShop files), laid out like the project's ``shared/data``."""

    home: str = Field(default_factory=lambda: env.read("ETO_HOME"), description=env.SETTINGS["ETO_HOME"].help)
    profile: str = Field(
        default_factory=lambda: env.read("ETO_PROFILE"), description=env.SETTINGS["ETO_PROFILE"].help
    )
    base_model: str = Field(
        default_factory=lambda: env.read("ETO_BASE_MODEL"), description=env.SETTINGS["ETO_BASE_MODEL"].help
    )
    accelerate_config: str | None = Field(
        default_factory=lambda: env.read("ETO_ACCELERATE_CONFIG"),
        description=env.SETTINGS["ETO_ACCELERATE_CONFIG"].help,
    )
    data_dir: str | None = Field(
        default_factory=lambda: env.read("ETO_DATA_DIR"), description=env.SETTINGS["ETO_DATA_DIR"].help
    )
    alfworld_data: str | None = Field(
        default_factory=lambda: env.read("ALFWORLD_DATA"), description=env.SETTINGS["ALFWORLD_DATA"].help
    )

    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    def data_path(self) -> Path | None:
        return Path(self.data_dir).expanduser().resolve() if self.data_dir else None

    def load_profile(self) -> Profile:
        return load_profile(self.profile)

    def layout(self, task: str) -> ArtifactLayout:
        return ArtifactLayout(self.home_path(), task)
