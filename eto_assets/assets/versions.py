"""Versions, kept by Dagster: every asset has a ``code_version`` (its stage's, from the stage table),
every materialization reports a data version (the digest of the files it wrote, a checkpoint's
folder included), and the settings a stage reads are observed as source assets (``settings/*``)
whose data versions are digests of those settings. Dagster then marks an asset unsynced when its
code, its settings or an upstream data version changed, and the CLI and the sensor run exactly the
assets Dagster calls stale, plus those whose files no longer match the version Dagster recorded.

What Dagster's versions do not carry stays outside them: a rollout file's per-episode fingerprint
(resume within a stage, episode by episode) and a trainer's run identity (resume from its last saved
step); both decide what to redo inside one materialization, which Dagster does not see."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from dagster import AssetKey, AssetObservation, AssetRecordsFilter, DagsterInstance
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    DATA_VERSION_TAG,
    CachingStaleStatusResolver,
    StaleCause,
    StaleStatus,
)
from dagster._time import get_current_datetime

from eto_assets.assets.table import SettingsGroup, StageSpec, VersionInputs
from eto_assets.config.profile import Profile
from eto_assets.data.files import folder_identity
from eto_assets.stages.layout import ArtifactLayout


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def settings_versions(
    groups: Iterable[SettingsGroup], profile: Profile, task: str, inputs: VersionInputs
) -> dict[str, str]:
    """Settings group key -> the data version of that part of the settings for ``task``."""
    return {g.key: settings_version(g, profile, task, inputs) for g in groups}


def settings_version(group: SettingsGroup, profile: Profile, task: str, inputs: VersionInputs) -> str:
    """The data version of ``group``'s part of the settings for ``task``."""
    return digest(group.value(profile, task, inputs))


def output_version(spec: StageSpec, layout: ArtifactLayout) -> str:
    """The data version of what ``spec`` wrote: the identity of each output file, and of the
    checkpoint folder a ``policy.json`` names."""
    parts = []
    for path in spec.outputs(layout):
        if not path.exists():
            parts.append(f"missing:{path}")
            continue
        parts.append(folder_identity(path))
        if path.name == "policy.json":
            try:
                checkpoint = json.loads(path.read_text())["checkpoint"]
            except (OSError, ValueError, KeyError):
                parts.append("unreadable")
            else:
                parts.append(
                    folder_identity(checkpoint) if Path(checkpoint).exists() else f"missing:{checkpoint}"
                )
    return digest(parts)


def skipped_version(reason: str) -> str:
    """The data version of a no-op (a stage the profile leaves out)."""
    return digest({"skipped": reason})


def observed_version(instance: DagsterInstance, key: str, task: str) -> str | None:
    """The data version of the latest observation of the source asset ``key`` for ``task``."""
    found = instance.fetch_observations(
        AssetRecordsFilter(asset_key=AssetKey.from_user_string(key), asset_partitions=[task]), limit=1
    )
    observation = found.records[0].asset_observation if found.records else None
    return (observation.tags or {}).get(DATA_VERSION_TAG) if observation else None


def _latest_materialization(instance: DagsterInstance, key: str, task: str):
    """The latest materialization of ``key`` for ``task`` (None: never materialized)."""
    found = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey.from_user_string(key), asset_partitions=[task]), limit=1
    )
    return found.records[0].asset_materialization if found.records else None


def recorded_version(instance: DagsterInstance, key: str, task: str) -> str | None:
    """The data version of the latest materialization of ``key`` for ``task``."""
    materialization = _latest_materialization(instance, key, task)
    return (materialization.tags or {}).get(DATA_VERSION_TAG) if materialization else None


def has_materialization(instance: DagsterInstance, key: str, task: str) -> bool:
    return _latest_materialization(instance, key, task) is not None


def latest_metadata(instance: DagsterInstance, key: str, task: str) -> dict:
    """The metadata of the latest materialization of ``key`` for ``task`` (values unwrapped)."""
    materialization = _latest_materialization(instance, key, task)
    if materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def observe_settings(instance: DagsterInstance, versions: Mapping[str, str], task: str) -> list[str]:
    """Record an observation of each settings group whose version differs from the latest one
    observed (so Dagster sees the change before anything runs); returns the keys that changed."""
    changed = []
    for key, version in versions.items():
        if observed_version(instance, key, task) != version:
            instance.report_runless_asset_event(
                AssetObservation(
                    asset_key=AssetKey.from_user_string(key), partition=task, tags={DATA_VERSION_TAG: version}
                )
            )
            changed.append(key)
    return changed


def _cause(cause: StaleCause) -> str:
    text = cause.reason
    if cause.dependency is not None:
        text += f" ({cause.dependency.asset_key.to_user_string()})"
    return text


def stale_assets(
    instance: DagsterInstance,
    asset_graph,
    table: list[StageSpec],
    task: str,
    layout: ArtifactLayout,
    inactive: set[str],
) -> tuple[list[str], dict[str, str]]:
    """(assets to run, in table order; why each runs or is skipped). An asset runs when Dagster calls
    it missing or stale (code, settings or an upstream version changed), when its files no longer
    match the data version Dagster recorded (deleted or edited; ``inactive`` assets write none), or
    when an asset it depends on runs."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    resolver = CachingStaleStatusResolver(instance, asset_graph, view)
    reasons: dict[str, str] = {}
    selected: list[str] = []
    for spec in table:
        key = AssetKey.from_user_string(spec.key)
        status = resolver.get_status(key, task)
        upstream = [d for d in spec.deps if d in selected]
        if status == StaleStatus.MISSING:
            why = "never materialized"
        elif status == StaleStatus.STALE:
            why = "stale: " + "; ".join(_cause(c) for c in resolver.get_stale_causes(key, task))
        elif spec.key not in inactive and recorded_version(instance, spec.key, task) != output_version(
            spec, layout
        ):
            why = "its files changed or are missing since it was materialized"
        elif upstream:
            why = f"upstream reruns: {', '.join(upstream)}"
        else:
            reasons[spec.key] = "up to date (Dagster: code, settings and inputs unchanged; files as recorded)"
            continue
        selected.append(spec.key)
        reasons[spec.key] = why
    return selected, reasons
