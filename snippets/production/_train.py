"""A minimal Adam training loop shared by the production snippets.

torch.optim's first optimizer construction imports TorchDynamo (about 2 s on a small CPU), which
snippets that must finish in a few seconds cannot spare, so the update is written out here.
"""
from __future__ import annotations

import torch
from torch import nn


def fit(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, epochs: int, lr: float = 1e-2,
        batch: int = 64, loss_fn=nn.functional.cross_entropy, seed: int = 0,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> nn.Module:
    """Mini-batch Adam (Kingma and Ba, 2015) on (X, Y); returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    t = 0
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).split(batch):
            loss = loss_fn(model(X[idx]), Y[idx])
            grads = torch.autograd.grad(loss, params)
            t += 1
            with torch.no_grad():
                for p, g, m_i, v_i in zip(params, grads, m, v):
                    m_i.mul_(betas[0]).add_(g, alpha=1 - betas[0])
                    v_i.mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
                    m_hat = m_i / (1 - betas[0] ** t)
                    v_hat = v_i / (1 - betas[1] ** t)
                    p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return model.eval()
