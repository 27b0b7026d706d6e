"""LSTM and GRU cells by hand, matched to torch.nn.LSTM / torch.nn.GRU; parameter counts; streaming."""
from __future__ import annotations

import torch
import torch.nn as nn

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)


# --8<-- [start:lstm]
def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
    """One LSTM step with torch's weight layout: rows of W are stacked as [i, f, g, o]."""
    gates = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c + i * g                 # additive memory: keep a fraction f, write i * g
    h = o * c.tanh()                  # expose a gated view of the memory
    return h, c
# --8<-- [end:lstm]


# --8<-- [start:gru]
def gru_cell(x, h, W_ih, W_hh, b_ih, b_hh):
    """One GRU step with torch's layout: rows stacked as [r, z, n]; r gates W_hn h + b_hn."""
    xr, xz, xn = (x @ W_ih.T + b_ih).chunk(3, dim=-1)
    hr, hz, hn = (h @ W_hh.T + b_hh).chunk(3, dim=-1)
    r = (xr + hr).sigmoid()           # reset: how much of the past feeds the candidate
    z = (xz + hz).sigmoid()           # update: how much of the old state to keep
    n = (xn + r * hn).tanh()          # candidate; r multiplies (W_hn h + b_hn), after the matmul
    return (1 - z) * n + z * h        # interpolate; z = 1 copies the old state unchanged
# --8<-- [end:gru]


# --8<-- [start:match]
T, B, X, Hd = 12, 3, 5, 7
x = torch.randn(T, B, X, dtype=torch.float64)
h0 = torch.randn(1, B, Hd, dtype=torch.float64)
c0 = torch.randn(1, B, Hd, dtype=torch.float64)

lstm = nn.LSTM(X, Hd).double()
out_ref, (hT_ref, cT_ref) = lstm(x, (h0, c0))
w = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]
h, c, outs = h0[0], c0[0], []
for t in range(T):
    h, c = lstm_cell(x[t], h, c, *w)
    outs.append(h)
assert torch.allclose(torch.stack(outs), out_ref, atol=1e-12)
assert torch.allclose(h, hT_ref[0], atol=1e-12) and torch.allclose(c, cT_ref[0], atol=1e-12)

gru = nn.GRU(X, Hd).double()
out_ref, hT_ref = gru(x, h0)
w = [gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0]
h, outs = h0[0], []
for t in range(T):
    h = gru_cell(x[t], h, *w)
    outs.append(h)
assert torch.allclose(torch.stack(outs), out_ref, atol=1e-12)


# The original GRU (Cho et al., 2014) resets h *before* the matmul: W_hn (r * h). Not what torch runs.
def gru_cell_reset_before(x, h, W_ih, W_hh, b_ih, b_hh):
    xr, xz, xn = (x @ W_ih.T + b_ih).chunk(3, dim=-1)
    Wr, Wz, Wn = W_hh.chunk(3, dim=0)
    br, bz, bn = b_hh.chunk(3)
    r = (xr + h @ Wr.T + br).sigmoid()
    z = (xz + h @ Wz.T + bz).sigmoid()
    n = (xn + (r * h) @ Wn.T + bn).tanh()
    return (1 - z) * n + z * h


h_alt = h0[0]
for t in range(T):
    h_alt = gru_cell_reset_before(x[t], h_alt, *w)
claim("0.21", (h_alt - hT_ref[0]).abs().max().detach())      # a different function of the same weights
# --8<-- [end:match]
print(f"hand-written LSTM and GRU match torch over {T} steps; reset-before GRU differs by "
      f"{(h_alt - hT_ref[0]).abs().max().item():.3f}")


# --8<-- [start:params]
def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def rnn_params(x: int, h: int, gates: int) -> int:
    """gates blocks of [W_ih (h*x) + W_hh (h*h) + b_ih (h) + b_hh (h)]: torch keeps two biases."""
    return gates * (h * (x + h) + 2 * h)


