"""Tracking: metrics and reports, plots, and MLflow logging."""
