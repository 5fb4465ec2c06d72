"""Training utilities shared by the examples: configs, the loop, checkpoints, metrics, plots.

``import jaxrnn.train`` (not ``import jaxrnn``) loads these, together with
Orbax, Rich and PyYAML (all come with Flax); plots need matplotlib
(``pip install "jaxrnn[examples]"``).

A run is a pure ``train_step(state, step) -> (state, metrics)`` handed to
:func:`fit`, which keeps a work directory with Orbax checkpoints,
``metrics.jsonl``, ``config.json`` and ``curves.png``, shows a Rich progress
bar, saves on Ctrl-C, and resumes exactly where an earlier run stopped.
"""

from jaxrnn.train._checkpoint import CheckpointError as CheckpointError
from jaxrnn.train._checkpoint import Checkpoints as Checkpoints
from jaxrnn.train._cli import add_run_arguments as add_run_arguments
from jaxrnn.train._cli import parse_run as parse_run
from jaxrnn.train._cli import run_main as run_main
from jaxrnn.train._cli import user_errors as user_errors
from jaxrnn.train._config import ConfigError as ConfigError
from jaxrnn.train._config import from_dict as from_dict
from jaxrnn.train._config import load_config as load_config
from jaxrnn.train._config import parse_override as parse_override
from jaxrnn.train._config import to_dict as to_dict
from jaxrnn.train._data import DataError as DataError
from jaxrnn.train._data import check_length as check_length
from jaxrnn.train._data import read_text as read_text
from jaxrnn.train._loop import RESUMABLE_KEYS as RESUMABLE_KEYS
from jaxrnn.train._loop import RunResult as RunResult
from jaxrnn.train._loop import fit as fit
from jaxrnn.train._loop import schedule as schedule
from jaxrnn.train._metrics import MetricsLog as MetricsLog
from jaxrnn.train._metrics import read_metrics as read_metrics
from jaxrnn.train._plots import figure as figure
from jaxrnn.train._plots import plot_metrics as plot_metrics
from jaxrnn.train._plots import save_figure as save_figure
