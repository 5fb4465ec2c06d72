"""Training utilities: a resumable loop, typed configs, verified checkpoints, metrics, plots.

``import jaxrnn.train`` (not ``import jaxrnn``) loads these, together with
Orbax, Rich and PyYAML (all come with Flax); plots need matplotlib
(``pip install "jaxrnn[examples]"``).

A run is a pure ``train_step(state, step) -> (state, metrics)`` handed to
:func:`fit`, which keeps a work directory (locked against a second run) with
Orbax checkpoints verified by sha256 digests, ``metrics.jsonl``,
``config.json`` and ``curves.png``, shows a Rich progress bar, saves on
Ctrl-C, and resumes exactly where an earlier run stopped, on any number of
devices.

What a training script needs, and why:

* :func:`fit`: the loop itself: resume, progress, records, checkpoints, Ctrl-C.
* :class:`Schedule`: ``fit``'s step counts (steps, log, eval and checkpoint
  intervals), read from a config with ``Schedule.from_config``.
* :class:`Report`: how ``fit`` shows the run: progress label, throughput unit,
  plot panels.
* :class:`Panel`: which curves of ``curves.png`` share an axis, with reference lines.
* :class:`RunResult`: what ``fit`` returns (state, step, interrupted, last evaluation).
* :class:`DataParallel`: training on several devices (and hosts) with JAX's own
  sharding: a 1-D mesh named ``data``, the batch split over it, the state
  replicated; ``jax.jit`` reduces the gradient.
* :func:`load_config`: a typed config dataclass from a YAML/JSON file (or a
  mapping) and ``key=value`` overrides, with every value checked.
* :class:`Range`: declares the numbers a config field accepts
  (``Annotated[int, Range(ge=1)]``), checked before anything is written.
* :func:`run_main`: a script's whole command line: parse, lock, run, exit status.
* :func:`user_errors`: the same one-line messages and exit status 2 for a
  script with its own command line.
* :class:`Checkpoints`: save and restore a state outside ``fit`` (to sample or
  evaluate a trained model).
* :func:`read_metrics`: a run's ``metrics.jsonl`` records, for summaries and plots.
* :func:`figure`, :func:`save_figure`: extra figures beside ``curves.png``,
  off-screen and written atomically.
* :class:`ConfigError`, :class:`DataError`, :class:`CheckpointError`,
  :class:`WorkdirError`: the errors a user can fix, each with a message that
  names the key, file or checkpoint; raise ``ConfigError``/``DataError`` from
  your own checks to get the same treatment.
"""

from jaxrnn.train._checkpoint import Checkpoints as Checkpoints
from jaxrnn.train._cli import run_main as run_main
from jaxrnn.train._cli import user_errors as user_errors
from jaxrnn.train._config import Range as Range
from jaxrnn.train._config import load_config as load_config
from jaxrnn.train._errors import CheckpointError as CheckpointError
from jaxrnn.train._errors import ConfigError as ConfigError
from jaxrnn.train._errors import DataError as DataError
from jaxrnn.train._errors import WorkdirError as WorkdirError
from jaxrnn.train._loop import RunResult as RunResult
from jaxrnn.train._loop import fit as fit
from jaxrnn.train._metrics import read_metrics as read_metrics
from jaxrnn.train._options import Report as Report
from jaxrnn.train._options import Schedule as Schedule
from jaxrnn.train._parallel import DataParallel as DataParallel
from jaxrnn.train._plots import Panel as Panel
from jaxrnn.train._plots import figure as figure
from jaxrnn.train._plots import save_figure as save_figure
