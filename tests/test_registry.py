"""Cells as values: the registry, and a user's cell from the docs everywhere a cell works."""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxrnn
from tests.helpers import DOCS, page_blocks

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUIDE = DOCS / "guides" / "custom-cells.md"
BLOCK = page_blocks(GUIDE)[0]  # the cell; then a check of one


@pytest.fixture(scope="module")
def readme():
    # A user's code, which need not follow the suite's rank_promotion="raise".
    with jax.numpy_rank_promotion("allow"):
        namespace = {}
        exec(compile(BLOCK, str(GUIDE), "exec"), namespace)
        yield namespace


def python_loop(step, params, xs, lengths, reverse=False):
    """Each sequence alone, its valid steps only, one step at a time in NumPy order."""
    T, B = xs.shape[:2]
    ys = np.zeros((T, B, params.u.shape[-1]), np.float32)
    finals = []
    for b in range(B):
        h = jnp.zeros(params.u.shape)
        n = min(int(lengths[b]), T)
        for t in reversed(range(n)) if reverse else range(n):
            h, y = step(params, h, xs[t, b])
            ys[t, b] = y
        finals.append(h)
    return jnp.stack(finals), ys


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def test_readme_cell_in_scan_equals_a_python_loop(readme):
    step, params, xs, lengths = (readme[k] for k in ("indrnn_step", "params", "xs", "lengths"))
    carry, ys = jaxrnn.scan(step, params, xs, lengths=lengths, reverse=True)
    want_carry, want_ys = python_loop(step, params, xs, lengths, reverse=True)
    close(carry, want_carry)
    close(ys, want_ys)
    assert jaxrnn.get_cell("indrnn") is readme["indrnn"]
    assert "indrnn" in jaxrnn.cell_names()


def test_readme_cell_in_a_bidirectional_stack_equals_python_loops(readme):
    step, layers, xs, lengths = (readme[k] for k in ("indrnn_step", "layers", "xs", "lengths"))
    _, ys = jaxrnn.stack_scan(step, layers, xs, lengths=lengths)
    inputs = xs
    for fwd, bwd in layers:
        _, forward = python_loop(step, fwd, inputs, lengths)
        _, backward = python_loop(step, bwd, inputs, lengths, reverse=True)
        inputs = jnp.concatenate([forward, backward], axis=-1)
    close(ys, inputs)


def test_readme_cell_in_both_module_families(readme):
    xs, lengths = readme["xs"], readme["lengths"]
    model = readme["model"]
    want = jaxrnn.stack_scan(readme["indrnn_step"], model.to_layers(), xs, lengths=lengths)[1]
    close(readme["ys"], jnp.moveaxis(want, 0, 1))
    linen = jaxrnn.linen.Recurrent(8, cell="indrnn", num_layers=2)
    variables = linen.variables_from_layers(model.to_layers())
    close(linen.apply(variables, jnp.moveaxis(xs, 0, 1), lengths=lengths), readme["ys"])
    rebuilt = jaxrnn.nnx.Recurrent.from_layers(model.to_layers())
    assert rebuilt.cell is readme["indrnn"]
    cell = jaxrnn.nnx.RecurrentCell("indrnn", 3, 8, rngs=nnx.Rngs(0))
    _, y = cell(cell.initial_carry((4,)), xs[0])
    close(y, readme["indrnn_step"](cell.to_params(), jnp.zeros((4, 8)), xs[0])[1])


def test_running_the_definition_again_replaces_it(readme):
    namespace = {}
    with jax.numpy_rank_promotion("allow"):
        exec(compile(BLOCK, str(GUIDE), "exec"), namespace)
    assert jaxrnn.get_cell("indrnn") is namespace["indrnn"]


