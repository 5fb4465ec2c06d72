"""Argument checks shared by the cells, the scan driver, stacks and modules.

Each check has one home here. Array checks run on static shapes and dtypes
only, so they cost nothing at run time and fire under ``jax.jit`` and
``jax.vmap`` as well as eagerly. Messages name the argument, the expected
value and the actual one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Python values -------------------------------------------------------------------------


def positive_int(value, name: str) -> int:
    """``value`` if it is a positive ``int`` (a ``bool`` is not), else ``ValueError``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def boolean(value, name: str) -> bool:
    """``value`` if it is a ``bool`` (NumPy's included), else ``TypeError``.

    A truthy string such as ``'no'`` is refused rather than read as ``True``.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: expected a bool, got {value!r}")
    return bool(value)


def rate(value, name: str) -> float:
    """``value`` if it is a number in ``[0, 1)``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a rate in [0, 1), got {value!r}")
    return value


def non_negative_int(value, name: str) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) of at least 0, else ``ValueError``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
    return value


def positive_or_none(value, name: str) -> float | None:
    """``value`` if it is ``None`` or a finite number above 0 (no ``bool``), else ``ValueError``."""
    ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    if not ok or (value is not None and not (math.isfinite(value) and value > 0)):
        raise ValueError(f"{name}: expected None or a finite number above 0, got {value!r}")
    return value


def finite_number(value, name: str) -> float:
    """``value`` if it is a finite real number (not a ``bool``), else ``ValueError``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return value


def float_dtype(dtype, name: str = "dtype"):
    """``dtype`` as a real floating-point ``jnp.dtype``, else ``TypeError``."""
    try:
        resolved = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: expected a floating-point dtype, got {dtype!r}") from None
    if not jnp.issubdtype(resolved, jnp.floating):
        raise TypeError(
            f"{name}: expected a real floating-point dtype (float32, bfloat16, ...), "
            f"got {resolved.name}"
        )
    return resolved


def batch_tuple(batch_shape, name: str = "batch_shape") -> tuple[int, ...]:
    """``batch_shape`` as a tuple of non-negative ints; floats and bools are refused."""
    try:
        shape = tuple(batch_shape)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of ints, got {batch_shape!r}") from None
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, int | np.integer):
            raise TypeError(f"{name}: expected a tuple of ints, got {batch_shape!r}")
    if any(n < 0 for n in shape):
        raise ValueError(f"{name}: expected non-negative sizes, got {batch_shape!r}")
    return tuple(int(n) for n in shape)


# Arrays --------------------------------------------------------------------------------


def as_floating(x, name: str):
    """Returns ``x`` as an array, raising ``TypeError`` unless it is floating point."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name}: expected a floating-point array, got dtype {x.dtype}; "
            f"cast it with {name}.astype(jnp.float32)"
        )
    return x


def params_type(params, cls: type, step: str) -> None:
    """A built-in step's params must be its own cell's (not a dict, not another cell's)."""
    if not isinstance(params, cls):
        raise TypeError(f"params: {step} expects {cls.__name__}, got {type(params).__name__}")


def check_features(x, size: int, name: str) -> None:
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(
            f"{name}: expected feature size {size} on the last axis, got shape {tuple(x.shape)}"
        )


def check_dtype(x, dtype, name: str, what: str = "the params' dtype") -> None:
    if x.dtype != dtype:
        raise TypeError(
            f"{name}: expected dtype {jnp.dtype(dtype).name} ({what}), got {x.dtype}; "
            + _cast_advice(name, dtype)
        )


def _cast_advice(name: str, dtype) -> str:
    """How to fix a dtype mismatch: a cast, unless the dtype is one JAX cannot hold now
    (float64 NumPy params with x64 off, which a cast would silently truncate)."""
    dtype = jnp.dtype(dtype)
    if dtype.itemsize == 8 and not jax.config.jax_enable_x64:
        return (
            f"{dtype.name} needs jax.config.update('jax_enable_x64', True); or cast the params "
            "to float32 with jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)"
        )
    return f"cast it with {name}.astype(jnp.{dtype.name})"


def check_shape(x, shape: Sequence[int], name: str, why: str = "") -> None:
    shape = tuple(shape)
    if tuple(jnp.shape(x)) != shape:
        why = f" ({why})" if why else ""
        raise ValueError(f"{name}: expected shape {shape}{why}, got {tuple(jnp.shape(x))}")


def check_params(params, ranks: Mapping[str, int], shapes: Callable[[], Mapping]) -> None:
    """Checks a cell's params against each other, naming the field.

    Every field in ``ranks`` must be a floating-point array of that rank, all of
    one dtype; then ``shapes()`` (which may read sizes off the params) gives
    the exact shape each field must have. A dotted name (``"ln_x.scale"``)
    reaches into a nested field.
    """
    dtypes = []
    for field, rank in ranks.items():
        value = _field(params, field)
        if not hasattr(value, "dtype") or not jnp.issubdtype(value.dtype, jnp.floating):
            got = getattr(value, "dtype", type(value).__name__)
            raise TypeError(
                f"params.{field}: expected a floating-point array, got {got}; cast the params "
                "with jax.tree.map(lambda a: a.astype(jnp.float32), params)"
            )
        if value.ndim != rank:
            raise ValueError(
                f"params.{field}: expected a {rank}-D array, got shape {tuple(value.shape)}"
            )
        dtypes.append(value.dtype)
    common = max(dtypes, key=dtypes.count)
    for field in ranks:
        check_dtype(_field(params, field), common, f"params.{field}", "the other params' dtype")
    for field, shape in shapes().items():
        check_shape(_field(params, field), shape, f"params.{field}", "from the params' sizes")


