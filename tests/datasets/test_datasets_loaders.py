"""Loaders: the real data (``shared_data``) and the download path, exercised offline with file:// URLs."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import h5py
import mudata
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

import scomics_ext as sx
from scomics_ext.datasets import _download

SIM_SIZES = {"background": 432, "factor1": 180, "factor2": 288, "factor3": 216, "factor4": 180}
HLN_SIZES = [1188, 797, 753, 320, 204, 74, 60, 57, 23, 8]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_counts(X) -> bool:
    vals = X.data if sparse.issparse(X) else np.asarray(X)
    return bool(np.all(vals >= 0) and np.array_equal(vals, np.round(vals)))


@pytest.fixture
def registry(monkeypatch):
    """Point a registry entry at a local file:// copy: ``registry(key, file, known_hash=...)``."""

    def point(key: str, file: Path, *, known_hash: str | None = "auto") -> None:
        if known_hash == "auto":
            known_hash = f"sha256:{_sha256(file)}"
        old = _download.REGISTRY[key]
        new = _download.Remote(url=file.resolve().as_uri(), known_hash=known_hash, fname=old.fname)
        monkeypatch.setitem(_download.REGISTRY, key, new)

    return point


# ------------------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def untouched(shared_data):
    """Fail if any real-data file changed while the loaders read it."""
    files = sorted(p for p in shared_data.rglob("*") if p.is_file())
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in files}
    yield shared_data
    assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in files} == before


@pytest.mark.realdata
@pytest.mark.parametrize("sub", ["", "spatialglue_simulation"])
def test_spatialglue_simulation_real(untouched, sub):
    mdata = sx.datasets.spatialglue_simulation(untouched / sub if sub else untouched)
    assert isinstance(mdata, mudata.MuData)
    assert list(mdata.mod) == ["rna", "adt", "atac"]
    assert {k: m.shape for k, m in mdata.mod.items()} == {
        "rna": (1296, 1000),
        "adt": (1296, 100),
        "atac": (1296, 1000),
    }
    assert mdata.obs["truth"].value_counts().to_dict() == SIM_SIZES
    # the join is by obs name: compare spot by spot with the CSV, whatever the row order
    gt = pd.read_csv(untouched / "spatialglue_simulation" / "ground_truth.csv", dtype={"obs_name": str})
    expected = gt.set_index("obs_name")["gt_name"]
    assert np.array_equal(mdata.obs["truth"].astype(str).to_numpy(), expected.loc[mdata.obs_names].to_numpy())
    assert np.array_equal(
        mdata.obs["gt_label"].to_numpy(), gt.set_index("obs_name").loc[mdata.obs_names, "gt_label"]
    )
    assert not mdata.obs_names.astype(int).is_monotonic_increasing  # shuffled, as published
    for mod in mdata.mod.values():
        assert mod.obs_names.equals(mdata.obs_names)
        assert np.array_equal(mod.obs["truth"].astype(str), mdata.obs["truth"].astype(str))
        assert mod.obsm["spatial"].shape == (1296, 2)
        assert _is_counts(mod.X)
    assert mdata.obsm["spatial"].shape == (1296, 2)
    assert mdata.mod["rna"].var_names.is_unique
    assert mdata.mod["rna"].var_names[0] == "rna_0"


@pytest.mark.realdata
def test_spatialglue_simulation_truth_from_spatial_factors(untouched, tmp_path):
    """Without ground_truth.csv the classes come from obsm['spfac'] and agree with the CSV."""
    folder = tmp_path / "sim"
    folder.mkdir()
    for f in ("adata_RNA.h5ad", "adata_ADT.h5ad", "adata_ATAC.h5ad"):
        (folder / f).symlink_to(untouched / "spatialglue_simulation" / f)
    derived = sx.datasets.spatialglue_simulation(folder)
    joined = sx.datasets.spatialglue_simulation(untouched)
    assert np.array_equal(derived.obs["truth"].astype(str), joined.obs["truth"].astype(str))


