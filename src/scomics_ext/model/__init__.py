"""scvi-tools style model classes (``setup_anndata``/``setup_mudata``, ``train``, ``save``/``load``)."""

__all__: list[str] = []
