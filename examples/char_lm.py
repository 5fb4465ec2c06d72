"""A character language model: embedding, LSTM/GRU stack, readout; truncated BPTT.

With no ``text_path`` it trains on the Python standard library's own
documentation (the ``pydoc`` topics that ship with every Python), so it runs
offline with nothing to download; any text file works too.

Training runs truncated backpropagation through time: the text is cut into
``batch_size`` parallel streams, each step reads the next ``seq_len``
characters of every stream, the hidden state carries over from chunk to chunk
and the gradient stops at chunk boundaries. Adam with gradient clipping. The
streams are split over ``devices`` devices (default: all of this machine's;
with ``--coordinator``, ``--num-processes`` and ``--process-id``, over several
processes too), each holding its streams' text and hidden state.
Validation loss is reported in bits per character beside the unigram
baseline, with a short sample at every evaluation.

    python examples/char_lm.py [train] [--config FILE] [--workdir DIR] [key=value ...]
    python examples/char_lm.py sample [--workdir DIR] [--prompt TEXT] [--temperature T]
                                      [--length N] [--seed S]

Ctrl-C saves a checkpoint; the same command resumes (also with the same text
moved elsewhere: the text is identified by its sha256). The work directory
(default ``runs/char_lm``) holds checkpoints, ``metrics.jsonl``, ``curves.png``,
``vocab.json`` and ``samples.txt``; ``sample`` needs only the checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import math
import pathlib
import re
import sys
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from jaxrnn import train

if __package__:  # imported as examples.char_lm
    from . import _common as common
else:  # run as a script, or imported with examples/ on the path
    import _common as common

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "char_lm.yaml"
WORKDIR = pathlib.Path("runs/char_lm")


@dataclasses.dataclass(frozen=True)
class Config:
    """See ``configs/char_lm.yaml`` for what each key means."""

    text_path: str | None
    cell: common.CellName
    embed_size: common.Count
    hidden_size: common.Count
    num_layers: common.Count
    dropout: common.Dropout
    seq_len: common.Count
    batch_size: common.Count
    steps: common.Count
    lr: common.Positive
    clip_norm: common.Positive
    val_fraction: common.Fraction
    eval_every: common.Count
    log_every: common.Count
    checkpoint_every: common.Count
    sample_length: common.Size
    temperature: Annotated[float, train.Range(ge=0)]
    seed: common.Seed
    cell_options: dict = dataclasses.field(default_factory=dict)
    reset_prob: Annotated[float, train.Range(ge=0, le=1)] = 0.0
    output_dropout: common.Dropout = 0.0
    lr_decay: Annotated[float, train.Range(ge=0, le=1)] = 1.0
    devices: common.Devices = None
    precision: common.Precision = "float32"
    profile_steps: common.Size = 0  # > 0: trace that many training steps (see Schedule)

    def __post_init__(self):
        common.data_parallel(self)  # a device count this machine lacks, an uneven batch
        common.configured_cell(self, self.embed_size)  # a bad option, before a run starts
        if self.dropout > 0 and self.num_layers == 1:
            raise train.ConfigError(
                f"dropout: acts between layers, so it needs num_layers > 1, got dropout="
                f"{self.dropout} with num_layers=1 (output_dropout acts on the top layer)"
            )


#: Keys that may change when a run resumes, besides the schedule's: the text is
#: identified by its digest, not its path, and these two only shape the samples.
RESUMABLE = ("text_path", "sample_length", "temperature")

#: ``curves.png``: bits per character of training and validation on one axis,
#: against the unigram baseline (the loss in nats would repeat them).
PANELS = (
    train.Panel(
        "bits per character",
        ("train/bpc", "eval/val_bpc"),
        lines={"unigram baseline": "eval/unigram_bpc"},
    ),
    train.Panel("gradient norm (before clipping)", ("train/grad_norm",), log_y=True),
)


# ---------------------------------------------------------------- data


def stdlib_text() -> str:
    """Documentation text that ships with Python itself: the ``pydoc`` topics
    (the language reference pages that ``help()`` shows), about 450k characters.
    Falls back to the docstrings of standard modules if they are missing."""
    try:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[name].strip() for name in sorted(topics)) + "\n"
    except ImportError:
        import importlib
        import inspect

        docs = []
        for name in (
            "builtins",
            "collections",
            "itertools",
            "functools",
            "os",
            "pathlib",
            "re",
            "json",
            "string",
            "textwrap",
            "argparse",
            "logging",
            "typing",
        ):
            module = importlib.import_module(name)
            docs.append(inspect.getdoc(module) or "")
            for _, member in sorted(inspect.getmembers(module)):
                doc = inspect.getdoc(member) if callable(member) else None
                if doc:
                    docs.append(doc)
        return "\n\n".join(docs) + "\n"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A text split into training and validation ids over a character vocabulary."""

    chars: tuple[str, ...]
    train: np.ndarray  # (N_train,) int32
    val: np.ndarray  # (N_val,) int32
    sha256: str

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, name: str = "prompt") -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        missing = sorted({c for c in text if c not in index})
        if missing:
            raise train.DataError(
                f"{name}: characters {''.join(missing)!r} are not in the model's vocabulary"
            )
        return np.array([index[c] for c in text], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def min_chars(config: Config) -> int:
    """The shortest text that gives one training chunk per stream and one validation chunk."""
    chunk = config.seq_len + 1
    train_part = config.batch_size * chunk
    val_part = chunk
    return max(
        math.ceil(train_part / (1 - config.val_fraction)), math.ceil(val_part / config.val_fraction)
    )


def load_corpus(config: Config) -> Corpus:
    if config.text_path is None:
        text = stdlib_text()
        common.check_length(text, min_chars(config), "the standard-library corpus")
    else:
        text = common.read_text(config.text_path, min_chars=min_chars(config), name="text_path")
    chars = tuple(sorted(set(text)))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.fromiter((index[c] for c in text), np.int32, len(text))
    split = int(len(ids) * (1 - config.val_fraction))
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Corpus(chars, ids[:split], ids[split:], digest)


def streams(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """``batch_size`` contiguous streams, shape ``(B, L)``, ``L = len(ids) // B``."""
    length = len(ids) // batch_size
    return ids[: batch_size * length].reshape(batch_size, length)


def unigram_bpc(corpus: Corpus) -> float:
    """Cross-entropy of the validation text under the training text's character
    frequencies (add-one smoothed), in bits per character."""
    counts = np.bincount(corpus.train, minlength=corpus.vocab_size) + 1.0
    log_p = np.log2(counts / counts.sum())
    return float(-log_p[corpus.val].mean())


# ---------------------------------------------------------------- model


def init_params(key, config: Config, vocab_size: int):
    k_embed, k_layers, k_out = jax.random.split(key, 3)
    cell, options = common.configured_cell(config, config.embed_size)
    layers = jaxrnn.stack_init(
        k_layers,
        cell.init,
        config.embed_size,
        config.hidden_size,
        num_layers=config.num_layers,
        **options,
    )
    size = common.output_size(cell.step, layers, config.embed_size)
    return {
        "embed": jax.random.normal(k_embed, (vocab_size, config.embed_size)) * 0.1,
        "layers": layers,
        "w_out": jax.random.normal(k_out, (size, vocab_size)) / math.sqrt(size),
        "b_out": jnp.zeros((vocab_size,)),
    }


def logits_of(params, ys):
    """Readout ``ys (..., h) -> (..., V)``, with the bias broadcast explicitly."""
    logits = ys @ params["w_out"]
    return logits + jnp.broadcast_to(params["b_out"], logits.shape)


def chunk_loss(config: Config, params, carry, ids, targets, key=None):
    """Mean cross-entropy (nats) of one time-major chunk ``ids, targets (T, B)``."""
    step = jaxrnn.get_cell(config.cell).step
    xs = common.lookup(params["embed"], ids)
    layers_key, output_key = key, None
    if key is not None and config.output_dropout > 0:
        layers_key, output_key = jax.random.split(key)
    carry, ys = jaxrnn.stack_scan(
        step, params["layers"], xs, carry=carry, dropout=config.dropout, key=layers_key,
        dtype=common.compute_dtype(config),
    )  # fmt: skip
    if output_key is not None:  # on the top layer's outputs, before the readout
        ys = dropout(output_key, ys, config.output_dropout)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits_of(params, ys), targets)
    return jnp.mean(loss), carry


def dropout(key, x, rate):
    """Inverted dropout: each element of ``x`` is zeroed with probability ``rate``
    and the others scaled by ``1 / (1 - rate)``, so the mean is unchanged."""
    keep = common.bernoulli(key, 1 - rate, x)
    return jnp.where(keep, x / (1 - rate), jnp.zeros_like(x))


def reset_streams(carry, key, reset_prob):
    """Zeroes the carried state of each stream with probability ``reset_prob``.

    The streams are the leading axis of every leaf of ``carry``; which ones are
    reset is ``jax.random.bernoulli(key, reset_prob, (B,))``, so a step's key
    fixes the choice (a resumed run resets the same streams).
    """
    leaves = jax.tree.leaves(carry)
    batch = leaves[0].shape[0]
    fresh = jax.random.bernoulli(key, reset_prob, (batch,))

    def reset(c):
        mask = fresh.reshape((batch,) + (1,) * (c.ndim - 1))
        return jnp.where(mask, jnp.zeros_like(c), c)

    return jax.tree.map(reset, carry)


def make_optimizer(config: Config):
    """Adam after clipping; the rate falls along a cosine to ``lr * lr_decay`` at the last step."""
    lr = config.lr
    if config.lr_decay < 1:
        lr = optax.cosine_decay_schedule(config.lr, config.steps, alpha=config.lr_decay)
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(lr))


