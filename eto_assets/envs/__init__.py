"""Benchmarks behind one small protocol (see :mod:`eto_assets.envs.base`)."""
