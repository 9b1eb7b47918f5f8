"""Logging, checkpoint bookkeeping, schedules and plots shared by every training loop."""
