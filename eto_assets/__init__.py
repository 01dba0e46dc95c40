"""ETO (Exploration-based Trajectory Optimization) as a Dagster project.

The sub-packages ``envs``, ``agent``, ``data`` and ``training`` are plain Python and import no
Dagster; ``assets`` holds the thin Dagster layer over them.
"""