def test_built_in_cells_are_values_with_their_option_defaults():
    lstm = jaxrnn.get_cell("lstm")
    assert (lstm.init, lstm.step, lstm.params_type) == (
        jaxrnn.lstm_init,
        jaxrnn.lstm_step,
        jaxrnn.LSTMParams,
    )
    assert lstm.options["forget_bias"] == 1.0 and lstm.options["dtype"] == jnp.float32
    assert jaxrnn.get_cell("gru").options["reset_after"] is False
    assert jaxrnn.get_cell("rnn").options["activation"] == "tanh"
    assert jaxrnn.get_cell(lstm) is lstm
    assert {"rnn", "lstm", "gru"} <= set(jaxrnn.cell_names())


def test_the_rule_is_chosen_by_params_type_and_step():
    params = jaxrnn.gru_init(jax.random.key(0), 3, 4)
    xs = jnp.ones((2, 3))

    def rule(step):
        return jaxrnn.scan(step, params, xs, gradient="rule")

    rule(jaxrnn.gru_step)
    rule(jax.tree_util.Partial(jaxrnn.gru_step, recurrent_mask=jnp.ones(4)))
    with pytest.raises(ValueError, match="is not the 'gru' cell's step 'gru_step' itself"):
        rule(lambda p, c, x: jaxrnn.gru_step(p, c, x))


def test_registry_errors_name_the_problem():
    with pytest.raises(
        ValueError, match=r"cell: expected one of .* got 'lstn' \(did you mean 'lstm'\?\)"
    ):
        jaxrnn.get_cell("lstn")
    with pytest.raises(TypeError, match=r"cell: expected a cell name or a jaxrnn\.Cell, got 3"):
        jaxrnn.get_cell(3)
    lstm = jaxrnn.get_cell("lstm")
    with pytest.raises(ValueError, match="'lstm' is already registered to another cell"):
        jaxrnn.register_cell(
            jaxrnn.Cell(
                "lstm", jaxrnn.gru_init, jaxrnn.gru_step, jaxrnn.GRUParams, lstm.initial_carry
            )
        )
    with pytest.raises(TypeError, match=r"cell\.params_type: expected a class of the cell's own"):
        jaxrnn.register_cell(jaxrnn.Cell("mine", lstm.init, lstm.step, tuple, lstm.initial_carry))
    with pytest.raises(ValueError, match="LSTMParams is already the params type of the 'lstm'"):
        jaxrnn.register_cell(dataclasses.replace(lstm, name="mine"))
    with pytest.raises(TypeError, match=r"cell: expected a jaxrnn\.Cell, got tuple"):
        jaxrnn.register_cell(("lstm", lstm.init, lstm.step))
    # The contract's fields are checked when the value is made.
    bad = {
        "init": (None, r"Cell\.init: expected a function, got None"),
        "initial_carry": ("zeros", r"Cell\.initial_carry: expected a function, got 'zeros'"),
        "scan_rule": (lstm.step, r"Cell\.scan_rule: expected None or a jaxrnn\.rules\.ScanRule"),
        "step_options": ("recurrent_mask", r"Cell\.step_options: expected None or a tuple"),
        "feature_axes": (2, r"Cell\.feature_axes: expected None or a function, got 2"),
        "hidden": (0, r"Cell\.hidden: expected None or a field name, got 0"),
        "name": ("", r"Cell\.name: expected a non-empty str"),
        "params_type": ("LSTMParams", r"Cell\.params_type: expected a class"),
    }
    for field, (value, message) in bad.items():
        with pytest.raises((TypeError, ValueError), match=message):
            dataclasses.replace(lstm, **{field: value})
    with pytest.raises(TypeError, match="LSTM: unexpected option 'reset_after'"):
        jaxrnn.nnx.LSTM(3, 4, reset_after=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="did you mean 'gru'"):
        jaxrnn.nnx.Recurrent("gruu", 3, 4, rngs=nnx.Rngs(0))


