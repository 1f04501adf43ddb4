"""Datasets: reading sources, splitting, cleaning text."""
