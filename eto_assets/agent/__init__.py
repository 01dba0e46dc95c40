"""Prompt building, inference backends and the batched rollout engine (answers parse in `data.react`)."""