def test_a_registered_step_with_another_cells_params_is_refused():
    key, xs = jax.random.key(0), jnp.ones((3, 2, 4))
    minlstm = jaxrnn.minlstm_init(key, 4, 5)
    gru = jaxrnn.gru_init(key, 4, 5)
    cases = [
        (jaxrnn.mingru_step, minlstm, "mingru_step expects MinGRUParams, got MinLSTMParams"),
        (jaxrnn.mgu_step, gru, "mgu_step expects MGUParams, got GRUParams"),
        (jaxrnn.gru_step, jaxrnn.lstm_init(key, 4, 5), "gru_step expects GRUParams, got LSTMP"),
        (jaxrnn.lstm_step, {"w_x": gru.w_x}, "lstm_step expects LSTMParams, got dict"),
        ("gru", minlstm, "the 'gru' cell expects GRUParams, got MinLSTMParams"),
    ]
    for step, params, message in cases:
        for gradient in ("auto", "autodiff"):
            with pytest.raises(TypeError, match=f"params: {message}"):
                jaxrnn.scan(step, params, xs, carry=jnp.zeros((2, 5)), gradient=gradient)
    with pytest.raises(TypeError, match="params: mgu_step expects MGUParams, got GRUParams"):
        jaxrnn.stack_scan(jaxrnn.mgu_step, ((gru,),), xs)


def test_an_unregistered_cell_value_works_wherever_a_name_does(readme):
    """A :class:`jaxrnn.Cell` passed as a value needs no registration: scan, stacks, both
    module families and its own zero carry."""
    cell = dataclasses.replace(readme["indrnn"], name="indrnn_unregistered")
    assert "indrnn_unregistered" not in jaxrnn.cell_names()
    xs, lengths = readme["xs"], readme["lengths"]
    params = cell.init(jax.random.key(0), 3, 8)
    close(jaxrnn.scan(cell, params, xs)[1], jaxrnn.scan(cell.step, params, xs)[1])
    layers = jaxrnn.stack_init(jax.random.key(0), cell, 3, 8, num_layers=2, bidirectional=True)
    _, ys = jaxrnn.stack_scan(cell, layers, xs, lengths=lengths)
    model = jaxrnn.nnx.Recurrent(cell, None, None, layers=layers)
    close(model(jnp.moveaxis(xs, 0, 1), lengths=lengths), jnp.moveaxis(ys, 0, 1))
    assert model.initial_carry((4,))[1][1].shape == (4, 8)
    nnx_model = jaxrnn.nnx.Recurrent(cell, 3, 8, rngs=nnx.Rngs(0))
    assert nnx_model(jnp.moveaxis(xs, 0, 1)).shape == (4, 20, 8)
    linen = jaxrnn.linen.Recurrent(8, cell=cell, num_layers=2, bidirectional=True)
    got = linen.apply(linen.variables_from_layers(layers), jnp.moveaxis(xs, 0, 1), lengths=lengths)
    close(got, jnp.moveaxis(ys, 0, 1))


def numpy_indrnn(params, h, x):
    """The guide's cell's equation, apart from its code."""
    w_x, u, b = (np.asarray(a, np.float64) for a in params)
    h = np.maximum(x @ w_x + u * h + b, 0.0)
    return h, h


@pytest.mark.slow  # the fast lane's time: see README
def test_check_cell_passes_the_readme_cell_and_catches_what_is_wrong(readme):
    cell = readme["indrnn"]
    jaxrnn.testing.check_cell(cell, reference_step=numpy_indrnn, modules=False)
    with pytest.raises(AssertionError, match="against reference_step"):
        jaxrnn.testing.check_cell(
            cell, reference_step=lambda p, h, x: numpy_indrnn(p, 0.9 * h, x), modules=False
        )
    ones = dataclasses.replace(
        cell, initial_carry=lambda p, batch_shape=(): jnp.ones((*batch_shape, p.u.shape[-1]))
    )
    with pytest.raises(AssertionError, match="initial_carry: expected zeros"):
        jaxrnn.testing.check_cell(ones, modules=False)

    class Unmasked(jaxrnn.rules.ScanRule):
        """A rule that ignores lengths and resets, which the check must catch."""

        def __call__(self, params, carry, carry0, xs, keep, reset, *, reverse, **kwargs):
            return jaxrnn.scan(cell.step, params, xs, carry=carry, reverse=reverse)

    broken = dataclasses.replace(cell, scan_rule=Unmasked())
    with pytest.raises(AssertionError, match=r"jaxrnn\.scan with lengths, resets"):
        jaxrnn.testing.check_cell(broken, modules=False)


