"""The CRCT network (paper eqs 2-4, 9): graph fusion, GCN encoders, fusion MLP, spatial decoders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ._graph import CRCTGraphs, FusedGraph, GraphFusion
from ._sparse import spmm

__all__ = ["CRCTNetwork", "CRCTOutput"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass
class CRCTOutput:
    """What :meth:`CRCTNetwork.forward` returns.

    Attributes
    ----------
    z
        Joint embedding ``Z``, shape ``(N, n_latent)``.
    reconstructions
        Per modality ``Dec_m(Z) = Â^S (Z W^dec_m)``, shape ``(N, d_m)``.
    hidden
        Per modality the GCN output ``F̂_m = Â_m F_m W_m``, shape ``(N, n_hidden)``.
    graphs
        Per modality the :class:`~scomics_ext.module.FusedGraph` (normalised fused values, learned and
        initial feature-edge weights).

    Examples
    --------
    >>> from scomics_ext.module import CRCTOutput
    >>> CRCTOutput.__dataclass_fields__.keys()
    dict_keys(['z', 'reconstructions', 'hidden', 'graphs'])
    """

    z: Tensor
    reconstructions: list[Tensor]
    hidden: list[Tensor]
    graphs: list[FusedGraph]

    @property
    def feature_weights(self) -> list[Tensor]:
        """Learned feature-edge weights per modality (input of the graph regulariser)."""
        return [g.feature_weights for g in self.graphs]

    @property
    def feature_init(self) -> list[Tensor]:
        """Initial feature-edge weights per modality (anchor of the graph regulariser)."""
        return [g.feature_init for g in self.graphs]


class CRCTNetwork(nn.Module):
    """CRCT encoder-decoder on sparse graphs; pure torch, every init argument a plain value.

    Per modality ``m``: a learned fused graph ``Â_m`` (:class:`~scomics_ext.module.GraphFusion`), a
    one-layer GCN ``F̂_m = Â_m F_m W_m`` (linear, no bias, as in the paper); then
    ``Z = MLP([F̂_1, ..., F̂_M])`` (two linear layers, optional nonlinearity between them) and linear
    graph decoders ``Dec_m(Z) = Â^S Z W^dec_m`` on the normalised spatial graph
    ``Â^S = D^-1/2 (A^S + I) D^-1/2``. Memory is O(N·(k + d)); no N x N tensor is formed.

    Parameters
    ----------
    n_inputs
        Feature dimension ``d_m`` of every modality.
    n_feature_params
        Number of undirected feature edges per modality (:attr:`CRCTGraphs.n_feature_params`); they
        size the learnable feature-edge weights (state that :meth:`load_state_dict` restores).
    n_hidden
        Width of the GCN outputs and of the fusion MLP's hidden layer.
    n_latent
        Dimension ``D_z`` of ``Z``.
    fusion_activation
        Nonlinearity between the two fusion layers: ``"none"`` (PRAGA's purely linear MLP), ``"relu"``,
        ``"elu"``, ``"gelu"`` or ``"tanh"``.
    learn_feature_edges
        Learn the feature-edge weights (otherwise only the mixing scalars are learned).
    edge_mlp
        Refine feature-edge weights with the light edge MLP (see :class:`GraphFusion`).
    init_mix
        Initial ``(a, b, c)`` of every fusion.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, torch
    >>> from scomics_ext.module import CRCTGraphs, CRCTNetwork
    >>> a = sp.random(30, 30, density=0.1, random_state=0, format="csr")
    >>> a = ((a + a.T) > 0).astype(float)
    >>> graphs = CRCTGraphs.from_scipy(a, [a, a])
    >>> net = CRCTNetwork([5, 4], graphs.n_feature_params, n_hidden=8, n_latent=3)
    >>> out = net([torch.randn(30, 5), torch.randn(30, 4)], graphs)
    >>> out.z.shape, [r.shape[1] for r in out.reconstructions]
    (torch.Size([30, 3]), [5, 4])
    """

    def __init__(
        self,
        n_inputs: Sequence[int],
        n_feature_params: Sequence[int],
        *,
        n_hidden: int = 64,
        n_latent: int = 64,
        fusion_activation: Literal["none", "relu", "elu", "gelu", "tanh"] = "none",
        learn_feature_edges: bool = True,
        edge_mlp: bool = False,
        init_mix: tuple[float, float, float] = (1.0, 1.0, 0.0),
    ) -> None:
        super().__init__()
        n_inputs = [int(d) for d in n_inputs]
        if not n_inputs:
            raise ValueError("need at least one modality")
        if len(n_feature_params) != len(n_inputs):
            raise ValueError(
                f"n_feature_params has {len(n_feature_params)} entries for {len(n_inputs)} modalities"
            )
        if fusion_activation != "none" and fusion_activation not in _ACTIVATIONS:
            raise ValueError(f"fusion_activation must be 'none' or one of {sorted(_ACTIVATIONS)}")
        self.n_inputs = n_inputs
        self.n_modalities = len(n_inputs)
        self.n_hidden = int(n_hidden)
        self.n_latent = int(n_latent)
        self.fusions = nn.ModuleList(
            GraphFusion(int(p), init_mix=init_mix, learn_feature_edges=learn_feature_edges, edge_mlp=edge_mlp)
            for p in n_feature_params
        )
        self.encoders = nn.ModuleList(nn.Linear(d, self.n_hidden, bias=False) for d in n_inputs)
        act = nn.Identity() if fusion_activation == "none" else _ACTIVATIONS[fusion_activation]()
        self.fusion_mlp = nn.Sequential(
            nn.Linear(self.n_modalities * self.n_hidden, self.n_hidden),
            act,
            nn.Linear(self.n_hidden, self.n_latent),
        )
        self.decoders = nn.ModuleList(nn.Linear(self.n_latent, d, bias=False) for d in n_inputs)
        for lin in [*self.encoders, *self.decoders]:
            nn.init.xavier_uniform_(lin.weight)

    def _check(self, features: Sequence[Tensor], graphs: CRCTGraphs) -> None:
        if len(features) != self.n_modalities or len(graphs.modalities) != self.n_modalities:
            raise ValueError(
                f"expected {self.n_modalities} modalities, got {len(features)} feature matrices and "
                f"{len(graphs.modalities)} graphs"
            )
        for m, (x, d) in enumerate(zip(features, self.n_inputs)):
            if x.ndim != 2 or x.shape != (graphs.n_nodes, d):
                raise ValueError(
                    f"features[{m}] must have shape ({graphs.n_nodes}, {d}), got {tuple(x.shape)}"
                )

    def encode(
        self, features: Sequence[Tensor], graphs: CRCTGraphs
    ) -> tuple[Tensor, list[Tensor], list[FusedGraph]]:
        """Fuse graphs, run the GCN encoders and the fusion MLP.

        Parameters
        ----------
        features
            One ``(N, d_m)`` float tensor per modality.
        graphs
            The sparse graphs.

        Returns
        -------
        z
            ``(N, n_latent)`` joint embedding.
        hidden
            Per-modality GCN outputs.
        fused
            Per-modality :class:`~scomics_ext.module.FusedGraph`.
        """
        self._check(features, graphs)
        hidden, fused = [], []
        for x, g, fusion, enc in zip(features, graphs.modalities, self.fusions, self.encoders):
            h = enc(x)  # project first: the sparse product then runs at width n_hidden
            f = fusion(g, h)
            hidden.append(spmm(f.structure, f.values, h))
            fused.append(f)
        z = self.fusion_mlp(torch.cat(hidden, dim=1))
        return z, hidden, fused

    def decode(self, z: Tensor, graphs: CRCTGraphs) -> list[Tensor]:
        """Spatial graph decoders ``Â^S (z W^dec_m)`` (also used for augmented embeddings).

        Parameters
        ----------
        z
            ``(N, n_latent)`` embedding (``Z`` or ``Z̃``).
        graphs
            The sparse graphs.

        Returns
        -------
        One ``(N, d_m)`` reconstruction per modality.
        """
        return [spmm(graphs.spatial_structure, graphs.spatial_values, dec(z)) for dec in self.decoders]

    def forward(self, features: Sequence[Tensor], graphs: CRCTGraphs) -> CRCTOutput:
        """Encode and decode.

        Parameters
        ----------
        features
            One ``(N, d_m)`` float tensor per modality.
        graphs
            The sparse graphs (:class:`~scomics_ext.module.CRCTGraphs`).

        Returns
        -------
        :class:`CRCTOutput` with ``Z``, reconstructions, GCN outputs and fused graphs.
        """
        z, hidden, fused = self.encode(features, graphs)
        return CRCTOutput(z=z, reconstructions=self.decode(z, graphs), hidden=hidden, graphs=fused)

    def mixing_weights(self) -> Tensor:
        """Current ``(a_m, b_m, c_m)`` per modality, shape ``(M, 3)`` (detached, for logging)."""
        return torch.stack(
            [torch.stack([f.spatial_weight, f.feature_weight, f.bias]).detach() for f in self.fusions]
        )
