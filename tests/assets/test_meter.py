"""MemoryPeak sees what a stage allocates in this process and in its environment processes."""

import subprocess
import sys

import numpy as np
import psutil

from eto_assets.assets.meter import GB, MemoryPeak
from eto_assets.config.memory import trim


def test_peak_counts_this_process_and_its_children_separately():
    trim()  # what earlier tests freed is handed back, so a new block must raise the resident set
    child = "import numpy, time; a = numpy.ones(400_000_000 // 8); time.sleep(1.5)"
    with MemoryPeak() as peak:
        resident = psutil.Process().memory_info().rss
        block = np.ones(500_000_000 // 8)  # 500 MB, touched (its own mapping: above glibc's threshold)
        del block
        subprocess.run([sys.executable, "-c", child], check=True)
    assert peak.process_gb * GB - resident > 0.4e9  # freed before the end, still counted: a peak
    assert peak.children_gb > 0.3
    assert peak.wall_s > 1.0
    assert set(peak.metrics()) == {"peak_rss_gb", "peak_rss_environments_gb"}
