"""The run queue's guard on the accelerators: every ``eto_job`` run is tagged ``eto/device`` (``gpu``
where GPUs are shared, else ``cpu``), and the queued run coordinator lets at most ``ETO_GPUS`` gpu
runs and ``ETO_CPU_RUNS`` cpu runs go at once; the rest wait in the queue instead of fighting for one
device. ``make services`` writes these limits into the team instance's ``dagster.yaml``."""

from __future__ import annotations

from eto_assets.config import settings

DEVICE_TAG = "eto/device"


def device_kind(gpus: int | None = None) -> str:
    """``gpu`` when the run queue shares GPUs (``ETO_GPUS``, else those torch sees), else ``cpu``."""
    return "gpu" if (settings.gpus() if gpus is None else gpus) > 0 else "cpu"


def device_tags(gpus: int | None = None) -> dict[str, str]:
    return {DEVICE_TAG: device_kind(gpus)}


def tag_concurrency_limits(gpus: int | None = None, cpu_runs: int | None = None) -> list[dict]:
    """The queued run coordinator's ``tag_concurrency_limits``: one run per GPU, ``cpu_runs`` CPU runs."""
    gpus = settings.gpus() if gpus is None else gpus
    cpu_runs = settings.cpu_runs() if cpu_runs is None else cpu_runs
    return [
        {"key": DEVICE_TAG, "value": "gpu", "limit": max(gpus, 1)},
        {"key": DEVICE_TAG, "value": "cpu", "limit": cpu_runs},
    ]
