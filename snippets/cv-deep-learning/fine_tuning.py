"""Fine-tuning mechanics on a small CNN: frozen layers stay frozen, parameter groups get their own learning
rates, BatchNorm in eval mode stops drifting, and a pretrained backbone beats training from scratch."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vault.claims import claim

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
rng = np.random.default_rng(0)


# --8<-- [start:data]
def shape_image(kind: str, rng, size: int = 32) -> np.ndarray:
    """A noisy image of one filled shape at a random position and size."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    r = rng.uniform(5, 10)
    cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
    dx, dy = xx - cx, yy - cy
    masks = {
        "disk": dx**2 + dy**2 <= r**2,
        "square": (abs(dx) <= r * 0.8) & (abs(dy) <= r * 0.8),
        "triangle": (dy <= r * 0.7) & (dy >= 2 * abs(dx) - r),
        "plus": ((abs(dx) <= r / 4) & (abs(dy) <= r)) | ((abs(dy) <= r / 4) & (abs(dx) <= r)),
        "ring": (dx**2 + dy**2 <= r**2) & (dx**2 + dy**2 >= (0.6 * r) ** 2),
        "x": ((abs(dx - dy) <= r / 3) | (abs(dx + dy) <= r / 3)) & (abs(dx) <= r * 0.8) & (abs(dy) <= r * 0.8),
        "diamond": abs(dx) + abs(dy) <= r,
        "bar": (abs(dx) <= r) & (abs(dy) <= r / 3),
    }
    img = masks[kind].astype(np.float32) * rng.uniform(0.7, 1.0)
    return img + rng.normal(0, 0.25, img.shape).astype(np.float32)


def dataset(kinds, n_per_class, rng):
    x = np.stack([shape_image(k, rng) for k in kinds for _ in range(n_per_class)])
    y = np.repeat(np.arange(len(kinds)), n_per_class)
    return torch.from_numpy(x)[:, None], torch.from_numpy(y)


SOURCE = ["disk", "square", "triangle", "plus"]         # the "ImageNet" we pretrain on: plenty of data
TARGET = ["ring", "x", "diamond", "bar"]                # new classes, 2 labelled images each
x_src, y_src = dataset(SOURCE, 200, rng)
x_tgt, y_tgt = dataset(TARGET, 2, rng)
x_test, y_test = dataset(TARGET, 50, rng)
# --8<-- [end:data]


# --8<-- [start:model]
def make_backbone() -> nn.Sequential:
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*block(1, 8), nn.MaxPool2d(2), *block(8, 16), nn.MaxPool2d(2),
                         *block(16, 32), nn.AdaptiveMaxPool2d(1), nn.Flatten())


def train(model, params, x, y, steps, batch=32, lr=3e-3, seed=0):
    opt = torch.optim.Adam(params, lr=lr) if not isinstance(params, torch.optim.Optimizer) else params
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


pretrained = nn.Sequential(make_backbone(), nn.Linear(32, len(SOURCE)))
pretrained.train()
train(pretrained, pretrained.parameters(), x_src, y_src, steps=120)
src_acc = accuracy(pretrained, *dataset(SOURCE, 50, np.random.default_rng(1)))
claim("over 90%", src_acc)                             # the "pretrained" backbone learned its task
backbone_weights = copy.deepcopy(pretrained[0].state_dict())
# --8<-- [end:model]


