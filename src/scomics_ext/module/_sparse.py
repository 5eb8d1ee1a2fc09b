"""Sparse graph kernels on plain torch tensors (edge lists, no N x N dense tensor anywhere).

A graph is split into a fixed *structure* (:class:`EdgeIndex`: which edges exist, sorted row-major, with
the index arrays needed for CSR products and their transposes) and a *value* vector of length ``n_edges``
that may carry gradients. Every function here costs O(n_edges) memory (times the feature width for
products), never O(n_nodes**2).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

__all__ = [
    "EdgeIndex",
    "edge_index_from_scipy",
    "spmm",
    "sym_normalize",
    "to_torch_sparse",
    "union_edges",
]

_CHUNK = 1 << 16


def _csr(crow: Tensor, col: Tensor, values: Tensor, n: int) -> Tensor:
    """A torch CSR tensor without invariant checks and without the 'beta' warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)


def _crow_from_sorted_rows(row: Tensor, n: int) -> Tensor:
    counts = torch.bincount(row, minlength=n)
    crow = torch.zeros(n + 1, dtype=torch.int64, device=row.device)
    torch.cumsum(counts, dim=0, out=crow[1:])
    return crow


class EdgeIndex:
    """Fixed sparsity structure of a directed graph on ``n_nodes`` nodes.

    Edges are stored once, sorted row-major (by ``row``, then ``col``), without duplicates. The structure
    keeps what sparse products need: the CSR row pointer, and (built lazily) the permutation that lists
    the same edges in the order of the transposed graph. Edge *values* live outside, in a tensor of
    length :attr:`n_edges` in the same order, so that they can be learnable.

    Parameters
    ----------
    row
        Source (row) index of every edge, integer tensor of shape ``(n_edges,)``.
    col
        Target (column) index of every edge, same shape.
    n_nodes
        Number of nodes ``N``; indices must lie in ``[0, N)``.
    assume_sorted
        Skip sorting (the caller guarantees row-major order and no duplicates).

    Raises
    ------
    ValueError
        If indices are out of range or an edge appears twice.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import EdgeIndex
    >>> ei = EdgeIndex(torch.tensor([1, 0]), torch.tensor([0, 1]), n_nodes=2)
    >>> ei.row.tolist(), ei.col.tolist(), ei.n_edges
    ([0, 1], [1, 0], 2)
    """

    def __init__(self, row: Tensor, col: Tensor, n_nodes: int, *, assume_sorted: bool = False) -> None:
        row = torch.as_tensor(row, dtype=torch.int64)
        col = torch.as_tensor(col, dtype=torch.int64, device=row.device)
        if row.ndim != 1 or row.shape != col.shape:
            raise ValueError(
                f"row and col must be 1-D of equal length, got {tuple(row.shape)} and {tuple(col.shape)}"
            )
        n_nodes = int(n_nodes)
        if row.numel() and (
            int(row.min()) < 0 or int(col.min()) < 0 or int(row.max()) >= n_nodes or int(col.max()) >= n_nodes
        ):
            raise ValueError(f"edge indices must lie in [0, {n_nodes}); fix the graph or n_nodes")
        if not assume_sorted:
            key = row * n_nodes + col
            key, order = torch.sort(key, stable=True)
            if key.numel() > 1 and bool((key[1:] == key[:-1]).any()):
                raise ValueError("duplicate edges; sum duplicates first (scipy: `adj.sum_duplicates()`)")
            row, col = row[order], col[order]
        self.row: Tensor = row
        self.col: Tensor = col
        self.n_nodes: int = n_nodes
        self.crow: Tensor = _crow_from_sorted_rows(row, n_nodes)
        self._t_perm: Tensor | None = None
        self._t_crow: Tensor | None = None
        self._loops: tuple[EdgeIndex, Tensor] | None = None

    # -- basic properties -------------------------------------------------------------------------------
    @property
    def n_edges(self) -> int:
        """Number of stored (directed) edges."""
        return int(self.row.numel())

    @property
    def device(self) -> torch.device:
        """Device of the index tensors."""
        return self.row.device

    def __repr__(self) -> str:
        return f"EdgeIndex(n_nodes={self.n_nodes}, n_edges={self.n_edges}, device={self.device})"

    def has_self_loops(self) -> bool:
        """Whether any edge ``(i, i)`` is stored."""
        return bool((self.row == self.col).any())

    def is_symmetric(self) -> bool:
        """Whether the edge *set* is symmetric (for every ``(i, j)`` also ``(j, i)``)."""
        p = self.transpose_perm
        return bool(torch.equal(self.col[p], self.row) and torch.equal(self.row[p], self.col))

    # -- transposed order (lazy) ------------------------------------------------------------------------
    @property
    def transpose_perm(self) -> Tensor:
        """Permutation ``p`` such that ``(col[p], row[p])`` is sorted row-major (the transposed graph)."""
        if self._t_perm is None:
            key = self.col * self.n_nodes + self.row
            self._t_perm = torch.sort(key, stable=True).indices
            self._t_crow = _crow_from_sorted_rows(self.col[self._t_perm], self.n_nodes)
        return self._t_perm

    @property
    def transpose_crow(self) -> Tensor:
        """CSR row pointer of the transposed graph."""
        _ = self.transpose_perm
        assert self._t_crow is not None
        return self._t_crow

    # -- self loops (lazy) ------------------------------------------------------------------------------
    def with_self_loops(self) -> tuple[EdgeIndex, Tensor]:
        """The structure with all ``N`` self loops added, and how to fill its values.

        Returns
        -------
        structure
            :class:`EdgeIndex` with ``n_edges + n_nodes`` edges.
        perm
            Index tensor such that ``torch.cat([edge_values, diag_values])[perm]`` are the values of
            ``structure`` (``diag_values`` has length ``n_nodes``).

        Raises
        ------
        ValueError
            If the graph already has self loops.
        """
        if self._loops is None:
            if self.has_self_loops():
                raise ValueError("graph already has self loops; drop the diagonal first")
            n = self.n_nodes
            ar = torch.arange(n, device=self.device)
            row = torch.cat([self.row, ar])
            col = torch.cat([self.col, ar])
            perm = torch.sort(row * n + col, stable=True).indices
            self._loops = (EdgeIndex(row[perm], col[perm], n, assume_sorted=True), perm)
        return self._loops

    # -- conversion -------------------------------------------------------------------------------------
    def to(self, device: torch.device | str) -> EdgeIndex:
        """A copy of the structure on ``device`` (cached permutations move along)."""
        device = torch.device(device)
        if device == self.device:
            return self
        out = EdgeIndex.__new__(EdgeIndex)
        out.row, out.col, out.n_nodes = self.row.to(device), self.col.to(device), self.n_nodes
        out.crow = self.crow.to(device)
        out._t_perm = None if self._t_perm is None else self._t_perm.to(device)
        out._t_crow = None if self._t_crow is None else self._t_crow.to(device)
        out._loops = None if self._loops is None else (self._loops[0].to(device), self._loops[1].to(device))
        return out

    def to_sparse(self, values: Tensor, layout: torch.layout = torch.sparse_csr) -> Tensor:
        """A torch sparse tensor (``torch.sparse_csr`` or ``torch.sparse_coo``) with these values."""
        if layout == torch.sparse_csr:
            return _csr(self.crow, self.col, values, self.n_nodes)
        if layout == torch.sparse_coo:
            idx = torch.stack([self.row, self.col])
            return torch.sparse_coo_tensor(
                idx, values, (self.n_nodes, self.n_nodes), is_coalesced=True, check_invariants=False
            )
        raise ValueError(f"layout must be torch.sparse_csr or torch.sparse_coo, got {layout}")

    def to_scipy(self, values: Tensor) -> sparse.csr_matrix:
        """The graph as a :class:`scipy.sparse.csr_matrix` (values detached, moved to CPU)."""
        v = values.detach().cpu().numpy()
        return sparse.csr_matrix(
            (v, self.col.cpu().numpy(), self.crow.cpu().numpy()), shape=(self.n_nodes, self.n_nodes)
        )


