"""Pure torch modules and losses; they never see AnnData."""

__all__: list[str] = []
