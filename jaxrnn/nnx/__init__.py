"""Flax NNX modules: thin holders of jaxrnn params that call the functional core.

``jaxrnn.nnx`` loads on first access, so a plain ``import jaxrnn`` does not import Flax.
"""

from jaxrnn.nnx._cells import GRUCell as GRUCell
from jaxrnn.nnx._cells import LSTMCell as LSTMCell
from jaxrnn.nnx._cells import RecurrentCell as RecurrentCell
from jaxrnn.nnx._cells import RNNCell as RNNCell
from jaxrnn.nnx._layers import GRU as GRU
from jaxrnn.nnx._layers import LSTM as LSTM
from jaxrnn.nnx._layers import RNN as RNN
from jaxrnn.nnx._layers import Recurrent as Recurrent
