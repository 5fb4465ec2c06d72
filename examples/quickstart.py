"""Train a small LSTM with ``jaxrnn.scan`` and optax, and print its falling loss.

The task: read a sine wave of random frequency and phase, one sample per step,
and predict the next sample. No data to download.

    python examples/quickstart.py [--steps 300]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import jaxrnn


def make_batch(key, batch=32, length=64):
    k_freq, k_phase, k_noise = jax.random.split(key, 3)
    freq = jax.random.uniform(k_freq, (1, batch, 1), minval=0.05, maxval=0.3)
    phase = jax.random.uniform(k_phase, (1, batch, 1), maxval=2 * jnp.pi)
    t = jnp.arange(length + 1, dtype=jnp.float32).reshape(-1, 1, 1)
    wave = jnp.sin(freq * t + phase) + 0.05 * jax.random.normal(k_noise, (length + 1, batch, 1))
    return wave[:-1], wave[1:]  # inputs and next-step targets, time-major (T, B, 1)


def init(key, hidden=32):
    k_cell, k_out = jax.random.split(key)
    return {
        "cell": jaxrnn.lstm_init(k_cell, 1, hidden),
        "w_out": jax.random.normal(k_out, (hidden, 1)) / jnp.sqrt(hidden),
        "b_out": jnp.zeros(()),
    }


def loss_fn(params, xs, targets):
    _, hs = jaxrnn.scan(jaxrnn.lstm_step, params["cell"], xs)
    predictions = hs @ params["w_out"] + params["b_out"]
    return jnp.mean((predictions - targets) ** 2)


def main(steps: int = 300, seed: int = 0) -> float:
    key, data_key = jax.random.split(jax.random.key(seed))
    params = init(key)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, key):
        xs, targets = make_batch(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    start = time.perf_counter()
    for step in range(1, steps + 1):
        params, opt_state, loss = train_step(params, opt_state, jax.random.fold_in(data_key, step))
        if step == 1 or step % 50 == 0:
            print(f"step {step:4d}  mse {float(loss):.4f}  ({time.perf_counter() - start:.1f}s)")
    return float(loss)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.steps, args.seed)
