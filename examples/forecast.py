"""Forecasting a real time series, against persistence and a linear autoregression.

The series ship inside statsmodels (nothing is downloaded):

* ``sunspots``: yearly mean sunspot numbers, 1700-2008 (309 values), with
  its irregular 11-year cycle;
* ``co2``: atmospheric CO2 at Mauna Loa, weekly 1958-2001, averaged into
  monthly values (526), a trend plus a yearly cycle.

The last ``test_size`` values are held out. Every model makes one-step-ahead
forecasts over that span from the true past values, and all are scored on the
same points:

* the RNN (GRU or LSTM) reads the last ``context`` values and predicts the next;
  it trains on the training span less its last ``val_size`` values, which are
  kept to watch it (the validation RMSE);
* persistence predicts the last value seen;
* a linear autoregression AR(p), fitted by least squares on the training
  span, with its order p in 1 .. ``context`` chosen on the same validation values
  (then refitted on the whole training span).

Plots in the work directory: ``curves.png`` and ``forecast.png``.

    python examples/forecast.py [--config FILE] [--workdir DIR] [key=value ...]
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import sys
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from jaxrnn import train

if __package__:  # imported as examples.forecast
    from . import _common as common
else:  # run as a script, or imported with examples/ on the path
    import _common as common

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "forecast.yaml"


@dataclasses.dataclass(frozen=True)
class Config:
    """See ``configs/forecast.yaml`` for what each key means."""

    series: Literal["sunspots", "co2"]
    cell: common.CellName
    context: common.Count
    test_size: common.Count
    val_size: common.Count
    hidden_size: common.Count
    batch_size: common.Count
    steps: common.Count
    lr: common.Positive
    clip_norm: common.Positive
    eval_every: common.Count
    log_every: common.Count
    checkpoint_every: common.Count
    seed: common.Seed
    devices: common.Devices = None  # each batch split over them; None: all local devices
    precision: common.Precision = "float32"  # or bfloat16: the cell's compute dtype
    profile_steps: common.Size = 0  # > 0: trace that many training steps (see Schedule)

    def __post_init__(self):
        common.data_parallel(self)  # a device count this machine lacks, an uneven batch


#: ``curves.png``: the training MSE (standardised units) and the validation RMSE
#: (the series' units) measure different things, so each has its own axis.
PANELS = (
    train.Panel("training MSE (standardised)", ("train/loss",), log_y=True),
    train.Panel("validation RMSE", ("eval/val_rmse",)),
)


def load_series(name: str):
    """``(times (N,) float, values (N,) float64, unit)`` of a series that ships with statsmodels."""
    try:
        import statsmodels.api as sm
    except ImportError:
        raise train.DataError(
            'the series ship with statsmodels: pip install "jaxrnn[examples]"'
        ) from None
    if name == "sunspots":
        frame = sm.datasets.sunspots.load_pandas().data
        return frame["YEAR"].to_numpy(float), frame["SUNACTIVITY"].to_numpy(float), "sunspots"
    frame = sm.datasets.co2.load_pandas().data
    monthly = frame["co2"].resample("MS").mean().interpolate()
    times = monthly.index.year + (monthly.index.month - 1) / 12
    return np.asarray(times, float), monthly.to_numpy(float), "ppm CO2"


def windows(values: np.ndarray, context: int, targets: range):
    """Inputs ``(context, N, 1)`` (time-major) and targets ``(N,)`` for the target indices."""
    xs = np.stack([values[t - context : t] for t in targets], axis=1)[..., None]
    return xs.astype(np.float32), values[list(targets)].astype(np.float32)


def fit_ar(values: np.ndarray, order: int, end: int):
    """Least-squares AR(p) with intercept on targets ``order .. end-1``: returns coefficients
    ``(c, a_1 .. a_p)`` of ``y_t = c + sum_i a_i y_{t-i}``."""
    rows = np.stack([values[t - order : t][::-1] for t in range(order, end)])
    design = np.concatenate([np.ones((len(rows), 1)), rows], axis=1)
    coef, *_ = np.linalg.lstsq(design, values[order:end], rcond=None)
    return coef


def ar_predict(values: np.ndarray, coef: np.ndarray, targets: range) -> np.ndarray:
    order = len(coef) - 1
    return np.array([coef[0] + coef[1:] @ values[t - order : t][::-1] for t in targets])


def choose_ar_order(values, max_order: int, train_end: int, val_size: int) -> int:
    val = range(train_end - val_size, train_end)
    errors = {}
    for p in range(1, max_order + 1):
        if train_end - val_size - p < 2 * (p + 1):
            break
        coef = fit_ar(values, p, train_end - val_size)
        errors[p] = np.mean((ar_predict(values, coef, val) - values[val.start : val.stop]) ** 2)
    return min(errors, key=errors.get)


def scores(prediction: np.ndarray, truth: np.ndarray) -> dict:
    error = prediction - truth
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def init_params(key, config: Config):
    k_cell, k_out = jax.random.split(key)
    return {
        "cell": jaxrnn.get_cell(config.cell).init(k_cell, 1, config.hidden_size),
        "w_out": jax.random.normal(k_out, (config.hidden_size,)) / math.sqrt(config.hidden_size),
        "b_out": jnp.zeros(()),
    }


def predict(config: Config, params, xs):
    """``xs (context, B, 1)`` standardised -> next standardised value ``(B,)``."""
    dtype = common.compute_dtype(config)
    _, ys = jaxrnn.scan(jaxrnn.get_cell(config.cell).step, params["cell"], xs, dtype=dtype)
    return ys[-1] @ params["w_out"] + params["b_out"]


def train_and_evaluate(config: Config, workdir, *, callbacks=()) -> train.RunResult:
    """Trains (or resumes) the RNN forecaster, scores it and the baselines on the test span;
    the result's ``summary`` holds the scores (empty if interrupted)."""
    workdir = pathlib.Path(workdir)
    times, values, unit = load_series(config.series)
    n = len(values)
    train_end = n - config.test_size
    # Before the validation span: 2 * context training windows for the RNN, and the
    # 4 targets that AR(1) needs (see choose_ar_order).
    fit_end = train_end - config.val_size
    need = max(3 * config.context, 5)
    if fit_end < need:
        raise train.ConfigError(
            f"test_size: expected at most {n - config.val_size - need} with "
            f"context={config.context} and val_size={config.val_size} (the {n} values of "
            f"{config.series!r} must leave {need} to train on), got {config.test_size}"
        )
    mean, std = values[:train_end].mean(), values[:train_end].std()
    scaled = (values - mean) / std
    # The RNN trains on targets before the validation span, which stays held out to watch it.
    train_xs, train_ys = windows(scaled, config.context, range(config.context, fit_end))
    test_targets = range(train_end, n)
    test_xs, _ = windows(scaled, config.context, test_targets)
    val_targets = range(train_end - config.val_size, train_end)
    val_xs, _ = windows(scaled, config.context, val_targets)
    n_train = train_ys.shape[0]
    batch_size = min(config.batch_size, n_train)
    batches_per_epoch = n_train // batch_size
    dp = train.DataParallel(config.devices, batch_size=batch_size)
    train_xs, train_ys = dp.replicate((train_xs, train_ys))  # small: every device has it all

    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    params = init_params(init_key, config)
    optimizer = optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(config.lr))
    state = dp.replicate({"params": params, "opt_state": optimizer.init(params)})

    def loss_fn(params, xs, ys):
        return jnp.mean((predict(config, params, xs) - ys) ** 2)

    @functools.partial(
        jax.jit, out_shardings=(jax.tree.map(lambda a: a.sharding, state), dp.replicated())
    )
    def step_on(state, step, train_xs, train_ys):
        epoch, index = step // batches_per_epoch, step % batches_per_epoch
        order = jax.random.permutation(jax.random.fold_in(data_key, epoch), n_train)
        batch = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size)
        # Each device takes its share of the batch.
        xs, ys = dp.shard(train_xs[:, batch], axis=1), dp.shard(train_ys[batch])
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], xs, ys)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt_state": opt_state}, {"loss": loss}

    train_step = functools.partial(step_on, train_xs=train_xs, train_ys=train_ys)
    forecast = jax.jit(lambda params, xs: predict(config, params, xs))

    def evaluate(state):
        params = common.on_host(state["params"])
        prediction = np.asarray(forecast(params, val_xs), float) * std + mean
        return {
            "val_rmse": scores(prediction, values[val_targets.start : val_targets.stop])["rmse"]
        }

    result = train.fit(
        workdir,
        init_state=state,
        train_step=train_step,
        schedule=train.Schedule.from_config(config),
        eval_fn=evaluate,
        config=config,
        callbacks=callbacks,
        report=train.Report(
            title=f"forecast {config.series} ({config.cell})",
            items_per_step=batch_size,
            item_name="windows",
            panels=PANELS,
        ),
    )
    if result.interrupted:
        return result

    truth = values[train_end:]
    final = common.on_host(result.state["params"])
    rnn = np.asarray(forecast(final, jnp.asarray(test_xs)), float) * std + mean
    persistence = values[train_end - 1 : n - 1]
    order = choose_ar_order(values, config.context, train_end, config.val_size)
    ar = ar_predict(values, fit_ar(values, order, train_end), test_targets)
    errors = {
        config.cell: scores(rnn, truth),
        "persistence": scores(persistence, truth),
        f"AR({order})": scores(ar, truth),
    }
    summary = {
        "series": config.series,
        "unit": unit,
        "test_span": [float(times[train_end]), float(times[-1])],
        "test_size": config.test_size,
        "ar_order": order,
        "errors": errors,
    }
    common.write_json(workdir / "summary.json", summary)
    if common.is_writer():
        plot_forecast(
            times,
            values,
            train_end,
            {config.cell: rnn, "persistence": persistence, f"AR({order})": ar},
            errors,
            unit,
            workdir / "forecast.png",
        )
    print(f"one-step-ahead forecasts of {config.series}, {len(truth)} held-out values:")
    for name, e in errors.items():
        print(f"  {name:12s} RMSE {e['rmse']:8.3f}   MAE {e['mae']:8.3f}  ({unit})")
    return dataclasses.replace(result, summary=summary)


def plot_forecast(times, values, train_end, predictions, errors, unit, path) -> None:
    fig, ax = train.figure(size=(9.0, 4.2))
    start = max(0, train_end - 2 * (len(values) - train_end))
    ax.plot(times[start:], values[start:], color="k", lw=1.5, label="truth")
    ax.axvline(times[train_end], color="gray", ls=":", lw=1)
    styles = {"persistence": ":", "AR": "--"}
    for name, prediction in predictions.items():
        style = next((s for k, s in styles.items() if name.startswith(k)), "-")
        ax.plot(
            times[train_end:],
            prediction,
            style,
            lw=1.3,
            label=f"{name} (RMSE {errors[name]['rmse']:.2f})",
        )
    ax.set(xlabel="time", ylabel=unit, title="One-step-ahead forecasts on the held-out span")
    ax.legend(fontsize=8)
    train.save_figure(fig, path)


def main(argv=None) -> int:
    return train.run_main(
        Config, train_and_evaluate, argv, name="forecast", config=CONFIG, description=__doc__
    )


if __name__ == "__main__":
    sys.exit(main())
