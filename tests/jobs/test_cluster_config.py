"""The path to a cluster, tested as far as this machine goes: the Kubernetes and Docker instance files
under deploy/ validate against Dagster's instance schema and their run launcher's own config schema
(dagster-k8s, dagster-docker), carry the run queue's device limits and name only settings the
project knows; the image definition installs what ``make setup`` installs and builds where a Docker
daemon answers. Nothing here runs against a cluster."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config

from eto_assets.config.settings import SETTINGS
from jobs.queue import DEVICE_TAG
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
DAGSTER_PG = {
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_DB",
    "DAGSTER_PG_PORT",
}


@pytest.mark.parametrize("name", ["dagster.k8s.yaml", "dagster.docker.yaml"])
def test_cluster_instance_files_validate_against_dagster_and_their_launcher(name, tmp_path):
    (tmp_path / "dagster.yaml").write_text((DEPLOY / name).read_text())
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's instance schema (raises when invalid)
    launcher = config["run_launcher"]
    klass = getattr(importlib.import_module(launcher["module"]), launcher["class"])
    result = process_config(resolve_to_config_type(klass.config_type()), launcher["config"])
    assert result.success, [error.message for error in result.errors]

    limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {(limit["key"], limit["value"]) for limit in limits} == {(DEVICE_TAG, "gpu"), (DEVICE_TAG, "cpu")}
    names = {entry.split("=", 1)[0] for entry in launcher["config"]["env_vars"]}
    assert names <= set(SETTINGS) | DAGSTER_PG, names - set(SETTINGS) - DAGSTER_PG  # no unknown setting


def test_a_broken_launcher_config_is_refused(tmp_path):
    config = yaml.safe_load((DEPLOY / "dagster.k8s.yaml").read_text())
    config["run_launcher"]["config"]["run_k8s_config"] = {"container_config": "not a mapping"}
    from dagster_k8s import K8sRunLauncher

    result = process_config(
        resolve_to_config_type(K8sRunLauncher.config_type()), config["run_launcher"]["config"]
    )
    assert not result.success


def test_the_image_installs_what_make_setup_installs():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    makefile = (REPO / "Makefile").read_text()
    torch = re.search(r"pip install -q (torch==[\d.]+)", makefile).group(1)
    assert torch in dockerfile and dockerfile.index(torch) < dockerfile.index(
        '-e ".[$EXTRAS]"'
    )  # CPU torch first
    for folder in ("eto_assets", "resources", "jobs", "configs"):
        assert f"COPY {folder} {folder}" in dockerfile
    assert "openjdk-17-jre-headless" in dockerfile  # ScienceWorld's engine


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not docker_answers(), reason="no Docker daemon answers `docker info` on this machine")
def test_the_image_builds():
    build = subprocess.run(
        ["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", "eto-dagster:test", str(REPO)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
