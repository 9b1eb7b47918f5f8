"""Evaluation: answer extraction and grading, sampling evaluators (pass@k), NLL."""
