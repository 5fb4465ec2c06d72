"""A cell as a value: its init, its step, its zero carry and its fast scan, registered by name."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any

from jaxrnn._carry import initial_carry as _initial_carry
from jaxrnn.rules.base import ScanRule


@dataclasses.dataclass(frozen=True)
class Cell:
    """A recurrent cell, bundled as one value (as Optax bundles ``init`` and ``update``).

    Everything downstream takes this value, or its registered name: :func:`jaxrnn.scan`,
    stacks, the NNX and Linen modules, the examples' ``cell=`` key and the
    benchmarks. This is the whole contract between a cell and jaxrnn; nothing
    else is read off a cell, its params or its carry.

    Attributes:
        name: the name it is registered under, e.g. ``"lstm"``.
        init: ``init(key, input_size, hidden_size, **options) -> params``. Its
            keyword-only arguments are the cell's options, and their defaults
            are the defaults everywhere (see :attr:`options`).
        step: ``step(params, carry, x, **step_options) -> (carry, y)``.
        params_type: the class of ``init``'s result (a NamedTuple, or a
            dataclass registered as a pytree). A registered cell is found by
            it: :func:`jaxrnn.scan` of a step of that cell, or
            :func:`jaxrnn.initial_carry` of its params.
        initial_carry: ``initial_carry(params, batch_shape) -> carry`` of zeros.
        scan_rule: optional :class:`jaxrnn.rules.ScanRule`: a faster way for
            :func:`jaxrnn.scan` to run ``step`` over a whole sequence, with the
            same values and gradients (e.g. :class:`jaxrnn.FusedGradient`).
            ``None``: ``lax.scan`` of ``step``.
        step_options: the names of the keyword arguments ``step`` takes per
            call: arrays, the same at every step, such as the built-in steps'
            ``recurrent_mask`` (variational recurrent dropout needs it).
            ``None`` (default): the keyword-only parameters of ``step``.
        input_size: optional ``input_size(params) -> int``, the features of
            one step's input, so that a wrong input width is an error naming
            ``xs`` before any step runs. ``None``: the step checks it.
        output_size: optional ``output_size(params) -> int``, the size of the
            step's output ``y``, which the next layer of a stack reads. ``None``:
            the ``hidden_size`` given to ``init``.
        feature_axes: optional ``feature_axes(params) -> int``, how many
            trailing axes of one step's input are features. ``None``: 1 (a
            vector); a ConvLSTM has its spatial axes and channels. The modules'
            batch-major layout and their per-sequence ``lengths`` and
            ``resets`` skip these axes.
        hidden: the field of the carry that holds the hidden state ``H_t``,
            which is the output ``y`` (``"h"`` for an :class:`jaxrnn.LSTMState`);
            ``None`` (default): the carry is ``H_t`` itself. Zoneout outputs it,
            :func:`jaxrnn.hidden_grad_norms` perturbs it, and a recurrent
            dropout mask has its shape.

    Example:
        >>> import jaxrnn
        >>> lstm = jaxrnn.get_cell("lstm")
        >>> lstm.step is jaxrnn.lstm_step, lstm.options["forget_bias"], lstm.hidden
        (True, 1.0, 'h')
    """

    name: str
    init: Callable[..., Any]
    step: Callable[..., Any]
    params_type: type
    initial_carry: Callable[..., Any]
    scan_rule: ScanRule | None = None
    step_options: tuple[str, ...] | None = None
    input_size: Callable[[Any], int] | None = None
    output_size: Callable[[Any], int] | None = None
    feature_axes: Callable[[Any], int] | None = None
    hidden: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Cell.name: expected a non-empty str, got {self.name!r}")
        for field, call in _CALLS.items():
            fn = getattr(self, field)
            if not callable(fn):
                raise TypeError(f"Cell.{field}: expected a function, got {fn!r}")
            _check_signature(f"Cell.{field}", fn, call)
        for field in ("input_size", "output_size", "feature_axes"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise TypeError(f"Cell.{field}: expected None or a function, got {value!r}")
        if not isinstance(self.params_type, type):
            raise TypeError(f"Cell.params_type: expected a class, got {self.params_type!r}")
        if self.scan_rule is not None and not isinstance(self.scan_rule, ScanRule):
            raise TypeError(
                "Cell.scan_rule: expected None or a jaxrnn.rules.ScanRule (FusedGradient, "
                f"LinearRecurrence or a subclass of your own), got {self.scan_rule!r}"
            )
        if self.scan_rule is not None:
            _check_signature("Cell.scan_rule", self.scan_rule, _RULE_CALL)
        if self.step_options is not None and not (
            isinstance(self.step_options, tuple)
            and all(isinstance(n, str) for n in self.step_options)
        ):
            raise TypeError(
                f"Cell.step_options: expected None or a tuple of names, got {self.step_options!r}"
            )
        if self.hidden is not None and not isinstance(self.hidden, str):
            raise TypeError(f"Cell.hidden: expected None or a field name, got {self.hidden!r}")

    @property
    def options(self) -> dict[str, Any]:
        """The keyword-only options of :attr:`init` with their defaults."""
        return _keyword_only(self.init, defaults=True)

    @property
    def accepted_step_options(self) -> tuple[str, ...]:
        """:attr:`step_options`, or the step's keyword-only parameters where it is ``None``."""
        if self.step_options is not None:
            return self.step_options
        return tuple(_keyword_only(self.step, defaults=False))

    def with_options(
        self, given: dict[str, Any], owner: str, exclude: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """``given`` over the defaults of :attr:`options`; an unknown one is a ``TypeError``.

        ``exclude`` names options the owner sets itself (a module's ``dtype`` is its
        compute dtype; its ``param_dtype`` goes to ``init``): they are refused here."""
        defaults = {k: v for k, v in self.options.items() if k not in exclude}
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            listed = (
                f"its cell options are {', '.join(defaults)}" if defaults else "it has no options"
            )
            raise TypeError(f"{owner}: unexpected option {unknown[0]!r}; {listed}")
        return defaults | dict(given)

    def hidden_state(self, carry):
        """The hidden state ``H_t`` inside ``carry`` (see :attr:`hidden`)."""
        if self.hidden is None:
            if not hasattr(carry, "shape"):
                raise TypeError(
                    f"carry: expected the hidden state, an array (the {self.name!r} cell names "
                    f"no carry field with Cell.hidden), got {type(carry).__name__}"
                )
            return carry
        if not hasattr(carry, self.hidden):
            raise TypeError(
                f"carry: expected a carry with a field {self.hidden!r} (Cell.hidden of the "
                f"{self.name!r} cell), got {type(carry).__name__}"
            )
        return getattr(carry, self.hidden)

    def with_hidden_state(self, carry, h):
        """``carry`` with its hidden state (see :attr:`hidden`) replaced by ``h``."""
        if self.hidden is None:
            return h
        if hasattr(carry, "_replace"):
            return carry._replace(**{self.hidden: h})
        return dataclasses.replace(carry, **{self.hidden: h})

    def size_of_input(self, params) -> int | None:
        """:attr:`input_size` of ``params``, or ``None`` where the cell does not say."""
        return None if self.input_size is None else self.input_size(params)

    def num_feature_axes(self, params) -> int:
        """:attr:`feature_axes` of ``params`` (1 where the cell does not say)."""
        return 1 if self.feature_axes is None else self.feature_axes(params)


#: How jaxrnn calls each function of a :class:`Cell`: ``(description, args, kwargs)``.
_CALLS = {
    "init": ("init(key, input_size, hidden_size)", (None,) * 3, {}),
    "step": ("step(params, carry, x)", (None,) * 3, {}),
    "initial_carry": ("initial_carry(params, batch_shape)", (None,) * 2, {}),
}
_RULE_CALL = (
    "rule(params, carry, carry0, xs, keep, reset, *, reverse, unroll, options, axis_name)",
    (None,) * 6,
    dict.fromkeys(("reverse", "unroll", "options", "axis_name")),
)


def _check_signature(name: str, fn, call) -> None:
    """``fn`` must accept the call jaxrnn makes of it; the error names both."""
    description, args, kwargs = call
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without one: found out when called
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        raise TypeError(
            f"{name}: expected a function called as {description}, got one with "
            f"the signature {signature}"
        ) from None


def _keyword_only(fn, *, defaults: bool):
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    kw = inspect.Parameter.KEYWORD_ONLY
    return {p.name: p.default if defaults else None for p in parameters if p.kind is kw}


_BY_NAME: dict[str, Cell] = {}
_BY_TYPE: dict[type, Cell] = {}


def register_cell(cell: Cell) -> Cell:
    """Registers ``cell`` under ``cell.name`` and its params type; returns it.

    After this one call the cell works by name in the modules, stacks and the
    examples, :func:`jaxrnn.initial_carry` knows its params, and
    :func:`jaxrnn.scan` uses its ``scan_rule`` for its step. Registering a
    different cell under a taken name or params type is an error; running the
    same definition again (a notebook cell, a module reload) replaces the
    earlier registration. A :class:`Cell` works unregistered too, passed as a
    value wherever a name is taken.

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
    if cell.params_type in (dict, list, tuple) or not _is_pytree_class(cell.params_type):
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


def _is_pytree_class(cls: type) -> bool:
    """Whether instances of ``cls`` are pytree nodes (a NamedTuple, a registered class)."""
    if issubclass(cls, tuple):
        return True
    try:  # JAX has no public query; without this one, the first use finds out
        from jax._src.tree_util import _registry
    except ImportError:
        return True
    return cls in _registry


def _same_definition(a: Cell, b: Cell) -> bool:
    """Whether ``b`` is ``a``'s definition executed again: same names for the same parts.

    Functions without a name of their own (lambdas) must also have the same code:
    every lambda is called ``<lambda>``, so a name says nothing of which one it is.
    """

    def names(cell):
        parts = (cell.init, cell.step, cell.initial_carry, cell.params_type)
        return [_identity(p) for p in parts]

    return names(a) == names(b)


def _identity(fn):
    name = (getattr(fn, "__module__", None), getattr(fn, "__qualname__", None))
    code = getattr(fn, "__code__", None)
    if code is None or "<lambda>" not in (name[1] or ""):
        return name
    return (*name, code.co_code, code.co_consts, code.co_names)


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
    cell = registered_cell(params)
    if cell is None:
        raise TypeError(
            f"params: no registered cell has params of type {type(params).__name__}; "
            "register the cell with jaxrnn.register_cell"
        )
    return cell


def registered_cell(params) -> Cell | None:
    """The registered :class:`Cell` whose params type is ``type(params)``, or ``None``."""
    return _BY_TYPE.get(type(params))


def cell_names() -> tuple[str, ...]:
    """The names of all registered cells, sorted."""
    return tuple(sorted(_BY_NAME))


# A step as jaxrnn runs it ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Bound:
    """What :func:`bind` makes of a ``step`` argument: the function to call, the
    cell whose contract describes its params and carry, and the scan rule that
    may stand in for it (or why none may)."""

    step: Callable[..., Any]  # the function, step options included
    cell: Cell  # the contract of the params and carry
    step_options: tuple[str, ...]  # the keywords ``step`` takes
    rule: ScanRule | None
    options: dict[str, Any]  # the step's keywords, for the rule
    no_rule: str  # why rule is None

    def with_options(self, **options) -> Bound:
        """The step given keyword arrays (a ``recurrent_mask``); the rule stays if it takes them."""
        unknown = sorted(set(options) - set(self.step_options))
        if unknown:
            raise TypeError(
                f"step: {_name(self.step)!r} takes no keyword {unknown[0]!r} "
                f"(its step options: {', '.join(self.step_options) or 'none'})"
            )
        step = functools.partial(self.step, **options)
        options = self.options | options
        if self.rule is not None and not set(options) <= set(self.rule.step_options):
            return dataclasses.replace(
                self, step=step, rule=None, options={}, no_rule="its rule takes no such option"
            )
        return dataclasses.replace(self, step=step, options=options)


def bind(step, params) -> Bound:
    """Resolves :func:`jaxrnn.scan`'s ``step``: a function, a registered name or a :class:`Cell`.

    A name or a :class:`Cell` brings its own step and rule (a :class:`Cell`
    whose step is ``functools.partial(step, **keywords)`` gives the rule those
    keywords, as a step function does). A function gets the
    contract of the cell registered for ``type(params)`` (defaults where there
    is none), and that cell's rule only when it *is* that cell's step, or
    ``functools.partial(step, **keywords)`` with keywords the rule takes: the
    rule computes the cell's own equations, so it must not stand in for a
    function it does not know (a lambda, a ``jax.jit`` of the step, a
    positional ``partial``).
    """
    if isinstance(step, str | Cell):
        cell = get_cell(step)
        if not isinstance(params, cell.params_type):
            raise TypeError(
                f"params: the {cell.name!r} cell expects {cell.params_type.__name__}, "
                f"got {type(params).__name__}"
            )
        options = _keywords(cell.step)[1]
        accepted = tuple(n for n in cell.accepted_step_options if n not in options)
        return _with_rule(cell.step, cell, accepted, options)
    if not callable(step):
        raise TypeError(
            f"step: expected a step function, a cell name or a jaxrnn.Cell, got {step!r}"
        )
    func, options = _keywords(step)
    cell = _BY_TYPE.get(type(params))
    owners = [c for c in _BY_NAME.values() if c.step is func]
    if owners and not any(isinstance(params, c.params_type) for c in owners):
        # A registered step given another cell's params.
        wanted = " or ".join(sorted(c.params_type.__name__ for c in owners))
        raise TypeError(f"params: {_name(func)} expects {wanted}, got {type(params).__name__}")
    if cell is None or func is not cell.step:
        own = tuple(_keyword_only(func, defaults=False))
        if cell is None:
            cell = Cell(_name(step), _no_init, step, type(params), _initial_carry)
            why = f"no registered cell has params of type {type(params).__name__}"
        else:
            why = (
                f"the step {_name(step)!r} is not the {cell.name!r} cell's step "
                f"{_name(cell.step)!r} itself (a wrapped, jitted or positionally "
                "partial step runs as lax.scan of itself)"
            )
        return Bound(step, cell, tuple(n for n in own if n not in options), None, {}, why)
    accepted = tuple(n for n in cell.accepted_step_options if n not in options)
    return _with_rule(step, cell, accepted, options)


def _keywords(step):
    """``(f, keywords)`` of ``functools.partial(f, **keywords)``; ``(step, {})`` otherwise."""
    if isinstance(step, functools.partial) and not step.args:
        return step.func, dict(step.keywords)
    return step, {}


def _with_rule(step, cell: Cell, step_options, options) -> Bound:
    rule = cell.scan_rule
    if rule is None:
        why = f"the {cell.name!r} cell registers no scan rule"
        return Bound(step, cell, step_options, None, {}, why)
    unknown = sorted(set(options) - set(rule.step_options))
    if unknown:
        why = f"its scan rule takes no step option {unknown[0]!r}"
        return Bound(step, cell, step_options, None, {}, why)
    return Bound(step, cell, step_options, rule, options, "")


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _no_init(*args, **kwargs):
    raise TypeError("init: this step has no registered cell; give jaxrnn.Cell an init")
