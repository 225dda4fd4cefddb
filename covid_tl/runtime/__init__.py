"""A run's machinery: config checks, safe loading of torch files and old configs, run dirs, tracking (over reporting)."""
