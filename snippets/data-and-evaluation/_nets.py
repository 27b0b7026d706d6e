"""Small CNNs and a written-out Adam loop for the Data and Evaluation snippets.

The update is written out because building the first torch.optim optimizer imports TorchDynamo, which
costs seconds that a snippet cannot spare. Everything runs on one CPU thread, deterministically.
"""
from __future__ import annotations

import torch
from torch import nn

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def small_cnn(in_channels: int, n_classes: int, width: int = 16) -> nn.Sequential:
    """conv-BN-ReLU-pool twice, global average pooling, a linear head."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, n_classes))


def train(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, epochs: int, lr: float = 3e-3, batch: int = 64,
          seed: int = 0, weight_decay: float = 0.0, loss_fn=None, on_epoch=None) -> nn.Module:
    """Mini-batch Adam (Kingma and Ba, 2015) with PyTorch's default betas and eps; returns the model in eval mode.
    `Y` holds class indices, or class probabilities (soft targets) when it is floating point.
    `on_epoch(epoch, model)`, if given, is called after every epoch (in training mode)."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    step = 0
    model.train()
    for epoch in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).split(batch):
            grads = torch.autograd.grad(loss_fn(model(X[idx]), Y[idx]), params)
            step += 1
            with torch.no_grad():
                for p, g, a, b in zip(params, grads, m1, m2):
                    if weight_decay:
                        g = g + weight_decay * p
                    a.mul_(0.9).add_(g, alpha=0.1)
                    b.mul_(0.999).addcmul_(g, g, value=0.001)
                    p.sub_(lr * (a / (1 - 0.9 ** step)) / ((b / (1 - 0.999 ** step)).sqrt() + 1e-8))
        if on_epoch is not None:
            on_epoch(epoch, model)
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Softmax probabilities in eval mode, in batches."""
    model.eval()
    return torch.cat([model(X[i:i + batch]).softmax(dim=1) for i in range(0, len(X), batch)])
