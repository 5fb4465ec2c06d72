"""NumPy renderings of every built-in cell's equations, written from the formulas, in float64.

They share nothing with the library but the parameter layout (fused gates in
the documented order), which they take apart by hand. Each is
``step(params, carry, x, mask=None) -> (carry, y)`` on NumPy arrays; an LSTM
carry is the tuple ``(h, c)``. ``mask`` is the recurrent mask on ``H_{t-1}``.
Adding a built-in cell means adding its rendering here (and a row to
``tests.helpers.CASES``).
"""

import numpy as np


def f64(a):
    return None if a is None else np.asarray(a, np.float64)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _mask(h, mask):
    return h if mask is None else h * f64(mask)


def layer_norm(a, scale, bias, gates):
    """Each of ``gates`` blocks of the last axis normalised on its own (epsilon 1e-5)."""
    blocks = np.split(a, gates, axis=-1)
    out = [
        (b - b.mean(-1, keepdims=True)) / np.sqrt(b.var(-1, keepdims=True) + 1e-5) for b in blocks
    ]
    return np.concatenate(out, axis=-1) * scale + bias


def rnn(p, h, x, mask=None):
    h_in = _mask(f64(h), mask)
    pre = f64(x) @ f64(p.w_x) + h_in @ f64(p.w_h) + f64(p.b)
    h = np.tanh(pre) if p.activation == "tanh" else np.maximum(pre, 0.0)
    return h, h


def lstm(p, carry, x, mask=None):
    """Every variant: projection, peepholes, layer norm, coupled gates, cell clip."""
    h, c = (f64(a) for a in carry)
    x = f64(x)
    h_in = _mask(h, mask)
    G = 3 if p.coupled else 4
    ax, ah = x @ f64(p.w_x), h_in @ f64(p.w_h)
    if p.layer_norm:
        ax = layer_norm(ax, f64(p.ln_x.scale), f64(p.ln_x.bias), G)
        ah = layer_norm(ah, f64(p.ln_h.scale), f64(p.ln_h.bias), G)
    blocks = np.split(ax + ah + f64(p.b), G, axis=-1)
    names = "fgo" if p.coupled else "ifgo"
    a = dict(zip(names, blocks, strict=True))
    if p.peephole:
        w = dict(zip("fo" if p.coupled else "ifo", np.split(f64(p.w_c), G - 1), strict=True))
        for gate in "if" if not p.coupled else "f":
            a[gate] = a[gate] + w[gate] * c
    f = sigmoid(a["f"])
    i = 1 - f if p.coupled else sigmoid(a["i"])
    c = f * c + i * np.tanh(a["g"])
    if p.cell_clip is not None:
        c = np.clip(c, -p.cell_clip, p.cell_clip)
    if p.peephole:
        a["o"] = a["o"] + w["o"] * c
    c_out = layer_norm(c, f64(p.ln_c.scale), f64(p.ln_c.bias), 1) if p.layer_norm else c
    h = sigmoid(a["o"]) * np.tanh(c_out)
    if p.proj_size:
        h = h @ f64(p.w_r)
    return (h, c), h


def gru(p, h, x, mask=None):
    """Both reset placements, with and without layer norm."""
    h, x = f64(h), f64(x)
    h_in = _mask(h, mask)  # enters the matmuls; the interpolation uses h
    n = h.shape[-1]

    def part(a, k):
        return a[..., k * n : (k + 1) * n]

    def norm(a, ln, k):
        if not p.layer_norm:
            return a
        return layer_norm(a, part(f64(ln.scale), k), part(f64(ln.bias), k), 1)

    wx, wh, bx, bh = f64(p.w_x), f64(p.w_h), f64(p.b_x), f64(p.b_h)
    xr, xz, xn = (norm(x @ part(wx, k), p.ln_x, k) + part(bx, k) for k in range(3))
    r = sigmoid(xr + norm(h_in @ part(wh, 0), p.ln_h, 0) + part(bh, 0))
    z = sigmoid(xz + norm(h_in @ part(wh, 1), p.ln_h, 1) + part(bh, 1))
    if p.reset_after:
        cand = np.tanh(xn + r * (norm(h_in @ part(wh, 2), p.ln_h, 2) + part(bh, 2)))
    else:
        cand = np.tanh(xn + norm((r * h_in) @ part(wh, 2), p.ln_h, 2) + part(bh, 2))
    h = z * h + (1 - z) * cand
    return h, h


