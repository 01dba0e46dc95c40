"""Profiles: every knob of a pipeline run as typed, validated values (see ``configs/*.yaml``)."""
