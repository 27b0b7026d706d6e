"""A tiny CLIP on synthetic image-caption pairs: the symmetric loss, zero-shot classification, the temperature."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from _figures import save

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)

# --8<-- [start:data]
SHAPES = ["circle", "square", "star", "heart", "arrow", "cross", "ring", "moon", "leaf", "bolt"]
COLOURS = ["red", "green", "blue", "yellow"]
VOCAB = ["a", "photo", "of", *COLOURS, *SHAPES]
TOKEN = {w: i for i, w in enumerate(VOCAB)}
held_out = {(s, s % 4) for s in range(10)}          # 10 of the 40 shape-colour pairs never captioned in training
mixing = torch.randn(14, 64, generator=gen)         # a fixed "renderer": concepts -> 64-d image


def images(shape: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Synthetic images: a nonlinear mix of the shape and colour plus clutter the caption never mentions."""
    concept = torch.cat([F.one_hot(shape, 10), F.one_hot(colour, 4)], 1).float()
    clutter = 1.5 * torch.randn(len(shape), 64, generator=gen)
    return torch.tanh(concept @ mixing) + clutter


def tokens(*words: str) -> torch.Tensor:
    return torch.tensor([TOKEN[w] for w in words])


TRAIN_PAIRS = torch.tensor([(s, c) for s in range(10) for c in range(4) if (s, c) not in held_out])
PREFIX = tokens("a", "photo", "of", "a")


def sample_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n image-caption pairs from the 30 training combinations: 'a photo of a red star' (token ids, n x 6)."""
    shape, colour = TRAIN_PAIRS[torch.randint(0, len(TRAIN_PAIRS), (n,), generator=gen)].T
    captions = torch.cat([PREFIX.expand(n, 4), (3 + colour)[:, None], (7 + shape)[:, None]], 1)
    return images(shape, colour), captions
# --8<-- [end:data]


# --8<-- [start:model]
class DualEncoder(nn.Module):
    """Image tower (MLP) and text tower (mean of word embeddings + linear) into one 32-d space."""

    def __init__(self, tau: float | None = None):
        super().__init__()
        self.image = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))
        self.words = nn.Embedding(len(VOCAB), 64)
        self.text_proj = nn.Linear(64, 32)
        # CLIP learns log(1/tau), initialised at tau = 0.07; a fixed tau is a buffer instead.
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07))) if tau is None else None
        self.fixed_tau = tau

    def encode_image(self, x):
        return F.normalize(self.image(x), dim=1)

    def encode_text(self, captions: torch.Tensor):
        """Captions as token ids (n x length): the mean of the word embeddings, projected."""
        return F.normalize(self.text_proj(self.words(captions).mean(1)), dim=1)

    def scale(self) -> torch.Tensor:
        if self.fixed_tau is not None:
            return torch.tensor(1 / self.fixed_tau)
        return self.log_scale.exp().clamp(max=100)       # CLIP clips the logit scale at 100


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: each image picks its caption among N (rows), each caption its image (columns)."""
    logits = scale * img @ txt.T
    target = torch.arange(len(img))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
# --8<-- [end:model]


# --8<-- [start:loss-check]
img = F.normalize(torch.randn(8, 32, dtype=torch.float64), dim=1)
txt = F.normalize(torch.randn(8, 32, dtype=torch.float64), dim=1)
s = 10 * img @ txt.T
i2t = -(s.diag() - s.logsumexp(dim=1)).mean()          # image -> text: softmax over each row
t2i = -(s.diag() - s.logsumexp(dim=0)).mean()          # text -> image: softmax over each column
assert torch.allclose(clip_loss(img, txt, torch.tensor(10.0)), (i2t + t2i) / 2)
assert not torch.allclose(i2t, t2i)                    # the two directions are different losses
# A per-image offset (row i shifted: image i equally closer to every caption) is invisible to image -> text
# but not to text -> image, where that image would become a hub; shifting a column is the mirror case.
shifted = s + torch.randn(8, 1, dtype=torch.float64)
assert torch.allclose(-(shifted.diag() - shifted.logsumexp(dim=1)).mean(), i2t)
assert not torch.allclose(-(shifted.diag() - shifted.logsumexp(dim=0)).mean(), t2i)
shifted = s + torch.randn(1, 8, dtype=torch.float64)
assert torch.allclose(-(shifted.diag() - shifted.logsumexp(dim=0)).mean(), t2i)
assert not torch.allclose(-(shifted.diag() - shifted.logsumexp(dim=1)).mean(), i2t)
# --8<-- [end:loss-check]


# --8<-- [start:train]
def train(model: DualEncoder, steps: int = 200, batch: int = 256) -> DualEncoder:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.losses = []
    for _ in range(steps):
        x, caps = sample_pairs(batch)
        loss = clip_loss(model.encode_image(x), model.encode_text(caps), model.scale())
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.losses.append(loss.item())
    return model


