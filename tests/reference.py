"""NumPy renderings of the cell equations, written from the formulas, in float64.

They share nothing with the library but the parameter layout (fused gates in
the documented order), which they take apart by hand.
"""

import numpy as np


def _np(p):
    return {k: np.asarray(v, np.float64) for k, v in vars(p).items() if hasattr(v, "shape")}


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def rnn(p, h, x):
    q = _np(p)
    pre = np.asarray(x, np.float64) @ q["w_x"] + np.asarray(h, np.float64) @ q["w_h"] + q["b"]
    h = np.tanh(pre) if p.activation == "tanh" else np.maximum(pre, 0.0)
    return h, h


def lstm(p, carry, x):
    q = _np(p)
    n = q["w_h"].shape[0]
    h, c = (np.asarray(a, np.float64) for a in carry)
    x = np.asarray(x, np.float64)

    def block(k):
        s = slice(k * n, (k + 1) * n)
        return x @ q["w_x"][:, s] + h @ q["w_h"][:, s] + q["b"][s]

    i, f, g, o = sigmoid(block(0)), sigmoid(block(1)), np.tanh(block(2)), sigmoid(block(3))
    c = f * c + i * g
    h = o * np.tanh(c)
    return (h, c), h


def gru(p, h, x):
    q = _np(p)
    n = q["w_h"].shape[0]
    h, x = np.asarray(h, np.float64), np.asarray(x, np.float64)
    wx = [q["w_x"][:, k * n : (k + 1) * n] for k in range(3)]
    wh = [q["w_h"][:, k * n : (k + 1) * n] for k in range(3)]
    bx = [q["b_x"][k * n : (k + 1) * n] for k in range(3)]
    bh = [q["b_h"][k * n : (k + 1) * n] for k in range(3)]
    r = sigmoid(x @ wx[0] + bx[0] + h @ wh[0] + bh[0])
    z = sigmoid(x @ wx[1] + bx[1] + h @ wh[1] + bh[1])
    if p.reset_after:
        cand = np.tanh(x @ wx[2] + bx[2] + r * (h @ wh[2] + bh[2]))
    else:
        cand = np.tanh(x @ wx[2] + bx[2] + (r * h) @ wh[2] + bh[2])
    h = z * h + (1 - z) * cand
    return h, h


def run(cell, p, carry, xs):
    """Python loop over time; returns (final carry, stacked outputs)."""
    ys = []
    for x in xs:
        carry, y = cell(p, carry, x)
        ys.append(y)
    return carry, np.stack(ys)