@pytest.mark.realdata
def test_human_lymph_node_real(untouched):
    mdata = sx.datasets.human_lymph_node(untouched)
    assert list(mdata.mod) == ["adt"]
    adt = mdata.mod["adt"]
    assert adt.shape == (3484, 31)
    assert sorted(mdata.obs["truth"].value_counts().tolist(), reverse=True) == HLN_SIZES
    assert np.array_equal(mdata.obs["truth"].astype(str), adt.obs["cluster"].astype(str))
    assert "cluster" in mdata.obs
    assert "cluster" in adt.obs
    assert adt.obsm["spatial"].shape == (3484, 2)
    assert adt.obsm["spatial"].dtype == np.float64
    assert mdata.obsm["spatial"].shape == (3484, 2)
    assert _is_counts(adt.X)
    # the file itself works too
    single = sx.datasets.human_lymph_node(untouched / "hln_a1_adt" / "adata_ADT.h5ad")
    assert list(single.mod) == ["adt"]
    assert single.n_obs == 3484


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("loader", "sub", "shape"),
    [
        ("mouse_olfactory_bulb", "st_mouse_olfactory_bulb", (262, 16218)),
        ("human_melanoma", "st_human_melanoma", (279, 15666)),
    ],
)
def test_st_arrays_real(untouched, loader, sub, shape):
    fn = getattr(sx.datasets, loader)
    for path in (untouched, untouched / sub):
        adata = fn(path)
        assert adata.shape == shape
        assert sparse.isspmatrix_csr(adata.X)
        assert adata.X.dtype == np.float32
        assert _is_counts(adata.X)
        coords = adata.obsm["spatial"]
        assert coords.shape == (shape[0], 2)
        assert np.isfinite(coords).all()
        assert len(np.unique(coords, axis=0)) == shape[0]
        assert adata.uns["dataset"]["name"] == loader


@pytest.mark.realdata
def test_baron_pancreas_real(untouched):
    adata = sx.datasets.baron_pancreas(untouched)
    assert adata.shape == (2142, 20125)
    counts = adata.obs["cell_type"].value_counts()
    assert len(counts) == 14
    assert counts["beta"] == 623
    assert counts.min() == 2
    assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert np.array_equal(adata.obs["cell_type"].astype(str), adata.obs["cell_type1"].astype(str))
    assert "donor" in adata.obs
    assert sparse.isspmatrix_csr(adata.X)
    assert _is_counts(adata.X)


@pytest.mark.realdata
def test_worm_neurons_real(untouched):
    adata = sx.datasets.worm_neurons(untouched / "worm_neuron_cao" / "worm_neuron.h5ad")
    assert adata.shape == (4186, 13488)
    counts = adata.obs["cell_type"].value_counts()
    assert len(counts) == 10
    assert counts.max() == 1015
    assert counts.min() == 70
    assert sparse.isspmatrix_csr(adata.X)


# ---------------------------------------------------------------------------------- download paths
def test_registry_entries_are_well_formed():
    for key, remote in _download.REGISTRY.items():
        assert remote.fname
        if remote.url is None:
            assert "path=" in remote.instructions, key
            continue
        assert remote.url.startswith("https://"), key
        assert remote.known_hash is None or remote.known_hash.split(":")[0] in ("md5", "sha256"), key


def test_spatialglue_simulation_without_path_explains_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Google Drive.*path="):
        sx.datasets.spatialglue_simulation(cache_dir=tmp_path)