def zero_shot_accuracy(model: DualEncoder, x: torch.Tensor, shape: torch.Tensor, ensemble: bool) -> float:
    """Classify by the nearest prompt: 'a photo of a {shape}', or averaged over 'a photo of a {colour} {shape}'."""
    with torch.no_grad():
        if ensemble:
            prompts = torch.stack([
                model.encode_text(torch.stack([tokens("a", "photo", "of", "a", c, s) for c in COLOURS])).mean(0)
                for s in SHAPES])
        else:
            prompts = model.encode_text(torch.stack([tokens("a", "photo", "of", "a", s) for s in SHAPES]))
        prompts = F.normalize(prompts, dim=1)
        return (model.encode_image(x) @ prompts.T).argmax(1).eq(shape).float().mean().item()


torch.manual_seed(0)
model = train(DualEncoder())
test_shape = torch.arange(10).repeat_interleave(50)
seen_colour = (test_shape + 1) % 4                     # combinations seen in training
unseen_colour = test_shape % 4                         # the held-out combinations
x_seen, x_unseen = images(test_shape, seen_colour), images(test_shape, unseen_colour)

plain = zero_shot_accuracy(model, x_seen, test_shape, ensemble=False)
ensembled = zero_shot_accuracy(model, x_seen, test_shape, ensemble=True)
unseen = zero_shot_accuracy(model, x_unseen, test_shape, ensemble=True)
claim("78%", plain, tol=0.02), claim("80%", ensembled, tol=0.02)   # 10 classes: chance is 10%
claim("73%", unseen, tol=0.02)                # shape-colour pairs no training caption ever named
claim("0.066", 1 / model.scale().item(), tol=0.003)   # the learned temperature, from 0.07
assert ensembled > plain and unseen > 0.6
# --8<-- [end:train]

# --8<-- [start:retrieval]
with torch.no_grad():
    x, caps = sample_pairs(1000)
    sim = model.encode_image(x) @ model.encode_text(caps).T
    # A caption is correct if it names the image's shape and colour: captions repeat, so compare the text.
    same = (caps[:200, None, :] == caps[None, :, :]).all(-1)
    top1 = sim[:200].argmax(1)
    i2t_r1 = same[torch.arange(200), top1].float().mean().item()
claim("84%", i2t_r1, tol=0.02)
# --8<-- [end:retrieval]

# --8<-- [start:temperature]
def loss_floor(tau: float, n: int = 256) -> float:
    """Cosines lie in [-1, 1]: the best any model can do is s_ii = 1 and s_ij = -1 for every negative."""
    return math.log(1 + (n - 1) * math.exp(-2 / tau))


runs = {}
for tau in (1.0, 0.1, 0.01):
    torch.manual_seed(0)
    runs[tau] = train(DualEncoder(tau=tau))
acc_by_tau = {tau: zero_shot_accuracy(m, x_seen, test_shape, ensemble=True) for tau, m in runs.items()}

claim("3.57", loss_floor(1.0))                            # tau = 1 cannot go below this, whatever it learns
assert loss_floor(0.1) < 1e-6                             # tau = 0.1 has essentially no floor
assert runs[1.0].losses[-1] > loss_floor(1.0) > runs[0.1].losses[-1]
claim("72%", acc_by_tau[1.0], tol=0.02)
claim("83%", acc_by_tau[0.1], tol=0.02)
claim("77%", acc_by_tau[0.01], tol=0.02)
assert acc_by_tau[0.1] > max(acc_by_tau[1.0], acc_by_tau[0.01])

# Only 30 distinct captions: a batch of 256 holds about 8.5 copies of each, which the loss treats as
# negatives. Even a perfect model then gives each true pair at most 1/k of the softmax.
_, caps = sample_pairs(256)
copies = (caps[:, None, :] == caps[None, :, :]).all(-1).sum(1).float()
claim("about 2.1", copies.log().mean(), tol=0.1)           # nats: the false-negative floor at any tau
assert runs[0.1].losses[-1] > copies.log().mean()
# --8<-- [end:temperature]
print(f"zero-shot {plain:.3f} plain, {ensembled:.3f} ensembled, {unseen:.3f} unseen pairs; "
      f"learned tau {1 / model.scale().item():.4f}; R@1 {i2t_r1:.3f}; by tau {acc_by_tau}; "
      f"final losses { {t: round(m.losses[-1], 3) for t, m in runs.items()} }")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
for tau, m in runs.items():
    ax1.plot(m.losses, label=f"τ = {tau}")
ax1.plot(model.losses, "k", lw=1, label="learned τ")
ax1.axhline(loss_floor(1.0), color="C0", ls=":", lw=1, label="floor for τ = 1")
ax1.set(xlabel="step", ylabel="symmetric contrastive loss", ylim=(0, 8), title="Training loss")
ax1.legend(fontsize=8)
ax2.bar([str(t) for t in acc_by_tau], [100 * a for a in acc_by_tau.values()], color="C2")
ax2.axhline(10, color="0.5", ls="--", lw=1, label="chance")
ax2.set(xlabel="fixed temperature τ", ylabel="zero-shot accuracy, %", ylim=(0, 100),
        title="Zero-shot accuracy against τ")
ax2.legend(fontsize=8)
save(fig, "representation-and-generative", "clip-temperature")
