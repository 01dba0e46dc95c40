"""Both UIs in a real headless Chromium (Debian's package, driven by Playwright; no browser
download) against the state the micro profile leaves: what a user clicks through after a run.
Screenshots are saved under ``$ETO_TEST_ARTIFACTS`` (default: the test's temporary folder)."""

import os
import shutil
from pathlib import Path

import pytest

from tests.browser.servers import dagster_webserver, mlflow_server
from tests.conftest import REPO

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def uis(micro_pipeline, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: install Debian's chromium package (make browser-setup)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    result, root, uri, _ = micro_pipeline("sciworld")
    shots = Path(os.environ.get("ETO_TEST_ARTIFACTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    logs = tmp_path_factory.mktemp("server-logs")
    artifacts = root / "home" / "mlflow" / "artifacts"
    with (
        dagster_webserver(REPO, root / "dagster", logs / "dagster.log") as dagster_url,
        mlflow_server(uri, artifacts, logs / "mlflow.log", REPO) as mlflow_url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        yield page, dagster_url, mlflow_url, result, uri, shots
        browser.close()


def visit(page, url: str, *texts: str, shot: Path, ready: str | None = None, timeout: float = 60_000) -> str:
    """Open ``url``, dismiss Dagster's first-visit dialog, wait for every text (and the ``ready``
    selector), save a screenshot."""
    page.goto(url)
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=3_000)
        skip.click()
    except Exception:  # the dialog only shows on a first visit
        pass
    for text in texts:
        page.get_by_text(text, exact=False).first.wait_for(timeout=timeout)
    if ready is not None:
        page.locator(ready).first.wait_for(timeout=timeout)
    if skip.is_visible():  # on a loaded machine the dialog can open after the 3 s above
        skip.click()
        skip.wait_for(state="hidden", timeout=timeout)
    page.screenshot(path=str(shot), full_page=True)
    return page.inner_text("body")


def test_asset_graph_shows_the_iteration_chain(uis):
    page, dagster, _, _, _, shots = uis
    visit(
        page,
        f"{dagster}/locations/eto/asset-groups/iteration_1",
        "exploration_rollouts",
        "preference_pairs",
        "dpo_checkpoint",
        "eval_report",
        shot=shots / "dagster_iteration_chain.png",
    )
    body = visit(
        page, f"{dagster}/assets/iteration_1/eval_report", "Partitions", shot=shots / "dagster_eval_asset.png"
    )
    assert "sciworld" in body


VERSIONS_QUERY = """
query Versions($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    opVersion
    dataVersion(partition: "sciworld")
    staleStatus(partition: "sciworld")
  }
}
"""


def graphql(dagster: str, query: str, variables: dict) -> dict:
    import json
    import urllib.request

    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"{dagster}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


def test_assets_show_their_code_and_data_versions(uis):
    """What the UI reads for an asset (its GraphQL): the stage table's code version, the data version
    of its files, and up to date (FRESH) right after the run; the asset page shows both versions."""
    page, dagster, _, _, _, shots = uis
    keys = [
        {"path": ["sft_checkpoint"]},
        {"path": ["iteration_1", "dpo_checkpoint"]},
        {"path": ["settings", "sft"]},
    ]
    nodes = {
        "/".join(n["assetKey"]["path"]): n
        for n in graphql(dagster, VERSIONS_QUERY, {"keys": keys})["assetNodes"]
    }
    for key in ("sft_checkpoint", "iteration_1/dpo_checkpoint"):
        assert nodes[key]["opVersion"] == "1" and len(nodes[key]["dataVersion"]) == 16, nodes[key]
        assert nodes[key]["staleStatus"] == "FRESH", nodes[key]
    assert nodes["settings/sft"]["dataVersion"]  # the settings the run observed
    body = visit(
        page,
        f"{dagster}/assets/sft_checkpoint?partition=sciworld",
        "data_version",
        "Compute details",
        shot=shots / "dagster_data_version.png",
    )
    assert nodes["sft_checkpoint"]["dataVersion"] in body  # the metadata names the digest
    page.get_by_text("Compute details").first.click()
    page.get_by_text("Code version").first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "dagster_code_version.png"), full_page=True)


def test_job_run_list_contains_the_pipeline_run(uis):
    page, dagster, _, result, _, shots = uis
    visit(
        page,
        f"{dagster}/locations/eto/jobs/eto_job/runs",
        result.run_id[:8],
        shot=shots / "dagster_job_runs.png",
    )


def test_asset_metadata_links_to_mlflow(uis):
    page, dagster, _, _, _, shots = uis
    visit(
        page,
        f"{dagster}/assets/expert_trajectories?partition=sciworld",
        "expert_count",
        "mlflow_run",
        shot=shots / "dagster_asset_metadata.png",
    )
    links = [a.get_attribute("href") or "" for a in page.locator("a").all()]
    assert any("#/experiments/" in link and "/runs/" in link for link in links)


def parent_run(uri: str, dagster_run_id: str):
    """The pipeline's parent run of ``dagster_run_id`` (other tests may add runs to the store)."""
    from mlflow.tracking import MlflowClient

    from eto_assets.assets.tracking import find_pipeline

    experiment = MlflowClient(uri).get_experiment_by_name("eto-sciworld")
    return experiment.experiment_id, find_pipeline(uri, "sciworld", dagster_run_id)


def test_parent_run_charts_reward_by_iteration(uis):
    page, _, mlflow_url, result, uri, shots = uis
    experiment, parent = parent_run(uri, result.run_id)
    url = f"{mlflow_url}/#/experiments/{experiment}/runs/{parent}/model-metrics?workflowType=machine_learning"
    # the charts, not just the metrics' names: each metric's history is drawn as a line over steps
    shot = shots / "mlflow_parent_reward_by_iteration.png"
    visit(
        page,
        url,
        "seen_avg_reward",
        shot=shot,
        ready=".js-plotly-plot .scatterlayer .trace",
    )
    assert page.locator(".js-plotly-plot").count() >= 2


def test_registered_versions_show_the_champion(uis):
    page, _, mlflow_url, _, _, shots = uis
    visit(
        page,
        f"{mlflow_url}/#/models/eto-sciworld",
        "champion",
        "Version 1",
        shot=shots / "mlflow_champion.png",
    )
