"""Simulators with known truth and loaders for public datasets."""

__all__: list[str] = []
