"""Training NNX and Linen layers with optax, and resuming from Orbax checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from flax.training import train_state

import jaxrnn
from jaxrnn.train import CheckpointError, Checkpoints

B, T, D = 16, 10, 2


def task(seed=0):
    """Target at t: x[t, 0] + x[t - 1, 1], so the model must remember a step back."""
    x = jax.random.normal(jax.random.key(seed), (B, T, D))
    y = x[..., 0] + jnp.pad(x[:, :-1, 1], ((0, 0), (1, 0)))
    lengths = jnp.array([T] * (B - 4) + [7, 5, 3, 1])
    mask = (jnp.arange(T)[None, :] < lengths[:, None]).astype(jnp.float32)
    return x, y, lengths, mask


def optimizer():
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))


class NNXModel(nnx.Module):
    def __init__(self, kind, hidden, *, rngs, **options):
        layer = getattr(jaxrnn.nnx, kind)
        self.rnn = layer(D, hidden, rngs=rngs, **options)
        directions = 2 if options.get("bidirectional") else 1
        self.out = nnx.Linear(hidden * directions, 1, rngs=rngs)

    def __call__(self, x, lengths, rngs=None):
        return self.out(self.rnn(x, lengths=lengths, rngs=rngs))[..., 0]


CONFIGS = {
    "lstm_2x_bidirectional": ("LSTM", dict(num_layers=2, bidirectional=True, dropout=0.1)),
    "gru": ("GRU", dict(recurrent_dropout=0.1)),
}


def nnx_setup(name, hidden=16, seed=0):
    kind, options = CONFIGS[name]
    model = NNXModel(kind, hidden, rngs=nnx.Rngs(seed), **options)
    return model, nnx.Optimizer(model, optimizer(), wrt=nnx.Param)


@nnx.jit
def nnx_train_step(model, opt, x, y, lengths, mask, key):
    def loss_fn(model):
        pred = model(x, lengths, rngs=nnx.Rngs(dropout=key))
        return jnp.sum(mask * (pred - y) ** 2) / jnp.sum(mask)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    return loss


def nnx_train(model, opt, steps, start=0):
    x, y, lengths, mask = task()
    losses = [
        float(
            nnx_train_step(
                model, opt, x, y, lengths, mask, jax.random.fold_in(jax.random.key(9), s)
            )
        )
        for s in range(start, start + steps)
    ]
    return losses


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.slow
def test_nnx_training_loss_falls(name):
    model, opt = nnx_setup(name)
    losses = nnx_train(model, opt, 150)
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    model.eval()
    x, y, lengths, mask = task()
    assert float(jnp.sum(mask * (model(x, lengths) - y) ** 2) / jnp.sum(mask)) < 0.15 * losses[0]


class LinenModel(nn.Module):
    kind: str
    hidden: int
    options: dict

    @nn.compact
    def __call__(self, x, lengths, deterministic):
        ys = getattr(jaxrnn.linen, self.kind)(self.hidden, **self.options)(
            x, lengths=lengths, deterministic=deterministic
        )
        return nn.Dense(1)(ys)[..., 0]


def linen_setup(name, hidden=16, seed=0):
    kind, options = CONFIGS[name]
    model = LinenModel(kind, hidden, options)
    x, _, lengths, _ = task()
    variables = model.init(jax.random.key(seed), x, lengths, True)
    return train_state.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=optimizer()
    )


@jax.jit
def linen_train_step(state, x, y, lengths, mask, key):
    def loss_fn(params):
        pred = state.apply_fn({"params": params}, x, lengths, False, rngs={"dropout": key})
        return jnp.sum(mask * (pred - y) ** 2) / jnp.sum(mask)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def linen_train(state, steps, start=0):
    x, y, lengths, mask = task()
    losses = []
    for s in range(start, start + steps):
        state, loss = linen_train_step(
            state, x, y, lengths, mask, jax.random.fold_in(jax.random.key(9), s)
        )
        losses.append(float(loss))
    return state, losses


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.slow
def test_linen_training_loss_falls(name):
    _state, losses = linen_train(linen_setup(name), 150)
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


@pytest.mark.slow
def test_nnx_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    model, opt = nnx_setup("lstm_2x_bidirectional")
    nnx_train(model, opt, 5)
    ckpts = Checkpoints(tmp_path / "run")
    ckpts.save(5, {"model": nnx.state(model), "opt": nnx.state(opt)})
    nnx_train(model, opt, 5, start=5)

    fresh, fresh_opt = nnx_setup("lstm_2x_bidirectional", seed=1)  # other weights, same shapes
    state, _ = ckpts.restore({"model": nnx.state(fresh), "opt": nnx.state(fresh_opt)})
    nnx.update(fresh, state["model"])
    nnx.update(fresh_opt, state["opt"])
    nnx_train(fresh, fresh_opt, 5, start=5)
    for a, b in zip(
        jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(fresh)), strict=True
    ):
        np.testing.assert_array_equal(a, b)

    other, other_opt = nnx_setup("lstm_2x_bidirectional", hidden=9)
    with pytest.raises(
        CheckpointError, match=r"w_h.*\(16, 64\).*\(9, 36\)|w_h.*\(9, 36\).*\(16, 64\)"
    ):
        ckpts.restore({"model": nnx.state(other), "opt": nnx.state(other_opt)})


@pytest.mark.slow
def test_linen_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    state, _ = linen_train(linen_setup("gru"), 5)
    ckpts = Checkpoints(tmp_path / "run")
    ckpts.save(5, {"params": state.params, "opt_state": state.opt_state, "step": state.step})
    uninterrupted, _ = linen_train(state, 5, start=5)

    fresh = linen_setup("gru", seed=1)
    target = {"params": fresh.params, "opt_state": fresh.opt_state, "step": fresh.step}
    saved, _ = ckpts.restore(target)
    resumed, _ = linen_train(fresh.replace(**saved), 5, start=5)
    for a, b in zip(
        jax.tree.leaves(uninterrupted.params), jax.tree.leaves(resumed.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.step) == 10

    other = linen_setup("gru", hidden=4)
    with pytest.raises(CheckpointError, match="w_x"):
        ckpts.restore({"params": other.params, "opt_state": other.opt_state, "step": other.step})
