"""MemoryPeak sees what a stage allocates in this process and in its environment processes."""

import subprocess
import sys

import numpy as np

from eto_assets.stages.meter import MemoryPeak


def test_peak_counts_this_process_and_its_children_separately():
    with MemoryPeak() as before:
        pass
    child = "import numpy, time; a = numpy.ones(400_000_000 // 8); time.sleep(1.5)"
    with MemoryPeak() as peak:
        block = np.ones(300_000_000 // 8)  # 300 MB, touched
        del block
        subprocess.run([sys.executable, "-c", child], check=True)
    assert peak.process_gb - before.process_gb > 0.25  # the freed block still counts: a peak
    assert peak.children_gb > 0.3
    assert peak.wall_s > 1.0
    assert set(peak.metrics()) == {"peak_rss_gb", "peak_rss_environments_gb"}
