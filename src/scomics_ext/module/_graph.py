"""Graph containers and the learned per-modality graph fusion of CRCT (paper eqs 2-3), on edge lists.

For each modality ``m`` the spatial graph ``A^S`` and the feature graph ``A^F_m`` are merged once into
their *union edge set* (a fixed :class:`~scomics_ext.module.EdgeIndex`), with both graphs' values aligned
to it. The fused adjacency lives on that union only::

    w_e      = relu(A^F_e + delta_e) * g_e                     learnable feature-edge weights
    v_e      = relu(a_m * A^S_e + b_m * w_e + c_m)             1x1 "convolution" of the two channels
    Â_m      = D^-1/2 (V + I) D^-1/2                           renormalised in every forward pass

``delta`` is one parameter per *undirected* feature edge (zero at initialisation, so ``w`` starts at
``A^F``; sharing it between ``(i, j)`` and ``(j, i)`` keeps the graph symmetric), ``(a_m, b_m, c_m)``
are learnable scalars, and the bias ``c_m`` touches union edges only (PRAGA adds it to all N² entries).
``g_e`` is an optional light edge MLP (see :class:`GraphFusion`), identically 1 when disabled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from torch import Tensor, nn

from ._sparse import EdgeIndex, _edge_inner, edge_index_from_scipy, sym_normalize, union_edges

__all__ = ["CRCTGraphs", "FusedGraph", "GraphFusion", "ModalityGraph"]


def _check_symmetric(adj: sparse.spmatrix | sparse.sparray, name: str) -> sparse.csr_matrix:
    csr = sparse.csr_matrix(adj, dtype=np.float64)
    if csr.shape[0] != csr.shape[1]:
        raise ValueError(f"{name} must be square, got shape {csr.shape}")
    diff = abs(csr - csr.T)
    if diff.nnz and diff.max() > 1e-8 * max(1.0, float(abs(csr).max())):
        raise ValueError(f"{name} must be symmetric; symmetrise it first, e.g. `adj.maximum(adj.T)`")
    if csr.nnz and csr.data.min() < 0:
        raise ValueError(f"{name} must have non-negative weights")
    return csr


@dataclass
class ModalityGraph:
    """Union of the spatial and one feature graph, with both graphs' values aligned to it.

    Build it with :meth:`CRCTGraphs.from_scipy`; the fields are plain tensors so the container can be
    moved with :meth:`to`.

    Attributes
    ----------
    structure
        Union edge set (symmetric, no self loops).
    spatial
        ``A^S`` values on the union edges (0 where the edge is feature-only).
    feature
        Initial ``A^F_m`` values on the union edges (0 where the edge is spatial-only).
    feature_param
        For each union edge the index of its undirected feature-edge parameter, or
        ``n_feature_params`` (pointing at a constant 0) for spatial-only edges.
    n_feature_params
        Number of undirected feature edges (= learnable feature-edge weights).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from scomics_ext.module import CRCTGraphs
    >>> s = sp.csr_matrix([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float)
    >>> f = sp.csr_matrix([[0, 0, 1], [0, 0, 0], [1, 0, 0]], dtype=float)
    >>> g = CRCTGraphs.from_scipy(s, [f]).modalities[0]
    >>> g.structure.n_edges, g.n_feature_params
    (4, 1)
    """

    structure: EdgeIndex
    spatial: Tensor
    feature: Tensor
    feature_param: Tensor
    n_feature_params: int

    def to(self, device: torch.device | str) -> ModalityGraph:
        """A copy on ``device``."""
        return ModalityGraph(
            self.structure.to(device),
            self.spatial.to(device),
            self.feature.to(device),
            self.feature_param.to(device),
            self.n_feature_params,
        )


@dataclass
class CRCTGraphs:
    """All graphs a :class:`~scomics_ext.module.CRCTNetwork` needs, as edge lists.

    Attributes
    ----------
    spatial_structure
        Structure of the normalised spatial graph (with self loops), used by the decoders.
    spatial_values
        Values of ``D^-1/2 (A^S + I) D^-1/2`` on ``spatial_structure``.
    modalities
        One :class:`ModalityGraph` per modality (union of ``A^S`` and ``A^F_m``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from scomics_ext.module import CRCTGraphs
    >>> a = sp.random(20, 20, density=0.2, random_state=0, format="csr")
    >>> a = ((a + a.T) > 0).astype(float)
    >>> graphs = CRCTGraphs.from_scipy(a, [a, a])
    >>> len(graphs.modalities), graphs.n_nodes
    (2, 20)
    """

    spatial_structure: EdgeIndex
    spatial_values: Tensor
    modalities: list[ModalityGraph] = field(default_factory=list)

    @property
    def n_nodes(self) -> int:
        """Number of spots."""
        return self.spatial_structure.n_nodes

    @property
    def n_feature_params(self) -> list[int]:
        """Number of learnable feature-edge weights per modality (an init argument of the network)."""
        return [g.n_feature_params for g in self.modalities]

    def to(self, device: torch.device | str) -> CRCTGraphs:
        """A copy on ``device``."""
        return CRCTGraphs(
            self.spatial_structure.to(device),
            self.spatial_values.to(device),
            [g.to(device) for g in self.modalities],
        )

    @classmethod
    def from_scipy(
        cls,
        spatial: sparse.spmatrix | sparse.sparray,
        features: Sequence[sparse.spmatrix | sparse.sparray],
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> CRCTGraphs:
        """Build the graphs from a spatial and one feature adjacency per modality.

        Parameters
        ----------
        spatial
            Symmetric, non-negative ``(N, N)`` spatial adjacency (e.g. binary symmetrised kNN). The
            diagonal is ignored.
        features
            Symmetric, non-negative ``(N, N)`` feature adjacency per modality.
        dtype
            Value dtype.
        device
            Target device.

        Returns
        -------
        The graph container.
        """
        s_csr = _check_symmetric(spatial, "spatial graph")
        n = s_csr.shape[0]
        s_ei, s_val = edge_index_from_scipy(s_csr, dtype=dtype, device=device)
        s_loops, s_norm = sym_normalize(s_ei, s_val)
        mods = []
        for m, f in enumerate(features):
            f_csr = _check_symmetric(f, f"feature graph of modality {m}")
            if f_csr.shape[0] != n:
                raise ValueError(
                    f"feature graph of modality {m} has {f_csr.shape[0]} nodes, spatial graph {n}"
                )
            f_ei, f_val = edge_index_from_scipy(f_csr, dtype=dtype, device=device)
            union, (sp_u, ft_u), (_, f_pos) = union_edges([s_ei, f_ei], [s_val, f_val])
            # one parameter per undirected feature edge {min(i, j), max(i, j)}
            lo = torch.minimum(f_ei.row, f_ei.col)
            hi = torch.maximum(f_ei.row, f_ei.col)
            _, pid = torch.unique(lo * n + hi, return_inverse=True)
            n_params = int(pid.max()) + 1 if pid.numel() else 0
            param = torch.full((union.n_edges,), n_params, dtype=torch.int64, device=union.device)
            param[f_pos] = pid
            mods.append(ModalityGraph(union, sp_u, ft_u, param, n_params))
        return cls(s_loops, s_norm, mods)


@dataclass
class FusedGraph:
    """Output of :class:`GraphFusion`: the normalised fused graph and the learned feature weights.

    Attributes
    ----------
    structure
        Union structure with self loops.
    values
        Normalised fused values ``Â_m`` on ``structure``.
    feature_weights
        Learned feature-edge weights ``w`` on the union edges (without self loops).
    feature_init
        Their initial values ``A^F_m`` (same order), the anchor of the graph regulariser.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from scomics_ext.module import CRCTGraphs, GraphFusion
    >>> a = sp.csr_matrix([[0, 1], [1, 0]], dtype=float)
    >>> g = CRCTGraphs.from_scipy(a, [a]).modalities[0]
    >>> fused = GraphFusion(g.n_feature_params)(g)
    >>> fused.values.shape
    torch.Size([4])
    """

    structure: EdgeIndex
    values: Tensor
    feature_weights: Tensor
    feature_init: Tensor


class GraphFusion(nn.Module):
    """Learned fusion of the spatial and one feature graph on their union edge set (paper eqs 2-3).

    Parameters
    ----------
    n_feature_params
        Number of undirected feature edges (:attr:`ModalityGraph.n_feature_params`).
    init_mix
        Initial ``(a, b, c)``: spatial weight, feature weight and bias of the 1x1 fusion.
    learn_feature_edges
        Learn one weight per feature edge (``delta``); otherwise ``w = A^F``.
    edge_mlp
        Refine the feature weights with a light edge MLP: ``g_e = 2 sigmoid(MLP([cos_e, A^S_e, A^F_e]))``
        where ``cos_e`` is the cosine similarity of the two spots' projected features (passed as ``h`` to
        :meth:`forward`, detached). The last layer starts at zero, so ``g = 1`` at initialisation.
    edge_mlp_hidden
        Hidden width of the edge MLP.
    self_loop_weight
        Weight of the self loops added before normalisation.

    Examples
    --------
    >>> import scipy.sparse as sp, torch
    >>> from scomics_ext.module import CRCTGraphs, GraphFusion
    >>> a = sp.csr_matrix([[0, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=float)
    >>> g = CRCTGraphs.from_scipy(a, [a]).modalities[0]
    >>> fusion = GraphFusion(g.n_feature_params)
    >>> out = fusion(g)
    >>> bool(torch.allclose(out.feature_weights, out.feature_init))
    True
    """

    def __init__(
        self,
        n_feature_params: int,
        *,
        init_mix: tuple[float, float, float] = (1.0, 1.0, 0.0),
        learn_feature_edges: bool = True,
        edge_mlp: bool = False,
        edge_mlp_hidden: int = 8,
        self_loop_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_feature_params = int(n_feature_params)
        self.self_loop_weight = float(self_loop_weight)
        self.spatial_weight = nn.Parameter(torch.tensor(float(init_mix[0])))
        self.feature_weight = nn.Parameter(torch.tensor(float(init_mix[1])))
        self.bias = nn.Parameter(torch.tensor(float(init_mix[2])))
        self.delta = nn.Parameter(torch.zeros(self.n_feature_params)) if learn_feature_edges else None
        self.edge_mlp: nn.Sequential | None = None
        if edge_mlp:
            self.edge_mlp = nn.Sequential(
                nn.Linear(3, edge_mlp_hidden), nn.ReLU(), nn.Linear(edge_mlp_hidden, 1)
            )
            nn.init.zeros_(self.edge_mlp[-1].weight)
            nn.init.zeros_(self.edge_mlp[-1].bias)

    def feature_edge_weights(self, graph: ModalityGraph, h: Tensor | None = None) -> Tensor:
        """Learned feature-edge weights ``w`` on the union edges (0 on spatial-only edges).

        Parameters
        ----------
        graph
            The modality's union graph.
        h
            Projected features ``(N, d)`` for the edge MLP (ignored without it).

        Returns
        -------
        Tensor of shape ``(graph.structure.n_edges,)``.
        """
        if graph.n_feature_params != self.n_feature_params:
            raise ValueError(
                f"graph has {graph.n_feature_params} feature edges, the module was built for "
                f"{self.n_feature_params}; rebuild the module for these graphs"
            )
        w = graph.feature
        if self.delta is not None:
            delta = torch.cat([self.delta, self.delta.new_zeros(1)])
            w = torch.relu(w + delta[graph.feature_param])
        if self.edge_mlp is not None:
            if h is None:
                raise ValueError("edge_mlp=True needs the projected features `h`")
            with torch.no_grad():
                hn = nn.functional.normalize(h.detach(), dim=1)
                cos = _edge_inner(graph.structure, hn, hn)
            x = torch.stack([cos, graph.spatial, graph.feature], dim=1).to(w.dtype)
            gate = 2.0 * torch.sigmoid(self.edge_mlp(x).squeeze(1))
            w = w * gate
        return w

    def forward(self, graph: ModalityGraph, h: Tensor | None = None) -> FusedGraph:
        """Fuse, then renormalise.

        Parameters
        ----------
        graph
            The modality's union graph.
        h
            Projected features for the edge MLP (optional).

        Returns
        -------
        :class:`FusedGraph` with the normalised fused values and the learned feature weights.
        """
        w = self.feature_edge_weights(graph, h)
        fused = torch.relu(self.spatial_weight * graph.spatial + self.feature_weight * w + self.bias)
        loops, values = sym_normalize(graph.structure, fused, self_loop_weight=self.self_loop_weight)
        return FusedGraph(loops, values, w, graph.feature)
