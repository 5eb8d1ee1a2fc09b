"""One registry of the key names the package reads and writes (squidpy's ``Key`` pattern).

Functions never spell key strings themselves; they take them from here so that renaming a key is a
one-line change and the names are documented in one place.
"""

from __future__ import annotations


class _Obsm:
    spatial = "spatial"

    @staticmethod
    def embedding(key_added: str) -> str:
        """``obsm`` key of a method's embedding, e.g. ``"X_crct"``."""
        return f"X_{key_added}"


class _Varm:
    @staticmethod
    def embedding(key_added: str) -> str:
        """``varm`` key of a gene-level embedding, e.g. ``"X_darlc"``."""
        return f"X_{key_added}"


class _Obsp:
    @staticmethod
    def connectivities(key_added: str) -> str:
        """``obsp`` key of a graph's adjacency (squidpy: ``spatial_connectivities``)."""
        return f"{key_added}_connectivities"

    @staticmethod
    def distances(key_added: str) -> str:
        """``obsp`` key of a graph's edge lengths (squidpy: ``spatial_distances``)."""
        return f"{key_added}_distances"


class _Obs:
    @staticmethod
    def novel(key_added: str) -> str:
        """``obs`` key of scDET's novelty flag."""
        return f"{key_added}_novel"

    @staticmethod
    def confidence(key_added: str) -> str:
        """``obs`` key of scDET's prediction confidence."""
        return f"{key_added}_confidence"


class _Uns:
    params = "params"

    @staticmethod
    def neighbors(key_added: str) -> str:
        """``uns`` key of a graph's description (squidpy: ``spatial_neighbors``)."""
        return f"{key_added}_neighbors"


class Key:
    """Key names used across the package."""

    obsm = _Obsm
    varm = _Varm
    obsp = _Obsp
    obs = _Obs
    uns = _Uns

    #: default ``key_added`` of :func:`scomics_ext.pp.spatial_graph` (squidpy's convention)
    spatial_graph = "spatial"
    #: default ``key_added`` of :func:`scomics_ext.pp.feature_graph`
    feature_graph = "feature"
    #: default ``key_added`` of :func:`scomics_ext.pp.gene_images`: ``varm[key]`` holds the images
    #: (genes x pixels, sparse) and ``uns[key]`` the grid description
    gene_images = "gene_images"
    #: column of planted truth written by the :mod:`scomics_ext.datasets` simulators
    truth = "truth"
    #: cell-type label column of the single-cell datasets and simulators
    cell_type = "cell_type"
    #: query column of :func:`scomics_ext.datasets.open_world` flagging cells of novel types
    novel = "novel"


#: modality kinds understood by :func:`scomics_ext.pp.preprocess_modality`
MODALITY_KINDS = ("rna", "adt", "atac")
#: aliases users commonly use for modality names in MuData objects
MODALITY_ALIASES = {
    "rna": "rna",
    "gex": "rna",
    "gene": "rna",
    "genes": "rna",
    "expression": "rna",
    "adt": "adt",
    "protein": "adt",
    "prot": "adt",
    "proteins": "adt",
    "atac": "atac",
    "peaks": "atac",
    "chromatin": "atac",
}
