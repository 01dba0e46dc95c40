"""The Dagster layer: the stage table (:mod:`~eto_assets.assets.table`), the one wrapper that turns
each row into an asset (:mod:`~eto_assets.assets.stage_asset`), and what that wrapper uses: versions,
MLflow tracking, locks, error lines, memory meters. Importing this package imports nothing; import
the module you need."""
