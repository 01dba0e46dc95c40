"""Real pretrained models the pipeline can fetch and run offline: see :mod:`.real_model`
(``python -m eto_assets.models.real_model`` or ``make real-model``)."""
