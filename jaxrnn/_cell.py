"""A cell as a value: its init, its step, its zero carry and its fast scan, registered by name."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any

from jaxrnn._carry import initial_carry as _initial_carry


@dataclasses.dataclass(frozen=True)
class Cell:
    """A recurrent cell, bundled as one value (as Optax bundles ``init`` and ``update``).

    Everything downstream takes this value, or its registered name: stacks,
    the NNX and Linen modules, the examples' ``cell=`` key and the benchmarks.

    Attributes:
        name: the name it is registered under, e.g. ``"lstm"``.
        init: ``init(key, input_size, hidden_size, **options) -> params``. Its
            keyword-only arguments are the cell's options, and their defaults
            are the defaults everywhere (see :attr:`options`).
        step: ``step(params, carry, x, **step_options) -> (carry, y)``. Keyword
            arguments the step takes (the built-in steps take ``recurrent_mask``)
            are arrays passed per call.
        params_type: the class of ``init``'s result. :func:`jaxrnn.scan` picks
            the cell's ``scan_rule`` by the type of the params it is given.
        initial_carry: ``initial_carry(params, batch_shape) -> carry`` of zeros.
        scan_rule: optional faster way for :func:`jaxrnn.scan` to run ``step``
            over a whole sequence, with the same values and gradients (e.g.
            :class:`jaxrnn.FusedGradient`). ``None``: ``lax.scan`` of ``step``.

    Example:
        >>> import jaxrnn
        >>> lstm = jaxrnn.get_cell("lstm")
        >>> lstm.step is jaxrnn.lstm_step, lstm.options["forget_bias"]
        (True, 1.0)
    """

    name: str
    init: Callable[..., Any]
    step: Callable[..., Any]
    params_type: type
    initial_carry: Callable[..., Any]
    scan_rule: Any = None

    @property
    def options(self) -> dict[str, Any]:
        """The keyword-only options of :attr:`init` with their defaults."""
        return {
            p.name: p.default
            for p in inspect.signature(self.init).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def with_options(self, given: dict[str, Any], owner: str) -> dict[str, Any]:
        """``given`` over the defaults of :attr:`options`; an unknown one is a ``TypeError``."""
        defaults = self.options
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise TypeError(
                f"{owner}: unexpected option {unknown[0]!r}; its cell options are "
                f"{', '.join(defaults)}"
            )
        return defaults | dict(given)


_BY_NAME: dict[str, Cell] = {}
_BY_TYPE: dict[type, Cell] = {}


def register_cell(cell: Cell) -> Cell:
    """Registers ``cell`` under ``cell.name`` and its params type; returns it.

    After this one call the cell works by name in the modules, stacks and the
    examples, :func:`jaxrnn.initial_carry` knows its params, and
    :func:`jaxrnn.scan` uses its ``scan_rule``. Registering a different cell
    under a taken name or params type is an error; running the same definition
    again (a notebook cell, a module reload) replaces the earlier registration.

    Example:
        >>> from typing import NamedTuple
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> class LeakyParams(NamedTuple):
        ...     w: jax.Array  # (d, h)
        >>> def leaky_init(key, d, h, *, scale=1.0):
        ...     return LeakyParams(scale * jax.random.normal(key, (d, h)) / d**0.5)
        >>> def leaky_step(p, h, x):
        ...     h = 0.9 * h + 0.1 * jnp.tanh(x @ p.w)
        ...     return h, h
        >>> leaky = jaxrnn.register_cell(jaxrnn.Cell(
        ...     "leaky-doc", leaky_init, leaky_step, LeakyParams,
        ...     lambda p, batch_shape=(): jnp.zeros((*batch_shape, p.w.shape[1]))))
        >>> jaxrnn.get_cell("leaky-doc").options
        {'scale': 1.0}
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell: expected a jaxrnn.Cell, got {type(cell).__name__}")
    if not isinstance(cell.name, str) or not cell.name:
        raise ValueError(f"cell.name: expected a non-empty str, got {cell.name!r}")
    if not isinstance(cell.params_type, type) or cell.params_type in (dict, list, tuple):
        raise TypeError(
            "cell.params_type: expected a class of the cell's own (a NamedTuple or a "
            f"dataclass registered as a pytree) to dispatch on, got {cell.params_type!r}"
        )
    old = _BY_NAME.get(cell.name)
    if old is not None and old != cell:
        if not _same_definition(old, cell):
            raise ValueError(f"cell.name: {cell.name!r} is already registered to another cell")
        del _BY_TYPE[old.params_type]  # the same code run again (a notebook cell, a reload)
    taken = _BY_TYPE.get(cell.params_type)
    if taken is not None and taken.name != cell.name:
        raise ValueError(
            f"cell.params_type: {cell.params_type.__name__} is already the params type of "
            f"the {taken.name!r} cell"
        )
    _BY_NAME[cell.name] = cell
    _BY_TYPE[cell.params_type] = cell
    _initial_carry.register(cell.params_type)(cell.initial_carry)
    return cell


def _same_definition(a: Cell, b: Cell) -> bool:
    """Whether ``b`` is ``a``'s definition executed again: same names for the same parts."""

    def names(cell):
        parts = (cell.init, cell.step, cell.params_type)
        return [(getattr(p, "__module__", None), getattr(p, "__qualname__", None)) for p in parts]

    return names(a) == names(b)


def get_cell(cell: str | Cell) -> Cell:
    """The registered :class:`Cell` of that name (a :class:`Cell` is returned as it is).

    Example:
        >>> import jaxrnn
        >>> jaxrnn.get_cell("gru").init is jaxrnn.gru_init
        True
    """
    if isinstance(cell, Cell):
        return cell
    if not isinstance(cell, str):
        raise TypeError(f"cell: expected a cell name or a jaxrnn.Cell, got {cell!r}")
    if cell not in _BY_NAME:
        close = difflib.get_close_matches(cell, _BY_NAME, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"cell: expected one of {', '.join(sorted(_BY_NAME))}, got {cell!r}{hint}")
    return _BY_NAME[cell]


def cell_of(params) -> Cell:
    """The registered :class:`Cell` whose params type is ``type(params)``."""
    cell = _BY_TYPE.get(type(params))
    if cell is None:
        raise TypeError(
            f"params: no registered cell has params of type {type(params).__name__}; "
            "register the cell with jaxrnn.register_cell"
        )
    return cell


def cell_names() -> tuple[str, ...]:
    """The names of all registered cells, sorted."""
    return tuple(sorted(_BY_NAME))


def scan_rule(step, params):
    """``(rule, step_options)`` when ``step`` is the registered step of ``params``' cell.

    ``step`` may also be ``functools.partial(cell.step, **step_options)`` (how
    :func:`jaxrnn.stack_scan` passes a recurrent mask). Any other function, even
    one that calls the cell's step, gets ``None``: the rule computes the cell's
    own equations, so it must not stand in for a function it does not know.
    """
    cell = _BY_TYPE.get(type(params))
    if cell is None or cell.scan_rule is None:
        return None
    options: dict[str, Any] = {}
    if isinstance(step, functools.partial) and not step.args:
        step, options = step.func, dict(step.keywords)
    if step is not cell.step:
        return None
    return cell.scan_rule, options
