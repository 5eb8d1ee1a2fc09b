"""Preprocessing: graphs, per-modality pipelines, gene images."""

__all__: list[str] = []
