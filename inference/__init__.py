"""Inference algorithms written against the generative function interface."""
