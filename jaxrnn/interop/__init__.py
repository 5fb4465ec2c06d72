"""Exact conversion between jaxrnn params and PyTorch's recurrent modules.

PyTorch is imported only inside these functions; ``import jaxrnn`` never imports it.
"""

from jaxrnn.interop._torch import from_torch as from_torch
from jaxrnn.interop._torch import to_torch as to_torch
