"""Statistics of a model's calls: metrics with patient-level intervals, calibration, the operating point (over core)."""
