"""Thin widgets: traits and wiring to methods/, nothing numeric."""
from .heatmap import Heatmap
from .lens import LogitLens
from .patching import PatchingGrid
from .steering import Steering

__all__ = ["Heatmap", "LogitLens", "PatchingGrid", "Steering"]
