"""Prompt building, action parsing, inference backends and the batched rollout engine."""
