"""Thin widgets: traits and wiring to methods/, nothing numeric."""
from .heatmap import Heatmap
from .lens import LogitLens

__all__ = ["Heatmap", "LogitLens"]
