"""docs/profile.md is generated from the profile's models and every field says what it does, in
the doc and in the JSON schema a launchpad shows."""

import subprocess
import sys

from eto_assets.config.profile import Profile, TaskScope
from eto_assets.config.profile_doc import DOC_PATH, main, models, render
from eto_assets.config.training import DPOTrainConfig, RLTrainConfig, TrainConfig
from tests.conftest import REPO


def test_committed_doc_is_the_generated_one():
    assert DOC_PATH == REPO / "docs" / "profile.md"
    assert DOC_PATH.read_text() == render(), (
        "docs/profile.md is stale: python -m eto_assets.config.profile_doc"
    )
    assert main(["--check"]) == 0


def test_every_field_of_every_model_has_a_description():
    found = [model for model, _ in models()]
    assert {Profile, TaskScope, TrainConfig, DPOTrainConfig, RLTrainConfig} <= set(found) and len(found) == 16
    missing = [
        f"{model.__name__}.{name}"
        for model in found
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not missing, f"fields without a description: {missing}"


def test_json_schema_carries_the_descriptions():
    schema = Profile.model_json_schema()
    sections = {"Profile": schema, **schema["$defs"]}
    assert set(sections) == {model.__name__ for model, _ in models()}
    for section, body in sections.items():
        for name, prop in body["properties"].items():
            assert prop.get("description"), f"{section}.{name}"
    assert schema["properties"]["model"]["enum"] == ["tiny", "pretrained"]
    lr = schema["$defs"]["TrainConfig"]["properties"]["lr_scheduler_type"]
    assert "cosine" in lr["enum"] and "ETO" in lr["description"]


def test_every_section_and_field_is_in_the_doc():
    text = render()
    for model, _ in models():
        assert f"\n## {model.__name__}\n" in text
        own = model.model_fields.keys() - (
            TrainConfig.model_fields.keys() if model is DPOTrainConfig else set()
        )
        for name in own:
            assert f"\n| `{name}` |" in text, f"{model.__name__}.{name}"


def test_entry_point_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, "-m", "eto_assets.config.profile_doc", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
