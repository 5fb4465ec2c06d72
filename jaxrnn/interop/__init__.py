"""Exact conversion between jaxrnn params and PyTorch's or Flax's recurrent cells, and
RecurrentGemma's recurrent layers.

PyTorch and Flax are imported only inside these functions (RecurrentGemma never: its
variables are plain arrays); ``import jaxrnn`` never imports them.
"""

from jaxrnn.interop._flax import from_flax as from_flax
from jaxrnn.interop._recurrentgemma import from_recurrentgemma as from_recurrentgemma
from jaxrnn.interop._torch import from_torch as from_torch
from jaxrnn.interop._torch import to_torch as to_torch