def _field(params, name: str):
    for part in name.split("."):
        params = getattr(params, part)
    return params


def present(value, wanted: bool, name: str, option: str) -> None:
    """An optional params field is an array exactly when its ``option`` is on."""
    if wanted and value is None:
        raise ValueError(f"{name}: expected an array with {option}, got None")
    if not wanted and value is not None:
        raise ValueError(
            f"{name}: expected None with {option} (the option is off), got "
            f"{type(value).__name__}; set the option or drop the field"
        )


def check_step_args(x, hidden: dict, input_size: int, hidden_size: int | dict, dtype):
    """Checks one step's input ``x`` and carry arrays ``hidden`` (name -> array).

    Returns ``x`` as a floating array. The carry must have exactly ``x``'s batch
    shape followed by ``hidden_size`` (an int, or a dict by carry name); no
    broadcasting is implied.
    """
    x = as_floating(x, "x")
    check_features(x, input_size, "x")
    check_dtype(x, dtype, "x")
    for name, value in hidden.items():
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise TypeError(f"{name}: expected an array, got {type(value).__name__}")
        size = hidden_size[name] if isinstance(hidden_size, dict) else hidden_size
        expected = (*x.shape[:-1], size)
        check_shape(value, expected, name, f"x's batch shape {tuple(x.shape[:-1])} + (hidden,)")
        check_carry_dtype(value, dtype, name)
    return x


def check_carry_dtype(value, dtype, name: str) -> None:
    """A carry holds the params' dtype or a wider float one (a float32 carry for
    bfloat16 params: see :mod:`jaxrnn._precision`)."""
    if value.dtype == dtype:
        return
    if (
        jnp.issubdtype(value.dtype, jnp.floating)
        and jnp.promote_types(dtype, value.dtype) == value.dtype
    ):
        return
    dtype = jnp.dtype(dtype).name
    raise TypeError(
        f"{name}: expected dtype {dtype} (the params' dtype) or a wider float dtype, got "
        f"{value.dtype}; " + _cast_advice(name, dtype)
    )


def apply_recurrent_mask(h, mask):
    """``h * mask``, or ``h`` when there is no mask; the mask must match ``h``."""
    if mask is None:
        return h
    check_shape(mask, h.shape, "recurrent_mask", "the carry's hidden shape")
    check_dtype(mask, h.dtype, "recurrent_mask", "the carry's dtype")
    return h * mask


def check_batch_leading(carry, batch, name: str, option: str) -> None:
    """Every leaf of ``carry`` starts with the ``batch`` axes (for per-sequence options)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(carry):
        shape = tuple(jnp.shape(leaf))
        if shape[: len(batch)] != batch:
            where = name + jax.tree_util.keystr(path)
            raise ValueError(
                f"{where}: with {option}, every carry leaf must start with the batch axes "
                f"{batch} of xs, got shape {shape}"
            )


# Stacks --------------------------------------------------------------------------------


def is_sequence(value) -> bool:
    return isinstance(value, tuple | list)


def stack_shape(layers) -> tuple[int, int]:
    """``(num_layers, directions)`` of a stack's ``layers``; ``ValueError`` if ragged."""
    ok = is_sequence(layers) and len(layers) > 0
    ok = ok and all(is_sequence(layer) and len(layer) in (1, 2) for layer in layers)
    directions = {len(layer) for layer in layers} if ok else set()
    if not ok or len(directions) != 1:
        raise ValueError(
            "layers: expected a non-empty tuple with one entry per layer, each a tuple of "
            "1 or 2 params (one per direction, the same number in every layer) as made by "
            "jaxrnn.stack_init; got "
            f"{jax.tree.structure(layers, is_leaf=lambda x: not is_sequence(x))}"
        )
    return len(layers), directions.pop()


def carry_nesting(carry, num_layers: int, directions: int) -> None:
    """A stack's carry is nested like its layers: ``num_layers`` tuples of ``directions``."""
    ok = is_sequence(carry) and len(carry) == num_layers
    ok = ok and all(is_sequence(c) and len(c) == directions for c in carry)
    if not ok:
        if is_sequence(carry):
            got = [len(c) if is_sequence(c) else type(c).__name__ for c in carry]
            got = f"{len(carry)} layers with directions {got}"
        else:
            got = type(carry).__name__
        raise ValueError(
            f"carry: expected a tuple of {num_layers} layers, each a tuple of {directions} "
            f"direction carries (nested like layers), got {got}"
        )
