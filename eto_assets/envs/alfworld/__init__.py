"""ALFWorld (text) on TextWorld's PDDL engine, with the json_2.1.1 game files ETO and ReAct use.

Modules: :mod:`.engine` (one game on the real engine: observations, admissible commands, ``won``),
:mod:`.expert` (plays a game through the engine to produce expert trajectories) and :mod:`.benchmark`
(splits, task lists, prompt; :class:`~.benchmark.AlfWorldBenchmark`). Imports run one way, engine <-
expert <- benchmark. This file imports nothing, so loading one module never loads the others and no
module ever waits on a half-initialised package.
"""