def _mob_table(path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    spots = [
        f"{x + 0.01 * i:.3f}x{y:.3f}" for i, (x, y) in enumerate([(1, 2), (1, 3), (2, 2), (2, 3), (3, 4)])
    ]
    df = pd.DataFrame(rng.poisson(2, size=(5, 4)), index=spots, columns=["Nrf1", "Zbtb5", "Ccnl1", "Bbs1"])
    df.to_csv(path)
    return df


def test_mouse_olfactory_bulb_download_path(tmp_path, registry):
    src = tmp_path / "mirror" / "Rep11_MOB_0.csv"
    src.parent.mkdir()
    df = _mob_table(src)
    registry("mouse_olfactory_bulb", src)
    cache = tmp_path / "cache"
    adata = sx.datasets.mouse_olfactory_bulb(cache_dir=cache)
    assert (cache / "Rep11_MOB_0.csv").is_file()
    assert adata.shape == (5, 4)
    assert list(adata.var_names) == list(df.columns)
    assert np.array_equal(adata.X.toarray(), df.to_numpy(dtype=np.float32))
    assert np.allclose(adata.obsm["spatial"][:, 1], [2, 3, 2, 3, 4])
    src.unlink()  # cached: no second download
    assert sx.datasets.mouse_olfactory_bulb(cache_dir=cache).shape == (5, 4)


def test_download_with_wrong_hash_fails(tmp_path, registry):
    src = tmp_path / "Rep11_MOB_0.csv"
    _mob_table(src)
    registry("mouse_olfactory_bulb", src, known_hash="sha256:" + "0" * 64)
    with pytest.raises(ValueError, match=r"(?i)hash"):
        sx.datasets.mouse_olfactory_bulb(cache_dir=tmp_path / "cache")


def test_human_melanoma_download_path_genes_by_spots_table(tmp_path, registry):
    """The original ST tables are genes x spots with 'SYMBOL ENSG' gene names (R adds an 'X' to spots)."""
    df = pd.DataFrame(
        [[1, 0, 3], [0, 2, 5]],
        index=["ANXA2 ENSG00000182718", "PPP6C ENSG00000119414"],
        columns=["X7x15", "X7x16", "X8x15"],
    )
    src = tmp_path / "melanoma.tsv.gz"
    with gzip.open(src, "wt") as fh:
        df.to_csv(fh, sep="\t")
    registry("human_melanoma", src, known_hash=None)
    adata = sx.datasets.human_melanoma(cache_dir=tmp_path / "cache")
    assert adata.shape == (3, 2)
    assert list(adata.var_names) == ["ANXA2", "PPP6C"]
    assert np.array_equal(adata.obsm["spatial"], [[7, 15], [7, 16], [8, 15]])
    assert np.array_equal(adata.X.toarray(), df.T.to_numpy(dtype=np.float32))


def _baron_csv(donor: str, n: int) -> bytes:
    rng = np.random.default_rng(len(donor))
    df = pd.DataFrame(rng.poisson(1, size=(n, 3)), columns=["A1BG", "INS", "GCG"])
    df.insert(0, "assigned_cluster", ["beta", "alpha", "beta", "delta"][:n])
    df.insert(0, "barcode", [f"bc{i}" for i in range(n)])
    df.index = [f"{donor}_lib1.final_cell_{i:04d}" for i in range(n)]
    return gzip.compress(df.to_csv().encode())


def test_baron_pancreas_download_path(tmp_path, registry):
    src = tmp_path / "GSE84133_RAW.tar"
    members = {
        "GSM2230757_human1_umifm_counts.csv.gz": _baron_csv("human1", 4),
        "GSM2230758_human2_umifm_counts.csv.gz": _baron_csv("human2", 3),
        "GSM2230761_mouse1_umifm_counts.csv.gz": b"not read",
    }
    with tarfile.open(src, "w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    registry("baron_pancreas", src)
    adata = sx.datasets.baron_pancreas(cache_dir=tmp_path / "cache")
    assert adata.shape == (7, 3)
    assert adata.obs["donor"].tolist() == ["human1"] * 4 + ["human2"] * 3
    assert adata.obs["cell_type"].value_counts().to_dict() == {"beta": 4, "alpha": 2, "delta": 1}
    assert "assigned_cluster" in adata.obs
    assert sparse.isspmatrix_csr(adata.X)


def test_worm_neurons_download_path(tmp_path, registry):
    src = tmp_path / "worm_neuron_cell.h5"
    X = np.random.default_rng(0).poisson(1, size=(6, 5)).astype(np.float64)
    with h5py.File(src, "w") as f:
        f["X"] = X
        f["Y"] = np.array([0, 0, 1, 2, 2, 2])
    registry("worm_neurons", src)
    adata = sx.datasets.worm_neurons(cache_dir=tmp_path / "cache")
    assert adata.shape == (6, 5)
    assert np.array_equal(adata.X.toarray(), X)
    assert adata.obs["cell_type"].astype(str).tolist() == ["type_1"] * 2 + ["type_2"] + ["type_3"] * 3


def _hln_modality(path: Path, names: list[str], n_vars: int, prefix: str) -> Path:
    rng = np.random.default_rng(n_vars)
    a = AnnData(
        X=sparse.csr_matrix(rng.poisson(3, size=(len(names), n_vars)).astype(np.float32)),
        obs=pd.DataFrame(index=names),
        var=pd.DataFrame(index=[f"{prefix}{j}" for j in range(n_vars)]),
    )
    a.obsm["spatial"] = rng.integers(0, 50, size=(len(names), 2))
    a.write_h5ad(path)
    return path


def test_human_lymph_node_download_path(tmp_path, registry):
    names = [f"AAAC{i}-1" for i in range(6)]
    src = tmp_path / "Data_SpatialGlue.zip"
    annotation = pd.DataFrame({"Barcode": names[::-1], "manual-anno": ["cortex"] * 4 + ["hilum"] * 2})
    rna = _hln_modality(tmp_path / "rna.h5ad", names, 7, "G")
    adt = _hln_modality(tmp_path / "adt.h5ad", names[::-1], 3, "P")
    with zipfile.ZipFile(src, "w") as zf:
        zf.write(rna, "Data_SpatialGlue/Dataset11_Human_Lymph_Node_A1/adata_RNA.h5ad")
        zf.write(adt, "Data_SpatialGlue/Dataset11_Human_Lymph_Node_A1/adata_ADT.h5ad")
        zf.writestr(
            "Data_SpatialGlue/Dataset11_Human_Lymph_Node_A1/annotation.csv", annotation.to_csv(index=False)
        )
        zf.writestr("Data_SpatialGlue/Dataset1_Mouse_Spleen1/adata_RNA.h5ad", b"other dataset")
    registry("human_lymph_node", src)
    mdata = sx.datasets.human_lymph_node(cache_dir=tmp_path / "cache")
    assert list(mdata.mod) == ["rna", "adt"]
    assert mdata.mod["adt"].obs_names.equals(mdata.mod["rna"].obs_names)  # ADT reordered to the RNA order
    expected = annotation.set_index("Barcode")["manual-anno"].loc[mdata.obs_names]
    assert np.array_equal(mdata.obs["truth"].astype(str), expected.to_numpy())
    assert np.array_equal(mdata.mod["adt"].obs["truth"].astype(str), expected.to_numpy())
    assert mdata.obsm["spatial"].dtype == np.float64
    extracted = tmp_path / "cache" / "spatialglue_human_lymph_node_A1"
    assert sorted(p.name for p in extracted.iterdir()) == [
        "adata_ADT.h5ad",
        "adata_RNA.h5ad",
        "annotation.csv",
    ]
    with pytest.raises(FileNotFoundError, match="D1"):
        sx.datasets.human_lymph_node(section="D1", cache_dir=tmp_path / "cache")


def test_human_lymph_node_without_labels_warns(tmp_path):
    names = [f"B{i}" for i in range(4)]
    _hln_modality(tmp_path / "adata_ADT.h5ad", names, 3, "P")
    with pytest.warns(UserWarning, match="no annotation"):
        mdata = sx.datasets.human_lymph_node(tmp_path)
    assert "truth" not in mdata.obs


@pytest.mark.parametrize(
    "loader",
    [
        "spatialglue_simulation",
        "human_lymph_node",
        "mouse_olfactory_bulb",
        "human_melanoma",
        "baron_pancreas",
        "worm_neurons",
    ],
)
def test_loaders_report_missing_paths(tmp_path, loader):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        getattr(sx.datasets, loader)(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="found"):
        getattr(sx.datasets, loader)(tmp_path / "empty")


def test_human_lymph_node_bad_section():
    with pytest.raises(ValueError, match="section"):
        sx.datasets.human_lymph_node(section="B2")
