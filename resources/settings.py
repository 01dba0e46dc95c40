"""Run-wide settings, read once at the edge: where artifacts live, which profile and base model."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from eto_assets.config.profile import Profile, load_profile
from eto_assets.layout import ArtifactLayout


def default_home() -> str:
    return os.environ.get("ETO_HOME", ".eto")


class EtoSettings(ConfigurableResource):
    """``home`` holds every generated artifact; ``data_dir`` the benchmark data that is not
    generated (ALFWorld games, WebShop files), laid out like the project's ``shared/data``."""

    home: str = Field(default_factory=default_home, description="ETO_HOME: artifacts root")
    profile: str = Field(
        default_factory=lambda: os.environ.get("ETO_PROFILE", "tiny"),
        description="profile name in configs/ or a path to a profile YAML",
    )
    base_model: str = Field(
        default_factory=lambda: os.environ.get("ETO_BASE_MODEL", "tiny"),
        description="'tiny' (built by the pipeline) or a local Hugging Face model folder",
    )
    accelerate_config: str | None = Field(
        default_factory=lambda: os.environ.get("ETO_ACCELERATE_CONFIG"),
        description="accelerate config file: SFT/DPO run under `accelerate launch` (multi-GPU, DeepSpeed)",
    )
    data_dir: str | None = Field(
        default_factory=lambda: os.environ.get("ETO_DATA_DIR"), description="ETO_DATA_DIR"
    )

    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    def data_path(self) -> Path | None:
        return Path(self.data_dir).expanduser().resolve() if self.data_dir else None

    def load_profile(self) -> Profile:
        return load_profile(self.profile)

    def layout(self, task: str) -> ArtifactLayout:
        return ArtifactLayout(self.home_path(), task)