# ---------------------------------------------------------------- sampling


@functools.partial(jax.jit, static_argnames=("cell", "length"))
def generate(params, prompt_ids, key, temperature, *, cell: str, length: int):
    """Feeds ``prompt_ids`` one at a time, then draws ``length`` characters, each from
    ``softmax(logits / temperature)`` (``temperature == 0``: the most likely one)."""
    step = jaxrnn.get_cell(cell).step
    carry = jaxrnn.initial_carry(params["layers"], ())

    def feed(carry, char):
        return jaxrnn.stack_step(step, params["layers"], carry, params["embed"][char])

    carry, ys = jax.lax.scan(feed, carry, prompt_ids)

    def draw(state, key):
        carry, y = state
        logits = logits_of(params, y)
        greedy = jnp.argmax(logits)
        sampled = jax.random.categorical(key, logits / jnp.maximum(temperature, 1e-6))
        char = jnp.where(temperature > 0, sampled, greedy)
        carry, y = feed(carry, char)
        return (carry, y), char

    _, chars = jax.lax.scan(draw, (carry, ys[-1]), jax.random.split(key, length))
    return chars


def sample_text(
    params,
    config: Config,
    corpus: Corpus,
    prompt: str,
    length: int,
    temperature: float,
    seed: int = 0,
) -> str:
    if temperature < 0:
        raise train.ConfigError(f"temperature: expected a number >= 0, got {temperature}")
    if not prompt:
        prompt = "\n" if "\n" in corpus.chars else corpus.chars[0]
    ids = jnp.asarray(corpus.encode(prompt))
    chars = generate(
        params, ids, jax.random.key(seed), jnp.float32(temperature), cell=config.cell, length=length
    )
    return corpus.decode(np.asarray(chars))


