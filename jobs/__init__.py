"""Jobs and schedules over the ETO asset graph."""

from jobs.eto import build_jobs_and_schedules, eto_job

__all__ = ["build_jobs_and_schedules", "eto_job"]
