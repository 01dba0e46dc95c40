"""One default per setting: the README's settings table says what ``config/settings.py`` does."""

import re

from eto_assets.config.settings import SETTINGS
from tests.conftest import REPO


def readme_defaults() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", (REPO / "README.md").read_text(), re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_setting_is_documented_with_its_default():
    documented = readme_defaults()
    for name, setting in SETTINGS.items():
        assert name in documented, f"{name} is missing from the README's settings table"
        if setting.default is None:
            assert documented[name].startswith("unset"), name
        else:
            assert documented[name] == f"`{setting.default}`", name
