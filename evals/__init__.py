"""Replayed transcripts as regression evals: `training-pipeline eval` (see evals/README.md)."""