for x_dim, h_dim in [(5, 7), (32, 64), (256, 512)]:
    assert n_params(nn.RNN(x_dim, h_dim)) == rnn_params(x_dim, h_dim, 1)
    assert n_params(nn.GRU(x_dim, h_dim)) == rnn_params(x_dim, h_dim, 3)
    assert n_params(nn.LSTM(x_dim, h_dim)) == rnn_params(x_dim, h_dim, 4)

claim("394,240", rnn_params(256, 512, 1))            # vanilla RNN 256 -> 512
claim("1,576,960", rnn_params(256, 512, 4))          # LSTM: 4x the vanilla RNN
claim("1,182,720", rnn_params(256, 512, 3))          # GRU: 3/4 of it
claim("25% fewer", 1 - rnn_params(256, 512, 3) / rnn_params(256, 512, 4))
# A second layer reads the first one's h, so its input size is h; bidirectional doubles everything.
assert n_params(nn.LSTM(32, 64, num_layers=2)) == rnn_params(32, 64, 4) + rnn_params(64, 64, 4)
assert n_params(nn.LSTM(32, 64, bidirectional=True)) == 2 * rnn_params(32, 64, 4)
# proj_size (LSTMP) projects h from 512 to 128 dims: W_hh shrinks to 4h x p, plus the p x h projection.
lstmp = nn.LSTM(256, 512, proj_size=128)
assert n_params(lstmp) == 4 * 512 * (256 + 128) + 8 * 512 + 128 * 512
claim("856,064", n_params(lstmp))
# --8<-- [end:params]


# --8<-- [start:forget-path]
# Along the cell state, one step's Jacobian is diag(f): no weight matrix, no squashing derivative.
xt, ht, ct = torch.randn(1, X, dtype=torch.float64), torch.randn(1, Hd, dtype=torch.float64), \
    torch.randn(1, Hd, dtype=torch.float64)
W = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]
J = torch.autograd.functional.jacobian(lambda c_: lstm_cell(xt, ht, c_, *W)[1], ct)[0, :, 0, :]
gates = (xt @ W[0].T + W[2] + ht @ W[1].T + W[3]).detach()
f_gate = gates.chunk(4, dim=-1)[1].sigmoid()[0]
assert torch.allclose(J, torch.diag(f_gate), atol=1e-12)
# --8<-- [end:forget-path]


# --8<-- [start:forget-bias]
def forget_gate_at_start(lstm: nn.LSTM) -> torch.Tensor:
    """f for a zero input and zero h: with c0 = 1 and g = tanh(0) = 0, c1 = f * c0 + i * g = f."""
    x0 = torch.zeros(1, 1, lstm.input_size)
    h0, c0 = torch.zeros(1, 1, lstm.hidden_size), torch.ones(1, 1, lstm.hidden_size)
    with torch.no_grad():
        _, (_, c1) = lstm(x0, (h0, c0))
    return c1


forget = slice(Hd, 2 * Hd)                              # the f block of [i, f, g, o]
for both in (False, True):
    cell = nn.LSTM(X, Hd)
    with torch.no_grad():
        cell.bias_ih_l0.zero_()
        cell.bias_hh_l0.zero_()
        cell.bias_ih_l0[forget] = 1.0                    # forget bias 1 ...
        if both:
            cell.bias_hh_l0[forget] = 1.0                # ... set in both biases: 2 in effect
    f0 = forget_gate_at_start(cell)
    assert torch.allclose(f0, f0.flatten()[0].expand_as(f0))
    if both:
        claim("0.88", f0.flatten()[0])                   # sigmoid(2)
    else:
        claim("0.73", f0.flatten()[0])                   # sigmoid(1), as intended
# --8<-- [end:forget-bias]


