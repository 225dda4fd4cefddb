"""Data: every source becomes one Manifest; splits, datasets and the DataModule read it."""
