"""actwidgets: live widgets for looking inside language models (nnsight + anywidget).

    import actwidgets as aw
    model = aw.load()                      # embedded SmolLM2-135M-Instruct, offline
    aw.Heatmap(model, "When Mary and John went to the store, John gave a drink to")
    aw.LogitLens(model, "The Eiffel Tower is located in the city of", target=" Paris")
"""
from . import _malloc

_malloc.ask_torch_for_huge_pages()  # before anything below allocates a tensor (see _malloc)
from .errors import ActWidgetsError, InputError, ModelLoadError, RemoteRunError
from .model import Model, load, wrap
from .methods import activations, attention, dla, lens, patching, steering
from .widgets import Attention, Heatmap, LogitAttribution, LogitLens, PatchingGrid, Steering
from .widgets._snapshot import settle

__version__ = "0.1.0"
_malloc.large_blocks_from_mmap()  # a long lens must not leave the kernel at its peak (see _malloc)
__all__ = ["ActWidgetsError", "Attention", "Heatmap", "InputError", "LogitAttribution", "LogitLens",
           "Model", "ModelLoadError", "PatchingGrid", "RemoteRunError", "Steering",
           "activations", "attention", "dla", "lens", "load", "patching", "settle", "steering", "wrap"]
