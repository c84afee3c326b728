"""Datasets of features + labels, and importers for other published layouts."""
