"""Tooling for the interview knowledge base: the vault model, its MkDocs plugin and its checks."""