def mgu(p, h, x, mask=None):
    n = p.w_h.shape[0]
    h, x = f64(h), f64(x)
    h_in = _mask(h, mask)  # the matmuls only
    w_x, w_h, b_x = f64(p.w_x), f64(p.w_h), f64(p.b_x)
    f = sigmoid(x @ w_x[:, :n] + b_x[:n] + h_in @ w_h[:, :n])
    if p.reset_gate:
        cand = np.tanh(x @ w_x[:, n:] + b_x[n:] + f * (h_in @ w_h[:, n:] + f64(p.b_h)))
    else:
        cand = np.tanh(x @ w_x[:, n:] + b_x[n:] + h_in @ w_h[:, n:])
    h = (1 - f) * cand + f * h
    return h, h


def conv_same(x, w):
    """Stride-1 'SAME' cross-correlation: (k - 1) // 2 zeros before, k // 2 after."""
    k = w.shape[:-2]
    spatial = x.shape[x.ndim - len(k) - 1 : -1]
    pad = [(0, 0)] * (x.ndim - len(k) - 1) + [((s - 1) // 2, s // 2) for s in k] + [(0, 0)]
    xp = np.pad(x, pad)
    out = np.zeros((*x.shape[:-1], w.shape[-1]))
    for offset in np.ndindex(*k):
        window = tuple(slice(o, o + s) for o, s in zip(offset, spatial, strict=True))
        out += xp[(Ellipsis, *window, slice(None))] @ w[offset]
    return out


def conv_lstm(p, carry, x, mask=None):
    h, c = (f64(a) for a in carry)
    h_in = _mask(h, mask)
    n = p.b.shape[0] // 4
    gates = conv_same(f64(x), f64(p.w_x)) + conv_same(h_in, f64(p.w_h)) + f64(p.b)
    i, f, g, o = (gates[..., k * n : (k + 1) * n] for k in range(4))
    i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
    c = f * c + i * g
    h = o * np.tanh(c)
    return (h, c), h


def _g(a):
    """minGRU's and minLSTM's candidate activation: a + 1/2 above 0, σ(a) below."""
    return np.where(a >= 0, a + 0.5, sigmoid(a))


def _input_blocks(p, x, gates):
    w, b = f64(p.w_x), f64(p.b)
    n = w.shape[1] // gates
    return [f64(x) @ w[:, k * n : (k + 1) * n] + b[k * n : (k + 1) * n] for k in range(gates)]


def mingru(p, h, x, mask=None):
    assert mask is None
    a_z, a_h = _input_blocks(p, x, 2)
    z = sigmoid(a_z)
    h = (1 - z) * f64(h) + z * _g(a_h)
    return h, h


def minlstm(p, h, x, mask=None):
    assert mask is None
    a_f, a_i, a_h = _input_blocks(p, x, 3)
    f, i = sigmoid(a_f), sigmoid(a_i)
    h = f / (f + i) * f64(h) + i / (f + i) * _g(a_h)
    return h, h


def slstm(p, carry, x, mask=None):
    """xLSTM's sLSTM; ``R`` built as the dense block-diagonal matrix of the heads' blocks."""
    h, c, n, m = (f64(a) for a in carry)
    w_h = f64(p.w_h)
    k, s = w_h.shape[:2]
    r = np.zeros((k * s, 4, k * s))
    for head in range(k):
        units = slice(head * s, (head + 1) * s)
        r[units, :, units] = w_h[head].reshape(s, 4, s)
    a = f64(x) @ f64(p.w_x) + _mask(h, mask) @ r.reshape(k * s, -1) + f64(p.b)
    a_i, a_f, a_z, a_o = np.split(a, 4, axis=-1)
    log_f = -np.logaddexp(0.0, -a_f)
    m_new = np.where(n == 0, a_i, np.maximum(log_f + m, a_i))
    f = np.where(n == 0, 0.0, np.exp(np.minimum(log_f + m - m_new, 0.0)))
    i = np.exp(a_i - m_new)
    c = f * c + i * np.tanh(a_z)
    n = f * n + i
    h = sigmoid(a_o) * c / n
    return (h, c, n, m_new), h


def mlstm(p, carry, x, mask=None):
    """xLSTM's mLSTM, head by head, with explicit outer products (eps 1e-6)."""
    assert mask is None
    h, c, n, m = (f64(a) for a in carry)
    x = f64(x)
    heads = f64(p.w_i).shape[-1]
    s = f64(p.w_q).shape[-1] // heads
    q, k, v = (x @ f64(w) for w in (p.w_q, p.w_k, p.w_v))
    i_pre, f_pre = x @ f64(p.w_i) + f64(p.b_i), x @ f64(p.w_f) + f64(p.b_f)
    c, n, m = c.copy(), n.copy(), m.copy()
    out = np.zeros_like(q)
    for head in range(heads):
        units = slice(head * s, (head + 1) * s)
        log_f = -np.logaddexp(0.0, -f_pre[..., head])
        m_new = np.maximum(log_f + m[..., head], i_pre[..., head])
        f = np.exp(log_f + m[..., head] - m_new)[..., None]
        i = np.exp(i_pre[..., head] - m_new)[..., None]
        kk = k[..., units] / np.sqrt(s)
        c[..., head, :, :] = (
            f[..., None] * c[..., head, :, :]
            + i[..., None] * kk[..., :, None] * v[..., None, units]
        )
        n[..., head, :] = f * n[..., head, :] + i * kk
        qq = q[..., units]
        num = np.einsum("...ij,...i->...j", c[..., head, :, :], qq)
        den = np.maximum(np.abs(np.sum(n[..., head, :] * qq, -1)), np.exp(-m_new)) + 1e-6
        out[..., units] = num / den[..., None]
        m[..., head] = m_new
    h = sigmoid(x @ f64(p.w_o) + f64(p.b_o)) * out
    return (h, c, n, m), h


def rglru(p, carry, x, mask=None):
    """The RG-LRU; ``carry = (h, started)``, a segment's first step where ``started == 0``."""
    assert mask is None
    h, started = f64(carry[0]), f64(carry[1])[..., None]
    u = f64(x) if p.w_in is None else f64(x) @ f64(p.w_in) + f64(p.b_in)

    def gate(w, b):
        n, k = w.shape[:2]
        blocks = [u[..., j * k : (j + 1) * k] @ f64(w[j]) for j in range(n)]
        return sigmoid(np.concatenate(blocks, axis=-1) + f64(b))

    r, i = gate(p.w_a, p.b_a), gate(p.w_i, p.b_i)
    a = np.exp(-p.c * r * np.log1p(np.exp(f64(p.lam))))
    inside = a * h + np.sqrt(1 - a**2) * i * u  # started == 1
    first = i * u  # started == 0: RecurrentGemma's segment_pos == 0
    h = started * inside + (1 - started) * first
    return (h, np.ones_like(started[..., 0])), h


def s6(p, carry, x, mask=None):
    """Mamba's selective SSM, one channel at a time; ``carry = (y, s)``, ``s (..., h, N)``."""
    assert mask is None
    s = f64(carry[1])
    u = f64(x) if p.w_in is None else f64(x) @ f64(p.w_in) + f64(p.b_in)
    r, n = p.w_dt.shape[0], p.a_log.shape[1]
    w_x = f64(p.w_x)
    dt = np.log1p(np.exp(u @ w_x[:, :r] @ f64(p.w_dt) + f64(p.b_dt)))
    b, c = u @ w_x[:, r : r + n], u @ w_x[:, r + n :]
    a = -np.exp(f64(p.a_log))
    new = np.empty_like(s)
    y = np.empty_like(u)
    for j in range(u.shape[-1]):
        d_j = dt[..., j : j + 1]
        new[..., j, :] = np.exp(d_j * a[j]) * s[..., j, :] + d_j * u[..., j : j + 1] * b
        y[..., j] = np.sum(new[..., j, :] * c, axis=-1) + f64(p.d)[j] * u[..., j]
    return (y, new), y


def lru(p, carry, x, mask=None):
    """The LRU in complex128; ``carry = (y, s)``, ``s = [Re S, Im S]``."""
    assert mask is None
    s = f64(carry[1])
    n = s.shape[-1] // 2
    s = s[..., :n] + 1j * s[..., n:]
    u = f64(x) if p.w_in is None else f64(x) @ f64(p.w_in) + f64(p.b_in)
    lam = np.exp(-np.exp(f64(p.nu_log)) + 1j * np.exp(f64(p.theta_log)))
    b = f64(p.b_re) + 1j * f64(p.b_im)
    c = f64(p.c_re) + 1j * f64(p.c_im)
    s = lam * s + np.exp(f64(p.gamma_log)) * (u @ b)
    y = np.real(s @ c) + f64(p.d) * u
    return (y, np.concatenate([s.real, s.imag], axis=-1)), y


def gelu(a):
    """The tanh approximation of GeLU."""
    return 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3)))


