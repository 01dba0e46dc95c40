"""WebShop (Yao et al., 2022) in text mode, written for this project: WebShop's PyPI package does not
install (it imports a ``web_agent_site`` package it does not ship).

Modules: :mod:`.catalog` (records, upstream loaders, download step), :mod:`.generator` (offline
stand-in catalog), :mod:`.search` (BM25), :mod:`.pages` (text rendering), :mod:`.reward` (purchase
reward), :mod:`.env` (navigation), :mod:`.oracle` (expert), :mod:`.benchmark` (splits and prompt).
Import names from those modules (``eto_assets.envs.webshop.benchmark.WebShopBenchmark``): this file
imports nothing, so no submodule ever has to wait for it to finish.
"""