@pytest.mark.slow
def test_readme_cell_trains_in_the_char_lm_from_the_command_line(tmp_path, monkeypatch):
    from examples import char_lm

    # Another module registers the guide's cell under its own name (one process, one name).
    (tmp_path / "indrnn_readme.py").write_text(BLOCK.replace('"indrnn"', '"indrnn_cli"'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    argv = ["--import", "indrnn_readme", "--workdir", str(tmp_path / "run"), "cell=indrnn_cli"]
    argv += ["embed_size=8", "hidden_size=8", "seq_len=8", "batch_size=4", "steps=2"]
    argv += ["eval_every=2", "log_every=1", "checkpoint_every=2", "sample_length=5"]
    with jax.numpy_rank_promotion("allow"):
        assert char_lm.main(argv) == 0
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any('"val_bpc"' in line for line in records)
    with pytest.raises(SystemExit) as exit:
        char_lm.main(["--import", "no_such_module_here", "cell=lstm"])
    assert exit.value.code == 2


def test_register_cell_refuses_what_would_fail_later():
    from typing import NamedTuple

    class Plain:  # not a pytree: jit and grad would see one opaque leaf
        pass

    class Params(NamedTuple):
        w: jax.Array

    zeros = lambda p, batch_shape=(): jnp.zeros((*batch_shape, 1))
    init = lambda key, d, h: Params(jnp.zeros((d, h)))
    step = lambda p, c, x: (c, c)
    with pytest.raises(TypeError, match=r"cell.params_type: expected a class of the cell's own"):
        jaxrnn.register_cell(jaxrnn.Cell("plain-params", init, step, Plain, zeros))
    for field, bad, called in (
        ("init", lambda key: None, r"init\(key, input_size, hidden_size\)"),
        ("step", lambda p, x: x, r"step\(params, carry, x\)"),
        ("initial_carry", lambda: 0, r"initial_carry\(params, batch_shape\)"),
    ):
        parts = {"init": init, "step": step, "initial_carry": zeros, field: bad}
        with pytest.raises(
            TypeError, match=rf"Cell.{field}: expected a function called as {called}"
        ):
            jaxrnn.Cell("bad-signature", params_type=Params, **parts)

    class NoKeywords(jaxrnn.ScanRule):
        def __call__(self, params, carry, carry0, xs):
            return carry, xs

    with pytest.raises(TypeError, match=r"Cell.scan_rule: expected a function called as rule\("):
        jaxrnn.Cell("bad-rule", init, step, Params, zeros, NoKeywords())

    # Every lambda is named <lambda>: a different one under a taken name is refused,
    # the same one run again (a notebook cell) replaces it.
    first = jaxrnn.register_cell(jaxrnn.Cell("lambda-cell", init, step, Params, zeros))
    again = jaxrnn.register_cell(
        jaxrnn.Cell("lambda-cell", lambda key, d, h: Params(jnp.zeros((d, h))), step, Params, zeros)
    )
    assert again is not first and jaxrnn.get_cell("lambda-cell") is again
    other = jaxrnn.Cell("lambda-cell", init, lambda p, c, x: (c, 2 * c), Params, zeros)
    with pytest.raises(ValueError, match=r"cell.name: 'lambda-cell' is already registered"):
        jaxrnn.register_cell(other)