# --8<-- [start:freeze]
def new_model() -> nn.Sequential:
    """The pretrained backbone with a fresh head for the target classes."""
    backbone = make_backbone()
    backbone.load_state_dict(backbone_weights)
    return nn.Sequential(backbone, nn.Linear(32, len(TARGET)))


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def set_bn_eval(module: nn.Module) -> None:
    """Use (and keep) the stored running statistics; call after every model.train()."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


model = new_model()
freeze(model[0])
model.train()
set_bn_eval(model[0])
head_before = model[1].weight.clone()
train(model, [p for p in model.parameters() if p.requires_grad], x_tgt, y_tgt, steps=20)
after = model[0].state_dict()
assert all(torch.equal(after[k], backbone_weights[k]) for k in after)        # weights AND BN buffers
assert not torch.equal(model[1].weight, head_before)                         # the head learned
claim("132 head parameters", sum(p.numel() for p in model.parameters() if p.requires_grad))   # 32 * 4 + 4

# The trap: requires_grad=False but the model left in train mode. No weight moves, yet the
# BatchNorm running statistics drift towards the new data, so the "frozen" backbone has changed.
leaky = new_model()
freeze(leaky[0])
leaky.train()
train(leaky, leaky[1].parameters(), x_tgt, y_tgt, steps=20)
state = leaky[0].state_dict()
assert all(torch.equal(p, backbone_weights[n]) for n, p in leaky[0].named_parameters())
bn_mean = "1.running_mean"
drift = (state[bn_mean] - backbone_weights[bn_mean]).abs().max().item()
assert drift > 1e-3 and state["1.num_batches_tracked"] == backbone_weights["1.num_batches_tracked"] + 20

# Freezing in the middle of training, with an optimiser that already holds momentum: a zero
# gradient is not a missing gradient, and the momentum keeps moving the "frozen" weights.
lin = nn.Linear(4, 2)
opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
lin(torch.randn(8, 4)).sum().backward()
opt.step()
freeze(lin)
opt.zero_grad(set_to_none=False)                   # grads are now zero tensors
w = lin.weight.detach().clone()
opt.step()
assert not torch.equal(lin.weight, w)              # moved by the momentum buffer
opt.zero_grad(set_to_none=True)                    # grads are None: the optimiser skips them
w = lin.weight.detach().clone()
opt.step()
assert torch.equal(lin.weight, w)
# --8<-- [end:freeze]


# --8<-- [start:param-groups]
model = new_model().double()                 # float64 so the update check below is exact
model.train()
set_bn_eval(model[0])
groups = [
    {"params": model[0][:4].parameters(), "lr": 1e-4},      # early layers: generic edges, barely move
    {"params": model[0][4:].parameters(), "lr": 1e-3},      # later layers: more task-specific
    {"params": model[1].parameters(), "lr": 1e-2},          # new head: random init, largest steps
]
opt = torch.optim.SGD(groups, lr=1e-2, momentum=0.0)
assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3, 1e-2]

before = [[p.detach().clone() for p in g["params"]] for g in opt.param_groups]
loss = F.cross_entropy(model(x_tgt.double()), y_tgt)
opt.zero_grad()
loss.backward()
opt.step()
for g, old in zip(opt.param_groups, before):
    for p, p0 in zip(g["params"], old):
        assert torch.allclose(p0 - p, g["lr"] * p.grad, rtol=1e-6, atol=1e-15)       # step = group lr * gradient


# Layer-wise decay: each block down from the head gets the learning rate divided by a factor.
def layerwise_lrs(base_lr: float, n_blocks: int, factor: float) -> list[float]:
    return [base_lr / factor ** (n_blocks - 1 - i) for i in range(n_blocks)]


lrs = layerwise_lrs(1e-2, n_blocks=4, factor=2.6)
assert np.allclose(lrs, [1e-2 / 2.6**3, 1e-2 / 2.6**2, 1e-2 / 2.6, 1e-2])
claim("$5.69 \\times 10^{-4}$", lrs[0])
# --8<-- [end:param-groups]


# --8<-- [start:bn-small-batch]
bn = nn.BatchNorm1d(3)
bn.train()
pair = torch.tensor([[1.0, 50.0, -3.0], [2.0, -7.0, 9.0]])
out = bn(pair)
assert torch.allclose(out.abs(), torch.ones(2, 3), atol=1e-3)     # batch of 2: every feature becomes +-1
assert not torch.equal(bn.running_mean, torch.zeros(3))            # and the running stats moved

conv_bn = new_model()[0]
sample = x_tgt[:1]
conv_bn.train()
stats0 = conv_bn[1].running_var.clone()
a = conv_bn(torch.cat([sample, x_tgt[2:3]]))[0]                     # same image, two different partners
b = conv_bn(torch.cat([sample, x_tgt[4:5]]))[0]
assert (a - b).abs().max() > 1e-2                                   # train mode: output depends on the batch
assert not torch.equal(conv_bn[1].running_var, stats0)               # ... and the running stats drift

conv_bn.load_state_dict(backbone_weights)
conv_bn.eval()
with torch.no_grad():
    a = conv_bn(torch.cat([sample, x_tgt[2:3]]))[0]
    b = conv_bn(torch.cat([sample, x_tgt[4:5]]))[0]
    alone = conv_bn(sample)[0]
assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, alone, atol=1e-6)   # per-sample function
assert torch.equal(conv_bn[1].running_var, backbone_weights["1.running_var"])   # nothing drifts
# --8<-- [end:bn-small-batch]


# --8<-- [start:compare]
def fine_tune(mode: str, x, y, seed: int, steps: int = 60) -> float:
    torch.manual_seed(seed)
    if mode == "scratch":
        model = nn.Sequential(make_backbone(), nn.Linear(32, len(TARGET)))
        model.train()
        params = model.parameters()
    else:
        model = new_model()
        model.train()
        set_bn_eval(model[0])                          # 8 images: keep the source statistics
        if mode == "linear probe":                     # frozen features: compute them once
            freeze(model[0])
            with torch.no_grad():
                features = model[0](x)
            train(model[1], model[1].parameters(), features, y, steps=steps, batch=16, seed=seed)
            return accuracy(model, x_test, y_test)
        params = torch.optim.Adam([{"params": model[0].parameters(), "lr": 3e-4},   # full fine-tune:
                                   {"params": model[1].parameters(), "lr": 3e-3}])  # 10x lower for the body
    train(model, params, x, y, steps=steps, batch=16, seed=seed)
    return accuracy(model, x_test, y_test)


# With 8 labelled images, which 8 they are matters as much as the method: average over 5 draws.
modes = ["scratch", "linear probe", "fine-tune"]
acc = np.array([[fine_tune(m, *dataset(TARGET, 2, np.random.default_rng(100 + d)), seed=d) for m in modes]
                for d in range(5)])                    # (draw, mode) test accuracies
mean = dict(zip(modes, acc.mean(0)))
claim("0.50–0.60", mean["scratch"])
claim("0.56–0.66", mean["linear probe"])
claim("0.75–0.85", mean["fine-tune"])
claim("more than 0.1", (acc[:, 2] - acc[:, :2].max(1)).min())   # fine-tuning wins every draw
# --8<-- [end:compare]
print(f"source-task accuracy of the pretrained net: {src_acc:.3f}")
print(f"frozen backbone with BN in train mode: running_mean drift {drift:.3f} after 20 steps")
print(f"layer-wise lrs: {[f'{v:.2e}' for v in lrs]}")
print("target-task test accuracy with 2 images per class, 5 draws:")
for m, col in zip(modes, acc.T):
    print(f"  {m:13s} mean {col.mean():.3f}  draws " + " ".join(f"{v:.3f}" for v in col))