# ---------------------------------------------------------------- training


def train_and_evaluate(config: Config, workdir, *, callbacks=()) -> train.RunResult:
    """Trains (or resumes) a character model in ``workdir``.

    The checkpoints carry the text's sha256 and characters: a resumption on
    another text is refused, and the same text at another path resumes.

    Returns:
        The :class:`train.RunResult` of the run; its ``summary`` holds
        ``val_bpc``, ``unigram_bpc``, ``prompt`` and ``sample`` (empty if
        interrupted).
    """
    workdir = pathlib.Path(workdir)
    dp = common.data_parallel(config)
    corpus = load_corpus(config)
    # Each device holds its own streams of text (B, L), and their hidden state.
    train_data = dp.shard(streams(corpus.train, config.batch_size), axis=0)
    chunks_per_epoch = (train_data.shape[1] - 1) // config.seq_len
    val_batch = max(1, min(config.batch_size, (len(corpus.val) - 1) // (config.seq_len + 1)))
    val_data = streams(corpus.val, val_batch)
    val_chunks = (val_data.shape[1] - 1) // config.seq_len
    val_data = jnp.asarray(val_data)
    baseline = unigram_bpc(corpus)

    init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
    reset_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    params = init_params(init_key, config, corpus.vocab_size)
    optimizer = make_optimizer(config)
    state = {
        "params": dp.replicate(params),
        "opt_state": dp.replicate(optimizer.init(params)),
        "carry": dp.shard(jaxrnn.initial_carry(params["layers"], (config.batch_size,))),
    }
    T = config.seq_len

    # The state keeps its shardings from step to step; jit splits the work by them
    # and reduces the gradient over the devices.
    @functools.partial(
        jax.jit, out_shardings=(jax.tree.map(lambda a: a.sharding, state), dp.replicated())
    )
    def step_on(state, step, train_data):
        chunk = step % chunks_per_epoch
        window = jax.lax.dynamic_slice_in_dim(train_data, chunk * T, T + 1, axis=1).T
        # A new pass over the text starts from a zero state; otherwise the state
        # carries on from the previous chunk, with the gradient cut there.
        carry = jax.tree.map(
            lambda c: jnp.where(chunk == 0, jnp.zeros_like(c), jax.lax.stop_gradient(c)),
            state["carry"],
        )
        # Validation (and sampling) start from zeros, which training would otherwise
        # never see: a random few streams start afresh at each chunk.
        if config.reset_prob > 0:
            carry = reset_streams(carry, jax.random.fold_in(reset_key, step), config.reset_prob)
        dropping = config.dropout > 0 or config.output_dropout > 0
        key = jax.random.fold_in(dropout_key, step) if dropping else None
        (loss, carry), grads = jax.value_and_grad(
            functools.partial(chunk_loss, config), has_aux=True
        )(state["params"], carry, window[:-1], window[1:], key)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = {"loss": loss, "bpc": loss / jnp.log(2.0), "grad_norm": optax.tree.norm(grads)}
        return {"params": params, "opt_state": opt_state, "carry": carry}, metrics

    train_step = functools.partial(step_on, train_data=train_data)

    @jax.jit
    def val_loss(params):
        def body(carry, chunk):
            window = jax.lax.dynamic_slice_in_dim(val_data, chunk * T, T + 1, axis=1).T
            loss, carry = chunk_loss(config, params, carry, window[:-1], window[1:])
            return carry, loss

        _, losses = jax.lax.scan(
            body, jaxrnn.initial_carry(params["layers"], (val_batch,)), jnp.arange(val_chunks)
        )
        return jnp.mean(losses)

    def evaluate(state, step):
        params = common.on_host(state["params"])
        bpc = float(val_loss(params)) / math.log(2)
        text = sample_text(
            params,
            config,
            corpus,
            "",
            config.sample_length,
            config.temperature,
            seed=config.seed,
        )
        if common.is_writer():
            write_sample(workdir / "samples.txt", step, bpc, text)
        if text:
            print(f"  sample at step {step}:\n" + _indent(text))
        return {"val_bpc": bpc, "unigram_bpc": baseline, "sample": text}

    result = train.fit(
        workdir,
        init_state=state,
        train_step=train_step,
        schedule=train.Schedule.from_config(config),
        eval_fn=evaluate,
        config=config,
        resumable=RESUMABLE,
        meta={"text": f"sha256:{corpus.sha256}", "chars": list(corpus.chars)},
        callbacks=callbacks,
        report=train.Report(
            title=f"char LM ({config.cell})",
            items_per_step=config.batch_size * config.seq_len,
            item_name="chars",
            panels=PANELS,
        ),
    )
    common.write_json(
        workdir / "vocab.json", {"chars": list(corpus.chars), "sha256": corpus.sha256}
    )
    if result.interrupted:
        return result
    prompt = "The " if set("The ") <= set(corpus.chars) else ""
    sample = sample_text(
        common.on_host(result.state["params"]),
        config,
        corpus,
        prompt,
        config.sample_length,
        config.temperature,
        seed=config.seed,
    )
    val_bpc = result.evaluation.get("val_bpc", float("nan"))
    print(f"\nvalidation: {val_bpc:.3f} bits/char (unigram baseline {baseline:.3f})")
    if result.items_per_s is not None:  # the same step in PyTorch: benchmarks/char_lm_e2e.py
        print(f"training speed: {result.items_per_s:,.0f} chars/s (median over the log intervals)")
    print(f"sample (temperature {config.temperature}):\n{prompt}{sample}")
    print(f"\nwork directory: {workdir}  (curves.png, metrics.jsonl, samples.txt)")
    print(f"more text: python examples/char_lm.py sample --workdir {workdir} --prompt 'The '")
    summary = {"val_bpc": val_bpc, "unigram_bpc": baseline, "prompt": prompt, "sample": sample}
    summary["chars_per_s"] = result.items_per_s
    return dataclasses.replace(result, summary=summary)


def write_sample(path: pathlib.Path, step: int, bpc: float, text: str) -> None:
    """Adds the sample of the evaluation at ``step`` to ``samples.txt``, replacing the
    entries of that step and later ones: a run resumed from an earlier checkpoint
    evaluates them again, and each step keeps one entry. Written atomically."""
    header = re.compile(r"^--- step (\d+), ", re.MULTILINE)
    old = path.read_text() if path.exists() else ""
    cut = next((m.start() for m in header.finditer(old) if int(m.group(1)) >= step), len(old))
    common.write_text(path, old[:cut] + f"--- step {step}, bpc {bpc:.3f}\n{text}\n")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def load_trained(workdir):
    """``(params, config, corpus)`` from a work directory's newest checkpoint, which carries
    the config and the characters (checked against their digests); the text is not needed."""
    workdir = pathlib.Path(workdir)
    if not (workdir / "checkpoints").is_dir():
        raise train.CheckpointError(
            f"no checkpoints in {str(workdir)!r}: train a model in {str(workdir)!r} first"
        )
    with train.Checkpoints(workdir / "checkpoints", read_only=True) as checkpoints:
        if checkpoints.latest_step() is None:
            raise train.CheckpointError(f"no checkpoint in {str(workdir)!r}: train a model first")
        meta = checkpoints.restore_meta()
        # Sampling runs on one device, whatever the training was split over.
        config = train.load_config(Config, {**(meta.get("config") or {}), "devices": 1})
        chars = tuple(meta.get("chars") or ())
        if not chars:
            raise train.CheckpointError(f"the checkpoint in {str(workdir)!r} has no vocabulary")
        params = init_params(jax.random.key(0), config, len(chars))
        optimizer = make_optimizer(config)
        template = {
            "params": params,
            "opt_state": optimizer.init(params),
            "carry": jaxrnn.initial_carry(params["layers"], (config.batch_size,)),
        }
        state, _ = checkpoints.restore(template)
    corpus = Corpus(chars, np.zeros(0, np.int32), np.zeros(0, np.int32), "")
    return state["params"], config, corpus


def sample_main(argv) -> int:
    """``char_lm.py sample``: text from the newest checkpoint of a work directory."""
    parser = argparse.ArgumentParser(
        prog="char_lm.py sample",
        description="Generate text from the newest checkpoint of a trained model: the "
        "prompt runs through the model, then one character at a time is drawn and fed back.",
    )
    parser.add_argument(
        "--workdir",
        type=pathlib.Path,
        default=WORKDIR,
        help=f"the training run's directory, which holds its checkpoints (default: {WORKDIR})",
    )
    parser.add_argument("--prompt", default="The ", help="text to start from (default: 'The ')")
    parser.add_argument(
        "--length", type=int, default=500, help="characters to generate (default: 500)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="softmax temperature, >= 0; 0 picks the most likely character (default: 0.8)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of the sampling (default: 0)"
    )
    args = parser.parse_args(argv)
    with train.user_errors("char_lm"):
        for name in ("length", "seed", "temperature"):
            train.Range(ge=0).check(name, getattr(args, name))
        params, config, corpus = load_trained(args.workdir)
        text = sample_text(
            params, config, corpus, args.prompt, args.length, args.temperature, args.seed
        )
    print(args.prompt + text)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("train", "sample") else "train"
    if command == "sample":
        return sample_main(argv)
    return train.run_main(
        Config,
        train_and_evaluate,
        argv,
        name="char_lm",
        config=CONFIG,
        description=__doc__,
        epilog="To generate text from a trained model: python examples/char_lm.py sample "
        "[--workdir DIR] [--prompt TEXT] [--length N] [--temperature T] [--seed S] "
        "(python examples/char_lm.py sample --help describes them).",
    )


if __name__ == "__main__":
    sys.exit(main())
