"""Parity with RecurrentGemma's own layers (``RGLRU`` and Griffin's ``RecurrentBlock``):
outputs, caches and gradients, with and without ``segment_pos`` resets, for both of its
scans that run on a CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from tests.helpers import normal

layers = pytest.importorskip("recurrentgemma.jax.layers")
modules = pytest.importorskip("recurrentgemma.jax.modules")
common = pytest.importorskip("recurrentgemma.common")

B, T, H, HEADS = 3, 10, 8, 2
# The fast lane runs one scan with resets for each layer; the full suite all four.
slow = pytest.mark.slow
RUNS = [
    pytest.param("LINEAR_NATIVE", False, marks=slow),
    ("LINEAR_NATIVE", True),
    pytest.param("ASSOCIATIVE_NATIVE", False, marks=slow),
    pytest.param("ASSOCIATIVE_NATIVE", True, marks=slow),
]
# Row 0 is one document; row 1 starts new ones at t = 3 and t = 8; row 2 at t = 5.
SEGMENT_POS = np.array(
    [list(range(T)), [0, 1, 2, 0, 1, 2, 3, 4, 0, 1], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]]
)


def _rglru(scan):
    return layers.RGLRU(width=H, num_heads=HEADS, scan_type=getattr(common.ScanType, scan))


def _variables():
    """The layer's own initialisation, with random biases so that they count."""
    x = jnp.zeros((1, 1, H))
    with jax.numpy_rank_promotion("allow"):
        variables = _rglru("LINEAR_NATIVE").init(jax.random.key(0), x, jnp.zeros((1, 1), int))
    params = jax.tree.map(lambda a: a, variables["params"])
    for k, gate in enumerate(("a_gate", "input_gate")):
        params[gate]["b"] = normal(k, (HEADS, H // HEADS), scale=0.5)
    return {"params": params}


def _inputs():
    xs = normal(1, (B, T, H))
    weights = normal(2, (B, T, H))
    return xs, weights


@pytest.mark.parametrize(("scan", "resets"), RUNS)
def test_rglru_equals_recurrentgemma(scan, resets):
    """``jaxrnn.scan`` of :func:`jaxrnn.rglru_step` on converted params, with ``resets =
    segment_pos == 0``, equals the layer: outputs, the cache, and the gradients of a
    weighted loss with respect to the layer's variables and its inputs."""
    variables = _variables()
    xs, weights = _inputs()
    segment_pos = jnp.asarray(SEGMENT_POS if resets else np.tile(np.arange(T), (B, 1)))
    layer = _rglru(scan)

    def theirs(variables, xs):
        with jax.numpy_rank_promotion("allow"):
            ys, cache = layer.apply(variables, xs, segment_pos)
        return jnp.sum(ys * weights), (ys, cache)

    def ours(variables, xs):
        params = jaxrnn.interop.from_recurrentgemma(variables)
        carry, ys = jaxrnn.scan(
            jaxrnn.rglru_step, params, jnp.swapaxes(xs, 0, 1), resets=(segment_pos == 0).T
        )
        ys = jnp.swapaxes(ys, 0, 1)
        return jnp.sum(ys * weights), (ys, carry.h)

    grad = lambda f: jax.jit(jax.grad(f, (0, 1), has_aux=True))
    (want_grads, (want_ys, want_cache)), (got_grads, (got_ys, got_cache)) = (
        grad(theirs)(variables, xs),
        grad(ours)(variables, xs),
    )
    np.testing.assert_allclose(got_ys, want_ys, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_cache, want_cache, rtol=1e-5, atol=1e-6)
    assert jax.tree.structure(got_grads) == jax.tree.structure(want_grads)
    for got, want in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@slow
def test_rglru_continues_from_recurrentgemma_cache():
    """A cache and ``segment_pos > 0`` (decoding on) is a carry with ``started = 1``."""
    variables = _variables()
    xs, _ = _inputs()
    h0 = normal(3, (B, H), scale=0.5)
    segment_pos = jnp.tile(jnp.arange(5, 5 + T), (B, 1))
    with jax.numpy_rank_promotion("allow"):
        want_ys, want_cache = _rglru("LINEAR_NATIVE").apply(variables, xs, segment_pos, h0)
    params = jaxrnn.interop.from_recurrentgemma(variables["params"])
    carry = jaxrnn.rules.SegmentState(h0, jnp.ones((B,)))
    final, ys = jaxrnn.scan(jaxrnn.rglru_step, params, jnp.swapaxes(xs, 0, 1), carry=carry)
    np.testing.assert_allclose(jnp.swapaxes(ys, 0, 1), want_ys, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final.h, want_cache, rtol=1e-5, atol=1e-6)


@slow
def test_rglru_init_draws_the_decay_as_recurrentgemma():
    """The base decay's square is uniform on ``[min_rad², max_rad²]``, as the layer's is:
    the same range and mean over many draws; the gates' block variance is ``1/h``."""
    h = 4096
    p = jaxrnn.rglru_init(jax.random.key(0), h, h, num_heads=8)
    with jax.numpy_rank_promotion("allow"):
        theirs = layers.RGLRU(width=h, num_heads=8).init(
            jax.random.key(1), jnp.zeros((1, 1, h)), jnp.zeros((1, 1), int)
        )["params"]
    square = lambda lam: np.exp(-2 * np.log1p(np.exp(np.asarray(lam, np.float64))))
    for lam in (p.lam, theirs["a_param"]):
        s = square(lam)
        assert 0.9**2 - 1e-6 <= s.min() and s.max() <= 0.999**2 + 1e-6
        np.testing.assert_allclose(s.mean(), (0.81 + 0.998001) / 2, atol=3e-3)
    np.testing.assert_allclose(np.var(p.w_a), np.var(theirs["a_gate"]["w"]), rtol=0.05)
    np.testing.assert_allclose(np.var(p.w_a), 1 / h, rtol=0.05)


def test_from_recurrentgemma_refuses_other_layers():
    with pytest.raises(ValueError, match="variables: expected an RGLRU layer's params"):
        jaxrnn.interop.from_recurrentgemma({"params": {"w": jnp.zeros(3)}})
    with pytest.raises(ValueError, match="only_real=True"):
        jaxrnn.interop.from_recurrentgemma({"a_imag_param": 0, "a_param": 0})


L = 6  # the block's lru_width, unlike its width


def _block(scan):
    return modules.RecurrentBlock(
        width=H, num_heads=HEADS, lru_width=L, scan_type=getattr(common.ScanType, scan)
    )


def _block_variables():
    """The block's own initialisation, every bias random, the convolution scaled up (its
    initial weights are tiny)."""
    x = jnp.zeros((1, 1, H))
    with jax.numpy_rank_promotion("allow"):
        variables = _block("LINEAR_NATIVE").init(jax.random.key(0), x, jnp.zeros((1, 1), int))
    params = jax.tree.map(lambda a: a, variables["params"])
    for k, name in enumerate(("linear_y", "linear_x", "linear_out")):
        params[name]["bias"] = normal(10 + k, params[name]["bias"].shape, scale=0.5)
    params["conv_1d"]["w"] = params["conv_1d"]["w"] * 30
    params["conv_1d"]["b"] = normal(13, (L,), scale=0.5)
    for k, gate in enumerate(("a_gate", "input_gate")):
        params["rg_lru"][gate]["b"] = normal(14 + k, (HEADS, L // HEADS), scale=0.5)
    return {"params": params}


@pytest.mark.slow
@pytest.mark.parametrize(("scan", "resets"), RUNS)
def test_hawk_equals_recurrentgemma_block(scan, resets):  # the RG-LRU's parity is in both lanes
    """``jaxrnn.scan`` of :func:`jaxrnn.hawk_step` on converted params equals Griffin's
    recurrent block: outputs, the RG-LRU's cache, and the gradients of the block's variables
    and inputs; the convolution's cache where no document starts in the last K - 1 steps
    (RecurrentGemma's cache keeps the raw inputs there, which its decoding step then sees
    across the document's start; the carry here holds what the next step sees)."""
    variables = _block_variables()
    xs, weights = _inputs()
    segment_pos = jnp.asarray(SEGMENT_POS if resets else np.tile(np.arange(T), (B, 1)))
    block = _block(scan)

    def theirs(variables, xs):
        with jax.numpy_rank_promotion("allow"):
            ys, cache = block.apply(variables, xs, segment_pos)
        return jnp.sum(ys * weights), (ys, cache.rg_lru_state, cache.conv1d_state)

    def ours(variables, xs):
        params = jaxrnn.interop.from_recurrentgemma(variables)
        carry, ys = jaxrnn.scan(
            jaxrnn.hawk_step, params, jnp.swapaxes(xs, 0, 1), resets=(segment_pos == 0).T
        )
        ys = jnp.swapaxes(ys, 0, 1)
        return jnp.sum(ys * weights), (ys, carry.h, carry.window)

    grad = lambda f: jax.jit(jax.grad(f, (0, 1), has_aux=True))
    (want_grads, want), (got_grads, got) = grad(theirs)(variables, xs), grad(ours)(variables, xs)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    whole = [b for b in range(B) if np.all(np.asarray(segment_pos)[b, -3:] > 0)]
    whole = np.array(whole, int)
    np.testing.assert_allclose(
        np.asarray(got[2])[whole], np.asarray(want[2])[whole], rtol=1e-6, atol=1e-6
    )
    assert jax.tree.structure(got_grads) == jax.tree.structure(want_grads)
    for got, want in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@slow
def test_hawk_continues_from_recurrentgemma_cache():
    """Decoding one token at a time from the block's cache equals the steps from a carry
    with that window and state and ``started = 1``."""
    variables = _block_variables()
    xs, _ = _inputs()
    cache = modules.RecurrentBlockCache(
        rg_lru_state=normal(20, (B, L), scale=0.5), conv1d_state=normal(21, (B, 3, L))
    )
    params = jaxrnn.interop.from_recurrentgemma(variables)
    carry = jaxrnn.HawkState(
        jnp.zeros((B, H)), cache.conv1d_state, cache.rg_lru_state, jnp.ones((B,))
    )
    block = _block("LINEAR_NATIVE")
    for t in range(3):
        with jax.numpy_rank_promotion("allow"):
            want, cache = block.apply(variables, xs[:, t : t + 1], jnp.full((B, 1), 5 + t), cache)
        carry, y = jaxrnn.hawk_step(params, carry, xs[:, t])
        np.testing.assert_allclose(y, want[:, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(carry.window, cache.conv1d_state, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(carry.h, cache.rg_lru_state, rtol=1e-5, atol=1e-6)
