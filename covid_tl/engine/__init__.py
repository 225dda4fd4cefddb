"""Runs assembled from the layers below: built from config (build), evaluated (evaluation), described (model_card)."""
