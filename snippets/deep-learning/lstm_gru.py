"""LSTM and GRU cells by hand, matched to torch.nn.LSTM / torch.nn.GRU; parameter counts; streaming."""
from __future__ import annotations

import torch
import torch.nn as nn

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
assert (h_alt - hT_ref[0]).abs().max() > 1e-3        # a different function of the same weights
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

assert rnn_params(256, 512, 1) == 394_240            # vanilla RNN 256 -> 512
assert rnn_params(256, 512, 4) == 1_576_960          # LSTM: 4x the vanilla RNN
assert rnn_params(256, 512, 3) == 1_182_720          # GRU is 3/4 of it
# A second layer reads the first one's h, so its input size is h; bidirectional doubles everything.
assert n_params(nn.LSTM(32, 64, num_layers=2)) == rnn_params(32, 64, 4) + rnn_params(64, 64, 4)
assert n_params(nn.LSTM(32, 64, bidirectional=True)) == 2 * rnn_params(32, 64, 4)
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
# A causal transformer of the same depth and width caches K and V for every past frame instead.
kv_cache_floats = 2 * 2 * 128 * audio_features.shape[1]  # (K, V) x 2 layers x 128 dims x 500 frames
assert kv_cache_floats == 500 * state_floats == 256_000  # and it keeps growing with the stream
# --8<-- [end:streaming]
print(f"params: LSTM(256->512) {rnn_params(256, 512, 4):,}, GRU {rnn_params(256, 512, 3):,}; "
      f"streaming state = {state_floats} floats, max chunk-vs-full diff {(streamed - full).abs().max():.1e}")
