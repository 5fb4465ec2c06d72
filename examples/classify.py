"""Sequence classification: handwritten digits read row by row by a bidirectional GRU.

The data set is scikit-learn's digits (1,797 scans of 8×8 pixels, 10 classes,
from the UCI optical-digits collection), which ships inside the scikit-learn
package: nothing is downloaded. Each image is a sequence of T = 8 rows of
d = 8 pixels. A bidirectional GRU stack reads it both ways, and a linear
readout of the two directions' final states gives the class.

The data are split once (fixed seed) into train, validation (watched during
training) and test (reported once, at the end). Plots in the work directory:
``curves.png`` and ``confusion.png``.

    python examples/classify.py [--config FILE] [--workdir DIR] [key=value ...]
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import sys
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from jaxrnn import train

if __package__:  # imported as examples.classify
    from . import _common as common
else:  # run as a script, or imported with examples/ on the path
    import _common as common

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "classify.yaml"
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Config:
    """See ``configs/classify.yaml`` for what each key means."""

    hidden_size: common.Count
    num_layers: common.Count
    dropout: common.Dropout
    batch_size: common.Count
    steps: common.Count
    lr: common.Positive
    clip_norm: common.Positive
    val_fraction: Annotated[float, train.Range(gt=0, lt=0.5)]
    test_fraction: Annotated[float, train.Range(gt=0, lt=0.5)]
    eval_every: common.Count
    log_every: common.Count
    checkpoint_every: common.Count
    seed: common.Seed
    devices: common.Devices = None  # each batch split over them; None: all local devices
    precision: common.Precision = "float32"  # or bfloat16: the GRU's compute dtype
    profile_steps: common.Size = 0  # > 0: trace that many training steps (see Schedule)

    def __post_init__(self):
        common.data_parallel(self)  # a device count this machine lacks, an uneven batch


#: ``curves.png``: loss and accuracy, training and validation on one axis each.
PANELS = (
    train.Panel("loss (nats)", ("train/loss", "eval/loss")),
    train.Panel("accuracy", ("train/accuracy", "eval/accuracy"), lines={"chance": 0.1}),
)


def load_digits(config: Config):
    """``{"train"|"val"|"test": (xs (T, N, d) float32 in [0, 1], labels (N,) int32)}``."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise train.DataError(
            'the digits data ship with scikit-learn: pip install "jaxrnn[examples]"'
        ) from None
    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (N, 8 rows, 8 pixels)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(config.seed).permutation(len(labels))
    n_test = int(len(labels) * config.test_fraction)
    n_val = int(len(labels) * config.val_fraction)
    for name, count in (("test_fraction", n_test), ("val_fraction", n_val)):
        if count < 1:
            raise train.ConfigError(
                f"{name}: expected at least 1/{len(labels)} (one of the {len(labels)} images), "
                f"got {getattr(config, name)}"
            )
    parts = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    # Time-major: row r of every image is step r.
    return {k: (images[idx].transpose(1, 0, 2), labels[idx]) for k, idx in parts.items()}


def init_params(key, config: Config, input_size: int):
    k_layers, k_out = jax.random.split(key)
    features = 2 * config.hidden_size
    return {
        "layers": jaxrnn.stack_init(
            k_layers,
            jaxrnn.gru_init,
            input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=True,
        ),
        "w_out": jax.random.normal(k_out, (features, NUM_CLASSES)) / math.sqrt(features),
        "b_out": jnp.zeros((NUM_CLASSES,)),
    }


def logits_of(params, xs, *, dropout=0.0, key=None, dtype=None):
    """``xs (T, B, d) -> (B, 10)``: final forward state (after the last row) and final
    backward state (after reading back to the first row), concatenated."""
    carry, _ = jaxrnn.stack_scan(
        jaxrnn.gru_step, params["layers"], xs, dropout=dropout, key=key, dtype=dtype
    )
    forward, backward = carry[-1]
    features = jnp.concatenate([forward, backward], axis=-1)
    logits = features @ params["w_out"]
    return logits + jnp.broadcast_to(params["b_out"], logits.shape)


