"""Exact conversion between jaxrnn params and PyTorch's, Flax's or ``xlstm``'s recurrent
cells, and RecurrentGemma's recurrent layers.

PyTorch, Flax and ``xlstm`` are imported only inside these functions (RecurrentGemma
never: its variables are plain arrays); ``import jaxrnn`` never imports them.
"""

from jaxrnn.interop._flax import from_flax as from_flax
from jaxrnn.interop._recurrentgemma import from_recurrentgemma as from_recurrentgemma
from jaxrnn.interop._torch import from_torch as from_torch
from jaxrnn.interop._torch import to_torch as to_torch
from jaxrnn.interop._xlstm import from_xlstm as from_xlstm
