"""ETO (Exploration-based Trajectory Optimization) as a Dagster project.

The core (``config``, ``data``, ``envs``, ``agent``, ``training``, ``models``) and the stages
(``stages``: one plain function per ETO stage) are plain Python: they import no Dagster, no MLflow.
``assets`` is the Dagster layer over them (the stage table and the one wrapper that records each
stage in MLflow and Dagster), and ``definitions`` assembles it with ``resources`` and ``jobs``.
"""
