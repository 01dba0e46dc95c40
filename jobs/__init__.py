"""Jobs, schedules and sensors over the ETO asset graph."""

from jobs.eto import build_jobs_and_schedules, eto_inputs_changed, eto_job

__all__ = ["build_jobs_and_schedules", "eto_inputs_changed", "eto_job"]
