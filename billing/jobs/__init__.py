"""Billing background jobs: task functions, an in-process scheduler, a Celery app."""

from billing.jobs.scheduler import JobScheduler
from billing.jobs.tasks import DEFAULT_SCHEDULE, TASKS, JobContext, ScheduleEntry

__all__ = ["DEFAULT_SCHEDULE", "TASKS", "JobContext", "JobScheduler", "ScheduleEntry"]
