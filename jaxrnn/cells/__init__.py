"""The built-in cells, one module per family; importing this package registers them all.

Each module holds its cell's params, ``init``, ``step``, the pieces of its scan
rule and its one :func:`jaxrnn.register_cell`. A cell imports from the core
(``jaxrnn._*``) and from :mod:`jaxrnn.rules`, never from another cell. Every
name here is also at the top of the package (``jaxrnn.lstm_step``).
"""

from jaxrnn.cells.conv_lstm import ConvLSTMParams as ConvLSTMParams
from jaxrnn.cells.conv_lstm import conv_lstm_init as conv_lstm_init
from jaxrnn.cells.conv_lstm import conv_lstm_step as conv_lstm_step
from jaxrnn.cells.gru import GRUParams as GRUParams
from jaxrnn.cells.gru import gru_init as gru_init
from jaxrnn.cells.gru import gru_step as gru_step
from jaxrnn.cells.hawk import HawkParams as HawkParams
from jaxrnn.cells.hawk import HawkState as HawkState
from jaxrnn.cells.hawk import hawk_init as hawk_init
from jaxrnn.cells.hawk import hawk_step as hawk_step
from jaxrnn.cells.lru import LRUParams as LRUParams
from jaxrnn.cells.lru import lru_init as lru_init
from jaxrnn.cells.lru import lru_step as lru_step
from jaxrnn.cells.lstm import LSTMParams as LSTMParams
from jaxrnn.cells.lstm import lstm_init as lstm_init
from jaxrnn.cells.lstm import lstm_step as lstm_step
from jaxrnn.cells.mgu import MGUParams as MGUParams
from jaxrnn.cells.mgu import mgu_init as mgu_init
from jaxrnn.cells.mgu import mgu_step as mgu_step
from jaxrnn.cells.mingru import MinGRUParams as MinGRUParams
from jaxrnn.cells.mingru import mingru_init as mingru_init
from jaxrnn.cells.mingru import mingru_step as mingru_step
from jaxrnn.cells.minlstm import MinLSTMParams as MinLSTMParams
from jaxrnn.cells.minlstm import minlstm_init as minlstm_init
from jaxrnn.cells.minlstm import minlstm_step as minlstm_step
from jaxrnn.cells.mlstm import MLSTMParams as MLSTMParams
from jaxrnn.cells.mlstm import MLSTMState as MLSTMState
from jaxrnn.cells.mlstm import mlstm_init as mlstm_init
from jaxrnn.cells.mlstm import mlstm_step as mlstm_step
from jaxrnn.cells.rglru import RGLRUParams as RGLRUParams
from jaxrnn.cells.rglru import rglru_init as rglru_init
from jaxrnn.cells.rglru import rglru_step as rglru_step
from jaxrnn.cells.rnn import RNNParams as RNNParams
from jaxrnn.cells.rnn import rnn_init as rnn_init
from jaxrnn.cells.rnn import rnn_step as rnn_step
from jaxrnn.cells.s6 import S6Params as S6Params
from jaxrnn.cells.s6 import s6_init as s6_init
from jaxrnn.cells.s6 import s6_step as s6_step
from jaxrnn.cells.slstm import SLSTMParams as SLSTMParams
from jaxrnn.cells.slstm import SLSTMState as SLSTMState
from jaxrnn.cells.slstm import slstm_init as slstm_init
from jaxrnn.cells.slstm import slstm_step as slstm_step
