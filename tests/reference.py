"""NumPy renderings of the cell equations, written from the formulas, in float64.

They share nothing with the library but the parameter layout (fused gates in
the documented order), which they take apart by hand.
"""

import numpy as np


def _np(p):
    return {k: np.asarray(v, np.float64) for k, v in vars(p).items() if hasattr(v, "shape")}


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _mask(h, mask):
    return h if mask is None else h * np.asarray(mask, np.float64)


def rnn(p, h, x, mask=None):
    q = _np(p)
    h_in = _mask(np.asarray(h, np.float64), mask)
    pre = np.asarray(x, np.float64) @ q["w_x"] + h_in @ q["w_h"] + q["b"]
    h = np.tanh(pre) if p.activation == "tanh" else np.maximum(pre, 0.0)
    return h, h


def lstm(p, carry, x, mask=None):
    q = _np(p)
    n = q["w_h"].shape[0]
    h, c = (np.asarray(a, np.float64) for a in carry)
    x = np.asarray(x, np.float64)
    h_in = _mask(h, mask)

    def block(k):
        s = slice(k * n, (k + 1) * n)
        return x @ q["w_x"][:, s] + h_in @ q["w_h"][:, s] + q["b"][s]

    i, f, g, o = sigmoid(block(0)), sigmoid(block(1)), np.tanh(block(2)), sigmoid(block(3))
    c = f * c + i * g
    h = o * np.tanh(c)
    return (h, c), h


def gru(p, h, x, mask=None):
    q = _np(p)
    n = q["w_h"].shape[0]
    h, x = np.asarray(h, np.float64), np.asarray(x, np.float64)
    h_in = _mask(h, mask)  # enters the matmuls; the interpolation uses h
    wx = [q["w_x"][:, k * n : (k + 1) * n] for k in range(3)]
    wh = [q["w_h"][:, k * n : (k + 1) * n] for k in range(3)]
    bx = [q["b_x"][k * n : (k + 1) * n] for k in range(3)]
    bh = [q["b_h"][k * n : (k + 1) * n] for k in range(3)]
    r = sigmoid(x @ wx[0] + bx[0] + h_in @ wh[0] + bh[0])
    z = sigmoid(x @ wx[1] + bx[1] + h_in @ wh[1] + bh[1])
    if p.reset_after:
        cand = np.tanh(x @ wx[2] + bx[2] + r * (h_in @ wh[2] + bh[2]))
    else:
        cand = np.tanh(x @ wx[2] + bx[2] + (r * h_in) @ wh[2] + bh[2])
    h = z * h + (1 - z) * cand
    return h, h


def run(cell, p, carry, xs):
    """Python loop over time; returns (final carry, stacked outputs)."""
    ys = []
    for x in xs:
        carry, y = cell(p, carry, x)
        ys.append(y)
    return carry, np.stack(ys)


def stack(cell, layers, xs, lengths):
    """A deep (bi)directional stack over ``xs (T, B, d)``, one sequence at a time.

    Each sequence's valid prefix runs forwards and, for a second direction,
    backwards from its last valid step; outputs past the length are zero.
    Returns (final carries [layer][direction][b], outputs (T, B, h * directions)).
    """
    xs = np.asarray(xs, np.float64)
    T, B, _ = xs.shape
    finals = []
    for layer in layers:
        outs, states = [], []
        for direction, p in enumerate(layer):
            n_h = np.asarray(p.w_h).shape[0]
            ys = np.zeros((T, B, n_h))
            per_seq = []
            for b in range(B):
                n = int(min(max(lengths[b], 0), T))
                zero = np.zeros(n_h)
                carry = (zero, zero) if cell is lstm else zero
                order = range(n - 1, -1, -1) if direction == 1 else range(n)
                for t in order:
                    carry, ys[t, b] = cell(p, carry, xs[t, b])
                per_seq.append(carry)
            outs.append(ys)
            states.append(per_seq)
        xs = np.concatenate(outs, axis=-1)
        finals.append(states)
    return finals, xs
