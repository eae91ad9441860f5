"""Thin widgets: traits and wiring to methods/, nothing numeric."""
from .attention import Attention
from .dla import LogitAttribution
from .heatmap import Heatmap
from .lens import LogitLens
from .patching import PatchingGrid
from .steering import Steering

__all__ = ["Attention", "Heatmap", "LogitAttribution", "LogitLens", "PatchingGrid", "Steering"]
