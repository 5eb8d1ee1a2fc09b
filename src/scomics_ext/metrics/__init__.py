"""Evaluation metrics used in the papers."""

__all__: list[str] = []