def hawk(p, carry, x, mask=None):
    """Griffin's recurrent block; ``carry = (y, window, h, started)``."""
    assert mask is None
    _, window, h, started = (f64(a) for a in carry)
    x = f64(x)
    gate = gelu(x @ f64(p.w_y) + f64(p.b_y))
    u = x @ f64(p.w_x) + f64(p.b_x)
    full = np.concatenate([window * started[..., None, None], u[..., None, :]], axis=-2)
    v = np.einsum("...kl,kl->...l", full, f64(p.w_conv)) + f64(p.b_conv)
    params = type("RGLRU", (), {"w_in": None, "w_a": p.w_a, "b_a": p.b_a, "w_i": p.w_i,
                                "b_i": p.b_i, "lam": p.lam, "c": p.c})  # fmt: skip
    (h, started), _ = rglru(params, (h, started), v)
    y = (h * gate) @ f64(p.w_out) + f64(p.b_out)
    return (y, full[..., 1:, :], h, started), y


def run(cell, p, carry, xs):
    """Python loop over time; returns (final carry, stacked outputs)."""
    ys = []
    for x in xs:
        carry, y = cell(p, carry, x)
        ys.append(y)
    return carry, np.stack(ys)


def stack(cell, layers, xs, lengths, zero):
    """A deep (bi)directional stack over ``xs (T, B, *spatial, d)``, one sequence at a time.

    Each sequence's valid prefix runs forwards and, for a second direction,
    backwards from its last valid step; outputs past the length are zero.
    ``zero(params)`` is one sequence's zero carry. Returns (final carries
    [layer][direction][b], outputs (T, B, *spatial, h * directions)).
    """
    xs = f64(xs)
    T, B = xs.shape[:2]
    finals = []
    for layer in layers:
        outs, states = [], []
        for direction, p in enumerate(layer):
            ys = np.zeros((T, B, *cell(p, zero(p), xs[0, 0])[1].shape))
            per_seq = []
            for b in range(B):
                n = int(min(max(lengths[b], 0), T))
                carry = zero(p)
                order = range(n - 1, -1, -1) if direction == 1 else range(n)
                for t in order:
                    carry, ys[t, b] = cell(p, carry, xs[t, b])
                per_seq.append(carry)
            outs.append(ys)
            states.append(per_seq)
        xs = np.concatenate(outs, axis=-1)
        finals.append(states)
    return finals, xs