# --8<-- [start:keras-port]
# Keras stores an LSTM as kernel (x, 4h), recurrent_kernel (h, 4h) and one bias (4h,), gates in the
# order i, f, c, o: the same order as torch's i, f, g, o, transposed, with one bias instead of two.
def keras_lstm_step(x, h, c, kernel, recurrent_kernel, bias):
    i, f, g, o = (x @ kernel + h @ recurrent_kernel + bias).chunk(4, dim=-1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


# Keras' GRU (reset_after=True) orders its blocks z, r, h, with an input and a recurrent bias.
def keras_gru_step(x, h, kernel, recurrent_kernel, bias):
    xz, xr, xh = (x @ kernel + bias[0]).chunk(3, dim=-1)
    hz, hr, hh = (h @ recurrent_kernel + bias[1]).chunk(3, dim=-1)
    z, r = (xz + hz).sigmoid(), (xr + hr).sigmoid()
    return z * h + (1 - z) * (xh + r * hh).tanh()


g = torch.Generator().manual_seed(0)
k_lstm = [torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((X, 4 * Hd), (Hd, 4 * Hd), (4 * Hd,))]
k_gru = [torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((X, 3 * Hd), (Hd, 3 * Hd), (2, 3 * Hd))]
zr_to_rz = lambda t: torch.cat([t[..., Hd:2 * Hd], t[..., :Hd], t[..., 2 * Hd:]], dim=-1)  # [z, r, h] -> [r, z, n]
ported_lstm, ported_gru = nn.LSTM(X, Hd).double(), nn.GRU(X, Hd).double()
with torch.no_grad():
    ported_lstm.weight_ih_l0.copy_(k_lstm[0].T)          # transpose; the gate order stays
    ported_lstm.weight_hh_l0.copy_(k_lstm[1].T)
    ported_lstm.bias_ih_l0.copy_(k_lstm[2])              # Keras' single bias in one slot ...
    ported_lstm.bias_hh_l0.zero_()                       # ... and zero in the other
    ported_gru.weight_ih_l0.copy_(zr_to_rz(k_gru[0]).T)  # the GRU needs its blocks reordered too
    ported_gru.weight_hh_l0.copy_(zr_to_rz(k_gru[1]).T)
    ported_gru.bias_ih_l0.copy_(zr_to_rz(k_gru[2][0]))
    ported_gru.bias_hh_l0.copy_(zr_to_rz(k_gru[2][1]))
    out_lstm, _ = ported_lstm(x, (h0, c0))
    out_gru, _ = ported_gru(x, h0)
h, c, h_gru = h0[0], c0[0], h0[0]
for t in range(T):
    h, c = keras_lstm_step(x[t], h, c, *k_lstm)
    h_gru = keras_gru_step(x[t], h_gru, *k_gru)
assert torch.allclose(h, out_lstm[-1], atol=1e-12) and torch.allclose(h_gru, out_gru[-1], atol=1e-12)
assert n_params(ported_lstm) - sum(w.numel() for w in k_lstm) == 4 * Hd   # Keras: one bias fewer
# --8<-- [end:keras-port]


# --8<-- [start:streaming]
# Streaming: feed 20 ms chunks one at a time, carry (h, c); the result equals the full-sequence run.
torch.manual_seed(0)
model = nn.LSTM(40, 128, num_layers=2, batch_first=True).eval()
audio_features = torch.randn(1, 500, 40)                 # 500 frames, e.g. 5 s of 10 ms features
with torch.no_grad():
    full, _ = model(audio_features)
    state, chunks = None, []
    for chunk in audio_features.split(2, dim=1):         # 2 frames at a time, as they arrive
        out, state = model(chunk, state)
        chunks.append(out)
streamed = torch.cat(chunks, dim=1)
assert torch.allclose(streamed, full, atol=1e-5)
state_floats = sum(s.numel() for s in state)             # all the memory a stream needs
assert state_floats == 2 * 2 * 128                        # (h, c) x 2 layers x 128 units
claim("512 floats", state_floats)
# A causal transformer of the same depth and width caches K and V for every past frame instead.
kv_cache_floats = 2 * 2 * 128 * audio_features.shape[1]  # (K, V) x 2 layers x 128 dims x 500 frames
assert kv_cache_floats == 500 * state_floats             # and it keeps growing with the stream
claim("256,000", kv_cache_floats)
# --8<-- [end:streaming]
print(f"params: LSTM(256->512) {rnn_params(256, 512, 4):,}, GRU {rnn_params(256, 512, 3):,}; "
      f"streaming state = {state_floats} floats, max chunk-vs-full diff {(streamed - full).abs().max():.1e}")
