"""Evaluation: scoring predictions, slices, attribution, behavioural tests, external sets, the label audit."""
