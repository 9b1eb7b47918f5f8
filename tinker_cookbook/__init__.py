"""Distill a teacher language model into a student, through the Tinker API."""

__version__ = "0.1.0"