def edge_index_from_scipy(
    adj: sparse.spmatrix | sparse.sparray,
    *,
    drop_diagonal: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[EdgeIndex, Tensor]:
    """Edge structure and values of a scipy sparse adjacency matrix.

    Parameters
    ----------
    adj
        Square sparse matrix (any scipy format); duplicates are summed, explicit zeros dropped.
    drop_diagonal
        Drop self loops (they are added back, with weight 1, by :func:`sym_normalize`).
    dtype
        Floating dtype of the returned values.
    device
        Device of the returned tensors.

    Returns
    -------
    structure
        :class:`EdgeIndex` of the stored non-zeros.
    values
        Tensor of shape ``(structure.n_edges,)``.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from scomics_ext.module import edge_index_from_scipy
    >>> adj = sp.csr_matrix([[0, 1, 0], [1, 0, 2], [0, 2, 0]], dtype=float)
    >>> ei, w = edge_index_from_scipy(adj)
    >>> ei.n_edges, w.tolist()
    (4, [1.0, 1.0, 2.0, 2.0])
    """
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {adj.shape}")
    csr = sparse.csr_matrix(adj, copy=True)
    csr.sum_duplicates()  # also sorts the column indices: the CSR order is row-major
    csr.eliminate_zeros()
    n = int(csr.shape[0])
    row_np = np.repeat(np.arange(n, dtype=np.int64), np.diff(csr.indptr))
    col_np = csr.indices.astype(np.int64)
    val_np = np.asarray(csr.data)
    if drop_diagonal:
        keep = row_np != col_np
        row_np, col_np, val_np = row_np[keep], col_np[keep], val_np[keep]
    row = torch.as_tensor(row_np, device=device)
    col = torch.as_tensor(col_np, device=device)
    val = torch.as_tensor(val_np, dtype=dtype, device=device)
    return EdgeIndex(row, col, n, assume_sorted=True), val


def to_torch_sparse(
    adj: sparse.spmatrix | sparse.sparray,
    *,
    layout: torch.layout = torch.sparse_csr,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Convert a scipy sparse matrix to a torch sparse tensor (CSR or COO).

    Parameters
    ----------
    adj
        Any scipy sparse matrix (need not be square).
    layout
        ``torch.sparse_csr`` (default; fastest products on CPU) or ``torch.sparse_coo``.
    dtype
        Value dtype.
    device
        Target device.

    Returns
    -------
    Sparse tensor of the same shape and non-zeros as ``adj``.

    Examples
    --------
    >>> import scipy.sparse as sp, torch
    >>> from scomics_ext.module import to_torch_sparse
    >>> a = to_torch_sparse(sp.eye(3, format="csr"))
    >>> (a @ torch.ones(3, 1)).squeeze(1).tolist()
    [1.0, 1.0, 1.0]
    """
    csr = sparse.csr_matrix(adj, copy=True)
    csr.sum_duplicates()
    csr.sort_indices()
    crow = torch.as_tensor(csr.indptr.astype(np.int64), device=device)
    col = torch.as_tensor(csr.indices.astype(np.int64), device=device)
    val = torch.as_tensor(csr.data, dtype=dtype, device=device)
    if layout == torch.sparse_csr:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, col, val, csr.shape, check_invariants=False)
    if layout == torch.sparse_coo:
        row = torch.repeat_interleave(
            torch.arange(csr.shape[0], device=device), torch.diff(crow), output_size=col.numel()
        )
        return torch.sparse_coo_tensor(
            torch.stack([row, col]), val, csr.shape, is_coalesced=True, check_invariants=False
        )
    raise ValueError(f"layout must be torch.sparse_csr or torch.sparse_coo, got {layout}")


# ------------------------------------------------------------------------------------------------------
# sparse x dense product, differentiable w.r.t. the edge values and the dense matrix
# ------------------------------------------------------------------------------------------------------
def _edge_inner(ei: EdgeIndex, a: Tensor, b: Tensor) -> Tensor:
    """``(a[row_e] * b[col_e]).sum()`` for every edge ``e``, without an (n_edges, d) temporary."""
    pattern = _csr(ei.crow, ei.col, torch.ones(ei.n_edges, dtype=a.dtype, device=a.device), ei.n_nodes)
    try:
        return torch.sparse.sampled_addmm(pattern, a, b.T, beta=0.0).values()
    except (RuntimeError, NotImplementedError):  # pragma: no cover - backends without sampled_addmm
        out = torch.empty(ei.n_edges, dtype=a.dtype, device=a.device)
        for s in range(0, ei.n_edges, _CHUNK):
            r, c = ei.row[s : s + _CHUNK], ei.col[s : s + _CHUNK]
            out[s : s + _CHUNK] = (a[r] * b[c]).sum(1)
        return out


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, ei: EdgeIndex) -> Tensor:  # type: ignore[override]
        ctx.ei = ei
        ctx.save_for_backward(values, x)
        return _csr(ei.crow, ei.col, values, ei.n_nodes) @ x

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        values, x = ctx.saved_tensors
        ei: EdgeIndex = ctx.ei
        grad_out = grad_out.contiguous()
        grad_values = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_values = _edge_inner(ei, grad_out, x)
        if ctx.needs_input_grad[1]:
            p = ei.transpose_perm
            grad_x = _csr(ei.transpose_crow, ei.row[p], values[p], ei.n_nodes) @ grad_out
        return grad_values, grad_x, None


def spmm(structure: EdgeIndex, values: Tensor, x: Tensor) -> Tensor:
    """Sparse-dense product ``A @ x`` with ``A`` given by a structure and edge values.

    Differentiable w.r.t. ``values`` and ``x``. The forward pass and the gradient w.r.t. ``x`` use CSR
    products; the gradient w.r.t. ``values`` (``<grad_out[row_e], x[col_e]>``) is a sampled product on
    the same sparsity pattern, so no ``(n_edges, d)`` or ``(N, N)`` temporary is created.

    Parameters
    ----------
    structure
        Graph structure with ``N`` nodes.
    values
        Edge values, shape ``(structure.n_edges,)``, same dtype as ``x``.
    x
        Dense matrix, shape ``(N, d)``.

    Returns
    -------
    Dense tensor of shape ``(N, d)``.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import EdgeIndex, spmm
    >>> ei = EdgeIndex(torch.tensor([0, 1]), torch.tensor([1, 0]), n_nodes=2)
    >>> spmm(ei, torch.tensor([2.0, 3.0]), torch.eye(2)).tolist()
    [[0.0, 2.0], [3.0, 0.0]]
    """
    if values.shape != (structure.n_edges,):
        raise ValueError(f"values must have shape ({structure.n_edges},), got {tuple(values.shape)}")
    if x.ndim != 2 or x.shape[0] != structure.n_nodes:
        raise ValueError(f"x must have shape ({structure.n_nodes}, d), got {tuple(x.shape)}")
    if values.dtype != x.dtype:
        values = values.to(x.dtype)
    return _SpMM.apply(values, x.contiguous(), structure)


def sym_normalize(
    structure: EdgeIndex, weights: Tensor, *, self_loop_weight: float = 1.0, eps: float = 1e-12
) -> tuple[EdgeIndex, Tensor]:
    """Symmetric normalisation ``D^-1/2 (A + s I) D^-1/2`` on an edge list.

    ``D`` holds the row sums of ``A + s I``; with a symmetric ``A`` (the usual case) row and column sums
    agree. Differentiable w.r.t. ``weights`` (degrees are computed with ``index_add``).

    Parameters
    ----------
    structure
        Graph structure without self loops.
    weights
        Non-negative edge weights, shape ``(structure.n_edges,)``.
    self_loop_weight
        Weight ``s`` of the added self loops (1 gives the GCN renormalisation trick).
    eps
        Lower bound on degrees (only matters if ``self_loop_weight`` is 0 and a node is isolated).

    Returns
    -------
    structure
        The structure with self loops (``n_edges + N`` edges, see :meth:`EdgeIndex.with_self_loops`).
    values
        Normalised values on that structure.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import EdgeIndex, sym_normalize
    >>> ei = EdgeIndex(torch.tensor([0, 1]), torch.tensor([1, 0]), n_nodes=2)
    >>> loops, v = sym_normalize(ei, torch.ones(2))
    >>> loops.to_sparse(v).to_dense().round(decimals=4).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    if weights.shape != (structure.n_edges,):
        raise ValueError(f"weights must have shape ({structure.n_edges},), got {tuple(weights.shape)}")
    loops, perm = structure.with_self_loops()
    n = structure.n_nodes
    deg = torch.full((n,), float(self_loop_weight), dtype=weights.dtype, device=weights.device)
    deg = deg.index_add(0, structure.row, weights)
    deg = deg.clamp_min(eps)
    dinv = 1.0 / deg.sqrt()
    off = weights * dinv[structure.row] * dinv[structure.col]
    diag = self_loop_weight / deg
    return loops, torch.cat([off, diag])[perm]


def union_edges(
    structures: Sequence[EdgeIndex], values: Sequence[Tensor] | None = None
) -> tuple[EdgeIndex, list[Tensor], list[Tensor]]:
    """Union of several edge sets on the same nodes, with every graph's values aligned to it.

    Parameters
    ----------
    structures
        Structures on the same number of nodes.
    values
        Optional values per structure; missing edges get 0 in the aligned values.

    Returns
    -------
    union
        Structure of the union (row-major, no duplicates).
    aligned
        Per input, its values on the union edges (zeros where the edge is absent; ones if ``values``
        was not given).
    positions
        Per input, the position of each of its edges in the union (``aligned[i][positions[i]]`` are its
        values in its own order).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import EdgeIndex, union_edges
    >>> a = EdgeIndex(torch.tensor([0]), torch.tensor([1]), n_nodes=3)
    >>> b = EdgeIndex(torch.tensor([0, 1]), torch.tensor([1, 2]), n_nodes=3)
    >>> u, (va, vb), _ = union_edges([a, b])
    >>> u.n_edges, va.tolist(), vb.tolist()
    (2, [1.0, 0.0], [1.0, 1.0])
    """
    if not structures:
        raise ValueError("need at least one structure")
    n = structures[0].n_nodes
    if any(s.n_nodes != n for s in structures):
        raise ValueError("all structures must have the same number of nodes")
    device = structures[0].device
    keys = [s.row * n + s.col for s in structures]
    ukeys = torch.unique(torch.cat(keys))  # sorted
    union = EdgeIndex(ukeys // n, ukeys % n, n, assume_sorted=True)
    aligned, positions = [], []
    for i, (s, k) in enumerate(zip(structures, keys)):
        pos = torch.searchsorted(ukeys, k)
        v = torch.ones(s.n_edges, device=device) if values is None else values[i]
        out = torch.zeros(union.n_edges, dtype=v.dtype, device=device).index_put((pos,), v)
        aligned.append(out)
        positions.append(pos)
    return union, aligned, positions
