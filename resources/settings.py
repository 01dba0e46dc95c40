"""Run-wide settings, read once at the edge: where artifacts live, which profile and base model.

Defaults are the environment's values when the code location loads (``config/settings.py``), as
plain field defaults, so the launchpad shows every setting with its value and a run can override it.
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from eto_assets.config import settings as env
from eto_assets.config.profile import CONFIG_DIR, Profile, load_profile
from eto_assets.stages.layout import ArtifactLayout


def profile_reference() -> str:
    """What a profile holds, for the launchpad: the shipped profiles and each top-level field's
    description (every field of every section is in ``docs/profile.md``)."""
    shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    fields = "; ".join(f"{name}: {f.description}" for name, f in Profile.model_fields.items())
    return f"Shipped profiles: {shipped}. Fields (docs/profile.md has them all): {fields}"


def _from_env(name: str):
    """A field whose default is the variable's value at load time, documented by its help text."""
    return Field(default=env.read(name), description=f"{name}: {env.SETTINGS[name].help}")


class EtoSettings(ConfigurableResource):
    """``home`` holds every generated artifact; ``data_dir`` the benchmark data that is not
    generated (ALFWorld games, WebShop files), laid out like the project's ``shared/data``."""

    home: str = _from_env("ETO_HOME")
    profile: str = Field(
        default=env.read("ETO_PROFILE"),
        description=f"ETO_PROFILE: {env.SETTINGS['ETO_PROFILE'].help}. {profile_reference()}",
    )
    base_model: str = _from_env("ETO_BASE_MODEL")
    accelerate_config: str | None = _from_env("ETO_ACCELERATE_CONFIG")
    methods: str | None = Field(
        default=None,
        description="the methods this run trains and evaluates beside SFT (a comma list of eto, best_of_n, "
        "rft, rl, selfplay_eto, selfplay_rft, selfplay_rft_eto, or all), instead of the profile's "
        "`methods`; unset: the profile's",
    )
    data_dir: str | None = _from_env("ETO_DATA_DIR")
    alfworld_data: str | None = _from_env("ALFWORLD_DATA")

    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    def data_path(self) -> Path | None:
        return Path(self.data_dir).expanduser().resolve() if self.data_dir else None

    def load_profile(self) -> Profile:
        profile = load_profile(self.profile)
        return profile.with_methods(self.methods) if self.methods else profile

    def layout(self, task: str) -> ArtifactLayout:
        return ArtifactLayout(self.home_path(), task)
