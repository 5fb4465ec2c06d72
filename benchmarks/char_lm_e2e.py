"""The job users feel: the char LM's training step against the same model in PyTorch.

Both run one truncated-BPTT step of ``examples/char_lm.py``'s model: embedding,
a one-layer LSTM, a linear readout, cross-entropy, the gradient (cut at the
chunk boundary, the state carried on), global-norm clipping and Adam. The
jaxrnn step is the example's own code (``chunk_loss``, ``make_optimizer``);
the PyTorch step is ``nn.Embedding``, ``nn.LSTM``, ``nn.Linear``,
``clip_grad_norm_`` and ``torch.optim.Adam`` with the same sizes. Timed in
interleaved rounds (see ``benchmarks/run.py``); reported in characters per
second (``batch_size * seq_len`` per step).

    python -m benchmarks.char_lm_e2e [--hidden-size 256 512] [--rounds 7]
"""

from __future__ import annotations

import argparse
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from benchmarks import peers, timing
from jaxrnn import train

sys.path.insert(0, str(timing.HERE.parent / "examples"))
import char_lm

VOCAB = 65  # tinyshakespeare's characters


def _windows(config, steps=16, seed=0):
    """``steps`` chunks of ids ``(T + 1, B)``, consecutive in every stream."""
    ids = np.random.default_rng(seed).integers(
        0, VOCAB, (config.batch_size, steps * config.seq_len + 1)
    )
    return ids.astype(np.int32)


def jaxrnn_step(config) -> peers.Case:
    """The example's training step, jitted; ``run()`` takes one step."""
    params = char_lm.init_params(jax.random.key(0), config, VOCAB)
    optimizer = char_lm.make_optimizer(config)

    state = {
        "params": params,
        "opt_state": optimizer.init(params),
        "carry": jaxrnn.initial_carry(params["layers"], (config.batch_size,)),
    }
    data = jnp.asarray(_windows(config))
    chunks = (data.shape[1] - 1) // config.seq_len

    @jax.jit
    def step(state, i):
        window = jax.lax.dynamic_slice_in_dim(
            data, (i % chunks) * config.seq_len, config.seq_len + 1, axis=1
        ).T
        carry = jax.lax.stop_gradient(state["carry"])
        (loss, carry), grads = jax.value_and_grad(
            functools.partial(char_lm.chunk_loss, config), has_aux=True
        )(state["params"], carry, window[:-1], window[1:])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        return {
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
            "carry": carry,
        }, loss

    box = {"state": state, "i": 0}

    def run():
        box["state"], loss = step(box["state"], jnp.int32(box["i"]))
        box["i"] += 1
        return jax.block_until_ready(loss)

    return peers.Case(run, compile=lambda: step.lower(state, jnp.int32(0)).compile())


def torch_step(config):
    """The same step in PyTorch: a function that takes one step."""
    import torch

    torch.manual_seed(0)
    embed = torch.nn.Embedding(VOCAB, config.embed_size)
    lstm = torch.nn.LSTM(config.embed_size, config.hidden_size)
    readout = torch.nn.Linear(config.hidden_size, VOCAB)
    params = [*embed.parameters(), *lstm.parameters(), *readout.parameters()]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    data = torch.from_numpy(_windows(config)).long()
    chunks = (data.shape[1] - 1) // config.seq_len
    zeros = torch.zeros(1, config.batch_size, config.hidden_size)
    box = {"carry": (zeros, zeros), "i": 0}

    def run():
        start = (box["i"] % chunks) * config.seq_len
        window = data[:, start : start + config.seq_len + 1].T
        h, c = (s.detach() for s in box["carry"])
        ys, carry = lstm(embed(window[:-1]), (h, c))
        logits = readout(ys)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), window[1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
        optimizer.step()
        box["carry"], box["i"] = carry, box["i"] + 1
        return loss.item()

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-size", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.5)
    timing.add_torch_threads(parser)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.torch_threads or timing.threads())
    return measure(args.hidden_size, args.batch_size, args.seq_len, args.rounds, args.min_time)


def _torch_step_of(hidden_size):
    """PyTorch's step at the main job's other sizes (for ``benchmarks.compile_time``)."""
    return torch_step(config_of(hidden_size))


def config_of(hidden_size, batch_size=32, seq_len=64):
    """The main job's config with these sizes, on one device, without stream resets."""
    overrides = [
        f"hidden_size={hidden_size}",
        f"batch_size={batch_size}",
        f"seq_len={seq_len}",
        "reset_prob=0.0",
        "devices=1",
    ]
    return train.load_config(char_lm.Config, char_lm.CONFIG, overrides)


def measure(hidden_sizes, batch_size=32, seq_len=64, rounds=7, min_time=0.5) -> list[dict]:
    """Characters per second of both training steps, per hidden size (printed as it goes)."""
    import torch  # noqa: F401 (the caller has set its threads)

    rows = []
    for hidden in hidden_sizes:
        config = config_of(hidden, batch_size, seq_len)
        times = timing.interleaved(
            {"pytorch": torch_step(config), "jaxrnn": jaxrnn_step(config).run},
            rounds,
            min_time,
        )
        chars = config.batch_size * config.seq_len
        row = {
            "hidden_size": hidden,
            "batch_size": config.batch_size,
            "seq_len": config.seq_len,
            **{f"{n}_chars_per_s": chars / t["median_s"] for n, t in times.items()},
        }
        row["ratio"] = row["jaxrnn_chars_per_s"] / row["pytorch_chars_per_s"]
        rows.append(row)
        print(
            f"char LM train step B={config.batch_size} T={config.seq_len} h={hidden}: "
            f"jaxrnn {row['jaxrnn_chars_per_s']:,.0f} chars/s, "
            f"PyTorch {row['pytorch_chars_per_s']:,.0f} chars/s, ratio {row['ratio']:.2f}x",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    main()