def train_and_evaluate(config: Config, workdir, *, callbacks=()) -> train.RunResult:
    """Trains (or resumes) the classifier; the result's ``summary`` holds the test accuracy
    and loss (empty if interrupted)."""
    workdir = pathlib.Path(workdir)
    dp = common.data_parallel(config)
    dtype = common.compute_dtype(config)
    data = load_digits(config)
    train_xs, train_labels = dp.replicate(data["train"])  # small: every device has it all
    n_train = train_labels.shape[0]
    if config.batch_size > n_train:
        raise train.ConfigError(
            f"batch_size: expected at most the {n_train} training images, got {config.batch_size}"
        )
    batches_per_epoch = n_train // config.batch_size

    init_key, data_key, dropout_key = jax.random.split(jax.random.key(config.seed), 3)
    params = init_params(init_key, config, train_xs.shape[-1])
    optimizer = optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(config.lr))

    def loss_fn(params, xs, labels, key=None):
        logits = logits_of(params, xs, dropout=config.dropout, key=key, dtype=dtype)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return jnp.mean(loss), jnp.mean(jnp.argmax(logits, -1) == labels)

    state = dp.replicate({"params": params, "opt_state": optimizer.init(params)})

    @functools.partial(
        jax.jit, out_shardings=(jax.tree.map(lambda a: a.sharding, state), dp.replicated())
    )
    def step_on(state, step, train_xs, train_labels):
        # A fresh shuffle every epoch, drawn from the epoch number: resumable.
        epoch, index = step // batches_per_epoch, step % batches_per_epoch
        order = jax.random.permutation(jax.random.fold_in(data_key, epoch), n_train)
        batch = jax.lax.dynamic_slice_in_dim(order, index * config.batch_size, config.batch_size)
        # Each device takes its share of the batch.
        xs, labels = dp.shard(train_xs[:, batch], axis=1), dp.shard(train_labels[batch])
        key = jax.random.fold_in(dropout_key, step) if config.dropout > 0 else None
        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], xs, labels, key
        )
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt_state": opt_state}, {"loss": loss, "accuracy": accuracy}

    train_step = functools.partial(step_on, train_xs=train_xs, train_labels=train_labels)

    @jax.jit
    def scores(params, xs, labels):
        return loss_fn(params, xs, labels)

    def evaluate(state):
        loss, accuracy = scores(common.on_host(state["params"]), *data["val"])
        return {"loss": float(loss), "accuracy": float(accuracy)}

    result = train.fit(
        workdir,
        init_state=state,
        train_step=train_step,
        schedule=train.Schedule.from_config(config),
        eval_fn=evaluate,
        config=config,
        callbacks=callbacks,
        report=train.Report(
            title="digits (bidirectional GRU)",
            items_per_step=config.batch_size,
            item_name="images",
            panels=PANELS,
        ),
    )
    if result.interrupted:
        return result

    test_xs, test_labels = data["test"]
    final = common.on_host(result.state["params"])
    test_loss, test_accuracy = (float(v) for v in scores(final, test_xs, test_labels))
    predicted = np.asarray(jnp.argmax(logits_of(final, jnp.asarray(test_xs), dtype=dtype), -1))
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), int)
    np.add.at(confusion, (test_labels, predicted), 1)
    if common.is_writer():
        plot_confusion(confusion, test_accuracy, workdir / "confusion.png")
    summary = {
        "step": result.step,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "test_size": len(test_labels),
        "train_size": int(n_train),
    }
    common.write_json(workdir / "summary.json", summary)
    print(
        f"test accuracy {test_accuracy:.4f} ({round(test_accuracy * len(test_labels))}"
        f"/{len(test_labels)} digits), test loss {test_loss:.4f}"
    )
    return dataclasses.replace(result, summary=summary)


def plot_confusion(confusion: np.ndarray, accuracy: float, path) -> None:
    fig, ax = train.figure(size=(5.2, 4.6))
    image = ax.imshow(confusion, cmap="Blues")
    for (i, j), n in np.ndenumerate(confusion):
        if n:
            color = "white" if n > confusion.max() / 2 else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color=color)
    ax.set(
        xlabel="predicted",
        ylabel="true",
        xticks=range(NUM_CLASSES),
        yticks=range(NUM_CLASSES),
        title=f"Test digits, accuracy {accuracy:.1%}",
    )
    fig.colorbar(image, ax=ax, shrink=0.8)
    train.save_figure(fig, path)


def main(argv=None) -> int:
    return train.run_main(
        Config, train_and_evaluate, argv, name="classify", config=CONFIG, description=__doc__
    )


if __name__ == "__main__":
    sys.exit(main())
