"""Loaders of the public datasets used to evaluate CRCT, DARLC and scDET.

Every loader reads a local copy when ``path`` is given (a file, the dataset's folder, or a data root
holding that folder) and otherwise downloads the public original into the cache (pooch). The result
follows the package conventions: counts in ``X`` (CSR float32 where sparse), spatial coordinates in
``obsm["spatial"]``, ground truth in ``obs["truth"]`` (spatial domains) or ``obs["cell_type"]``
(cells), original columns kept. Files are only read, never modified.
"""

from __future__ import annotations

import gzip
import re
import tarfile
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import anndata as ad
import mudata
import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

from scomics_ext._constants import Key
from scomics_ext._utils import as_categorical

from ._download import REGISTRY, cache_folder, fetch

PathLike = str | Path

_MODALITY_FILES = {"rna": "adata_RNA.h5ad", "adt": "adata_ADT.h5ad", "atac": "adata_ATAC.h5ad"}
_SPOT_NAME = re.compile(r"^X?(-?\d+(?:\.\d+)?)x(-?\d+(?:\.\d+)?)$")


# ---------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------
def _existing(path: PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"`path` {str(p)!r} does not exist ({what}).")
    return p


def _resolve_dir(path: PathLike, subdirs: Sequence[str], markers: Sequence[str], what: str) -> Path:
    """The folder among ``path`` and ``path/<subdir>`` that holds at least one of ``markers``."""
    p = _existing(path, what)
    for base in (p, *(p / s for s in subdirs)):
        if base.is_dir() and any((base / m).is_file() for m in markers):
            return base
    raise FileNotFoundError(
        f"No {what} found in {str(p)!r}: expected one of {list(markers)} there or in a subfolder "
        f"{list(subdirs)}."
    )


def _resolve_file(path: PathLike, subdirs: Sequence[str], names: Sequence[str], what: str) -> Path:
    """``path`` itself if it is a file, else the first of ``names`` in ``path`` or ``path/<subdir>``."""
    p = _existing(path, what)
    if p.is_file():
        return p
    for base in (p, *(p / s for s in subdirs)):
        for name in names:
            if (base / name).is_file():
                return base / name
    raise FileNotFoundError(
        f"No {what} found in {str(p)!r}: expected a file named one of {list(names)} there or in a subfolder "
        f"{list(subdirs)}, or pass the file itself."
    )


def _counts_csr(X) -> sparse.csr_matrix:
    """Counts as CSR float32 (sorted indices)."""
    X = sparse.csr_matrix(X) if not sparse.issparse(X) else X.tocsr()
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    X.sort_indices()
    return X


def _coords_from_names(names: Iterable[str]) -> np.ndarray | None:
    """Coordinates encoded in spot names ``"<x>x<y>"`` (ST arrays; R may prefix an ``X``), else ``None``."""
    out = []
    for n in names:
        m = _SPOT_NAME.match(str(n).strip())
        if m is None:
            return None
        out.append((float(m.group(1)), float(m.group(2))))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def _set_spatial(adata: AnnData, what: str) -> None:
    """Put float spatial coordinates in ``obsm["spatial"]`` (from obsm, ``obs`` x/y, or spot names)."""
    key = Key.obsm.spatial
    if key in adata.obsm:
        coords = np.asarray(adata.obsm[key], dtype=np.float64)
    elif {"x", "y"} <= set(adata.obs.columns):
        coords = adata.obs[["x", "y"]].to_numpy(dtype=np.float64)
    else:
        coords = _coords_from_names(adata.obs_names)
        if coords is None:
            raise ValueError(
                f"{what}: no spatial coordinates found (obsm['spatial'], obs['x'/'y'] or 'XxY' spot names)."
            )
    adata.obsm[key] = coords


def _add_info(obj: AnnData | mudata.MuData, name: str, source: str, citation: str) -> None:
    obj.uns["dataset"] = {"name": name, "source": source, "citation": citation}


def _first_column(frames: Iterable[pd.DataFrame], candidates: Sequence[str]) -> tuple[str, pd.Series] | None:
    for col in candidates:
        for df in frames:
            if col in df.columns:
                return col, df[col]
    return None


def _build_mudata(adatas: dict[str, AnnData], what: str) -> mudata.MuData:
    """MuData of modalities that hold the same observations (reordered to the first's order)."""
    names = list(adatas)
    ref = adatas[names[0]].obs_names
    for name in names[1:]:
        other = adatas[name]
        if not other.obs_names.equals(ref):
            if len(other.obs_names) != len(ref) or not other.obs_names.isin(ref).all():
                raise ValueError(
                    f"{what}: modalities {names[0]!r} and {name!r} do not hold the same observations "
                    f"({len(ref)} vs {other.n_obs}, {int(other.obs_names.isin(ref).sum())} shared)."
                )
            adatas[name] = other[ref].copy()
    all_vars = pd.Index(np.concatenate([a.var_names.to_numpy(dtype=object) for a in adatas.values()]))
    if len(adatas) > 1 and not all_vars.is_unique:
        # e.g. the simulation's RNA and ATAC features are both named "0", "1", ...: prefix the modality
        for name, adata in adatas.items():
            adata.var["original_name"] = adata.var_names.to_numpy()
            adata.var_names = [f"{name}_{v}" for v in adata.var_names]
    with mudata.set_options(pull_on_update=False):
        mdata = mudata.MuData(adatas)
    mdata.obsm[Key.obsm.spatial] = np.asarray(adatas[names[0]].obsm[Key.obsm.spatial], dtype=np.float64)
    return mdata


def _set_truth(mdata: mudata.MuData, labels: pd.Series, *, original: str | None = None) -> None:
    """Write ``obs["truth"]`` (and the original column) into ``mdata.obs`` and every modality."""
    labels = labels.reindex(mdata.obs_names)
    truth = as_categorical(labels.to_numpy(dtype=object), index=mdata.obs_names)
    mdata.obs[Key.truth] = truth.array
    if original is not None and original != Key.truth:
        mdata.obs[original] = labels.array
    for mod in mdata.mod.values():
        mod.obs[Key.truth] = truth.reindex(mod.obs_names).array


def _read_h5ad(path: Path) -> AnnData:
    logg.info(f"reading {path}")
    return ad.read_h5ad(path)


# ---------------------------------------------------------------------------------------------------
# SpatialGlue simulation
# ---------------------------------------------------------------------------------------------------
def spatialglue_simulation(
    path: PathLike | None = None, *, cache_dir: PathLike | None = None
) -> mudata.MuData:
    """The spatial multi-omics simulation of SpatialGlue (RNA + ADT + ATAC, 1,296 spots, 5 classes).

    The triplet simulation of Long et al. (2024), after Townes et al.'s "ggblocks": a 36x36 grid with
    a background and four block patterns, negative-binomial counts of 1,000 genes, 100 proteins and
    1,000 peaks. It is the "Simulation" benchmark of SpatialGlue, PRAGA and CRCT.

    Source: SpatialGlue tutorial 5 (https://spatialglue-tutorials.readthedocs.io), data in the Google
    Drive folder https://drive.google.com/drive/folders/1PsYs62vbA_VLxvMZOV82GZ5Dr7btNY3O. Google Drive
    folders cannot be downloaded automatically, so this loader never downloads: pass the folder with
    the files as ``path`` (or put them in ``<cache_dir>/spatialglue_simulation``).

    Parameters
    ----------
    path
        Folder holding ``adata_RNA.h5ad``, ``adata_ADT.h5ad`` and ``adata_ATAC.h5ad`` (and optionally
        ``ground_truth.csv`` with columns ``obs_name``, ``gt_label``, ``gt_name``), or a data root
        with such a folder named ``spatialglue_simulation``.
    cache_dir
        Where to look when ``path`` is ``None`` (default :attr:`scomics_ext.settings.datasetdir`).

    Returns
    -------
    mudata.MuData
        Modalities ``"rna"``, ``"adt"``, ``"atac"`` (``X`` and ``layers["counts"]`` as published;
        feature names prefixed by the modality, e.g. ``"rna_0"``, because they collide),
        ``obsm["spatial"]`` everywhere, and ``obs["truth"]`` (in ``mdata.obs`` and every modality):
        ``"background"``, ``"factor1"`` ... ``"factor4"`` (432, 180, 288, 216, 180 spots), joined
        **by obs name** from ``ground_truth.csv`` (the obs order of the files is shuffled), or
        derived from ``obsm["spfac"]`` (the one-hot spatial factors) when the CSV is absent;
        ``obs["gt_label"]`` holds the integer labels.

    Raises
    ------
    FileNotFoundError
        If ``path`` is ``None`` and the files are not in the cache (the message says where to get them).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> mdata = sx.datasets.spatialglue_simulation("data/spatialglue_simulation")  # doctest: +SKIP
    >>> mdata.obs["truth"].value_counts()  # doctest: +SKIP
    """
    what = "SpatialGlue simulation"
    if path is None:
        cached = cache_folder(cache_dir) / REGISTRY["spatialglue_simulation"].fname
        if cached.is_dir() and (cached / _MODALITY_FILES["rna"]).is_file():
            path = cached
        else:
            fetch("spatialglue_simulation", cache_dir)  # raises with instructions
    folder = _resolve_dir(path, ["spatialglue_simulation"], list(_MODALITY_FILES.values()), what)
    missing = [f for f in _MODALITY_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{what}: {str(folder)!r} lacks {missing}; all three modalities are needed.")
    adatas = {}
    for name, fname in _MODALITY_FILES.items():
        adata = _read_h5ad(folder / fname)
        adata.obs_names = adata.obs_names.astype(str)
        _set_spatial(adata, f"{what} ({fname})")
        adatas[name] = adata
    mdata = _build_mudata(adatas, what)

    gt_file = folder / "ground_truth.csv"
    if gt_file.is_file():
        gt = pd.read_csv(gt_file, dtype={"obs_name": str}).set_index("obs_name")
        absent = ~mdata.obs_names.isin(gt.index)
        if absent.any():
            raise ValueError(
                f"{what}: {int(absent.sum())} spots (e.g. {list(mdata.obs_names[absent][:3])}) are missing from "
                f"{str(gt_file)!r}."
            )
        gt = gt.loc[mdata.obs_names]
        labels = gt["gt_name"] if "gt_name" in gt else gt["gt_label"].astype(str)
        gt_label = gt["gt_label"].to_numpy() if "gt_label" in gt else None
    else:
        spfac = np.asarray(mdata.mod["rna"].obsm["spfac"]) if "spfac" in mdata.mod["rna"].obsm else None
        if spfac is None:
            raise FileNotFoundError(
                f"{what}: no ground_truth.csv in {str(folder)!r} and no obsm['spfac'] to derive the classes from."
            )
        gt_label = np.where(spfac.sum(axis=1) > 0, spfac.argmax(axis=1) + 1, 0)
        labels = pd.Series(
            np.where(gt_label == 0, "background", np.char.add("factor", gt_label.astype(str))),
            index=mdata.obs_names,
        )
    _set_truth(mdata, pd.Series(labels.to_numpy(), index=mdata.obs_names))
    if gt_label is not None:
        mdata.obs["gt_label"] = np.asarray(gt_label, dtype=np.int64)
    _add_info(
        mdata,
        "spatialglue_simulation",
        "https://drive.google.com/drive/folders/1PsYs62vbA_VLxvMZOV82GZ5Dr7btNY3O",
        "Long et al. (2024) Nat. Methods 21:1658, doi:10.1038/s41592-024-02316-4",
    )
    return mdata


# ---------------------------------------------------------------------------------------------------
# Human lymph node (SpatialGlue, 10x Visium CytAssist RNA + protein)
# ---------------------------------------------------------------------------------------------------
_HLN_LABEL_COLUMNS = ("cluster", "manual-anno", "manual_anno", "annotation", "Annotation", "ground_truth")


def _hln_extract(zip_path: Path, section: str, dest: Path) -> Path:
    """Extract the section's files from SpatialGlue's Zenodo bundle (only those, once)."""
    suffix = f"human_lymph_node_{section}".lower()
    out = dest / f"spatialglue_human_lymph_node_{section}"
    with zipfile.ZipFile(zip_path) as zf:
        members = []
        for info in zf.infolist():
            p = PurePosixPath(info.filename)
            if info.is_dir() or "__MACOSX" in p.parts or len(p.parts) < 2:
                continue
            if p.parent.name.lower().endswith(suffix) and p.name in (
                _MODALITY_FILES["rna"],
                _MODALITY_FILES["adt"],
                "annotation.csv",
            ):
                members.append(info)
        if not any(m.filename.endswith(".h5ad") for m in members):
            raise FileNotFoundError(
                f"{str(zip_path)!r} holds no '*Human_Lymph_Node_{section}/adata_*.h5ad'; is it SpatialGlue's "
                "Data_SpatialGlue.zip?"
            )
        out.mkdir(parents=True, exist_ok=True)
        for info in members:
            target = out / PurePosixPath(info.filename).name
            if target.is_file() and target.stat().st_size == info.file_size:
                continue
            tmp = target.with_suffix(target.suffix + ".part")
            with zf.open(info) as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            tmp.replace(target)
    return out


def human_lymph_node(
    path: PathLike | None = None, *, section: str = "A1", cache_dir: PathLike | None = None
) -> mudata.MuData:
    """Human lymph node, 10x Visium CytAssist RNA + protein (SpatialGlue), with its manual annotation.

    Section A1 (3,484 spots; ~18k genes and 31 antibodies) is the human lymph node benchmark of
    SpatialGlue, PRAGA and CRCT; its 10 manually annotated regions are long-tailed (1,188 ... 8 spots).
    Section D1 is the second published section.

    Source: the SpatialGlue data bundle on Zenodo, https://zenodo.org/records/10362607
    (``Data_SpatialGlue.zip``, ~670 MB, md5 ``b766948c1136bb3af2f3e6e85dc81cfe``); only the
    section's ``adata_RNA.h5ad``, ``adata_ADT.h5ad`` (and ``annotation.csv`` if present) are
    extracted into the cache.

    Parameters
    ----------
    path
        A local copy: a folder holding ``adata_RNA.h5ad`` and/or ``adata_ADT.h5ad`` (whichever are
        there become the modalities; optionally ``annotation.csv`` with ``Barcode`` and ``manual-anno``
        columns), a data root with such a folder (``hln_a1_adt`` or ``*Human_Lymph_Node_<section>``),
        or a single ``.h5ad`` file (its modality is guessed from the name: ``ADT``/``protein`` -> ``"adt"``,
        otherwise ``"rna"``). ``None`` downloads the public original.
    section
        ``"A1"`` or ``"D1"`` (used when downloading or looking for the section's folder).
    cache_dir
        Download cache (default :attr:`scomics_ext.settings.datasetdir`).

    Returns
    -------
    mudata.MuData
        The modalities found (``"rna"``, ``"adt"``; raw counts in ``X``), ``obsm["spatial"]`` in
        every modality and in ``mdata.obsm``, and ``obs["truth"]`` (in ``mdata.obs`` and every
        modality) from the annotation column (``obs["cluster"]`` or ``manual-anno``), which is also
        kept under its original name. Without any annotation a warning is issued and
        ``obs["truth"]`` is absent.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> mdata = sx.datasets.human_lymph_node()  # doctest: +SKIP
    >>> mdata.obs["truth"].value_counts().head()  # doctest: +SKIP
    """
    if section not in ("A1", "D1"):
        raise ValueError(f"`section` must be one of ['A1', 'D1'], got {section!r}.")
    what = f"human lymph node {section}"
    if path is None:
        zip_path = fetch("human_lymph_node", cache_dir)
        path = _hln_extract(zip_path, section, cache_folder(cache_dir))
    p = _existing(path, what)
    if p.is_file():
        kind = "adt" if re.search(r"adt|protein", p.name, re.IGNORECASE) else "rna"
        files = {kind: p}
        folder = p.parent
    else:
        subdirs = [f"hln_{section.lower()}_adt", f"Dataset11_Human_Lymph_Node_{section}"]
        subdirs += [
            d.name
            for d in p.iterdir()
            if d.is_dir() and d.name.lower().endswith(f"lymph_node_{section}".lower())
        ]
        folder = _resolve_dir(p, subdirs, [_MODALITY_FILES["rna"], _MODALITY_FILES["adt"]], what)
        files = {
            k: folder / _MODALITY_FILES[k] for k in ("rna", "adt") if (folder / _MODALITY_FILES[k]).is_file()
        }
    adatas = {}
    for name, file in files.items():
        adata = _read_h5ad(file)
        adata.obs_names = adata.obs_names.astype(str)
        adata.var_names_make_unique()
        _set_spatial(adata, f"{what} ({file.name})")
        adatas[name] = adata
    mdata = _build_mudata(adatas, what)

    found = _first_column([a.obs for a in adatas.values()], _HLN_LABEL_COLUMNS)
    if found is not None:
        col, labels = found
        _set_truth(mdata, labels, original=col)
    elif (folder / "annotation.csv").is_file():
        anno = pd.read_csv(folder / "annotation.csv")
        barcode = "Barcode" if "Barcode" in anno.columns else anno.columns[0]
        col = next((c for c in _HLN_LABEL_COLUMNS if c in anno.columns), anno.columns[-1])
        labels = anno.assign(**{barcode: anno[barcode].astype(str)}).set_index(barcode)[col]
        labels = labels[~labels.index.duplicated()]
        _set_truth(mdata, labels, original=col)
    else:
        warnings.warn(f"{what}: no annotation found; obs['truth'] is not set.", UserWarning, stacklevel=2)
    _add_info(
        mdata,
        f"human_lymph_node_{section}",
        "https://zenodo.org/records/10362607",
        "Long et al. (2024) Nat. Methods 21:1658, doi:10.1038/s41592-024-02316-4",
    )
    return mdata


# ---------------------------------------------------------------------------------------------------
# Spatial Transcriptomics (ST) arrays: mouse olfactory bulb, melanoma
# ---------------------------------------------------------------------------------------------------
def _read_st_table(path: Path) -> AnnData:
    """A count table with ``"XxY"`` spot names (spots x genes, or genes x spots) as AnnData."""
    name = path.name.lower()
    sep = "\t" if ".tsv" in name or ".txt" in name else ","
    logg.info(f"reading {path}")
    df = pd.read_csv(path, sep=sep, index_col=0)
    if _coords_from_names(df.index) is None:
        if _coords_from_names(df.columns) is None:
            raise ValueError(f"{str(path)!r}: neither rows nor columns are 'XxY' spot names.")
        df = df.T
    genes = df.columns.astype(str)
    if len(genes) and all(" " in g for g in genes[: min(50, len(genes))]):
        genes = pd.Index([g.split(" ")[0] for g in genes])  # "SYMBOL ENSG..." -> SYMBOL
    X = sparse.csr_matrix(df.to_numpy(dtype=np.float32))
    coords = _coords_from_names(df.index)
    obs = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1]}, index=pd.Index(df.index.astype(str)))
    adata = AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))
    adata.var_names_make_unique()
    return adata


def _st_dataset(
    path: PathLike | None, cache_dir: PathLike | None, key: str, subdir: str, h5ad: str, what: str
) -> AnnData:
    file = fetch(key, cache_dir) if path is None else _resolve_file(path, [subdir], [h5ad], what)
    adata = _read_h5ad(file) if file.suffix == ".h5ad" else _read_st_table(file)
    adata.X = _counts_csr(adata.X)
    _set_spatial(adata, what)
    return adata


def mouse_olfactory_bulb(path: PathLike | None = None, *, cache_dir: PathLike | None = None) -> AnnData:
    """Mouse olfactory bulb, Spatial Transcriptomics replicate 11 (262 spots x 16,218 genes).

    Stahl et al. (2016), the classic benchmark of spatially variable genes (SpatialDE, SPARK, sepal).

    Source: ``Rep11_MOB_0.csv`` of the SpatialDE repository,
    https://github.com/Teichlab/SpatialDE/blob/master/Analysis/MouseOB/data/Rep11_MOB_0.csv
    (Git LFS, sha256 ``df7cb0b8...39b6c3e``), originally from https://www.spatialresearch.org.

    Parameters
    ----------
    path
        A local copy: an ``.h5ad`` file, a count table (``.csv``/``.tsv``, optionally gzipped, with
        ``"XxY"`` spot names), a folder holding ``mob.h5ad`` or a data root with
        ``st_mouse_olfactory_bulb/mob.h5ad``. ``None`` downloads the public original.
    cache_dir
        Download cache (default :attr:`scomics_ext.settings.datasetdir`).

    Returns
    -------
    anndata.AnnData
        Raw counts in ``X`` (CSR float32), the array coordinates in ``obsm["spatial"]`` and
        ``obs["x"]``/``obs["y"]``. No labels (gene clusters are unknown).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> adata = sx.datasets.mouse_olfactory_bulb()  # doctest: +SKIP
    >>> adata.shape  # doctest: +SKIP
    (262, 16218)
    """
    adata = _st_dataset(
        path, cache_dir, "mouse_olfactory_bulb", "st_mouse_olfactory_bulb", "mob.h5ad", "mouse olfactory bulb"
    )
    _add_info(
        adata,
        "mouse_olfactory_bulb",
        "https://github.com/Teichlab/SpatialDE/blob/master/Analysis/MouseOB/data/Rep11_MOB_0.csv",
        "Stahl et al. (2016) Science 353:78, doi:10.1126/science.aaf2403",
    )
    return adata


def human_melanoma(path: PathLike | None = None, *, cache_dir: PathLike | None = None) -> AnnData:
    """Human melanoma lymph-node metastasis, Spatial Transcriptomics (patient 1, replicate 1).

    Thrane et al. (2018), 279 spots x 15,666 genes on a ~21x25 array; a standard benchmark of
    spatial pattern methods (sepal, SPARK).

    Source: the processed copy in the sepal repository,
    https://github.com/almaan/sepal/blob/master/data/real/melanoma.tsv.gz (no published hash:
    ``known_hash=None``), made from ``ST_mel1_rep1`` of ``ST-Melanoma-Datasets_1.zip`` at
    https://www.spatialresearch.org.

    Parameters
    ----------
    path
        A local copy: an ``.h5ad`` file, a count table with ``"XxY"`` spot names, a folder holding
        ``melanoma.h5ad`` or a data root with ``st_human_melanoma/melanoma.h5ad``. ``None`` downloads.
    cache_dir
        Download cache (default :attr:`scomics_ext.settings.datasetdir`).

    Returns
    -------
    anndata.AnnData
        Raw counts in ``X`` (CSR float32), array coordinates in ``obsm["spatial"]`` and
        ``obs["x"]``/``obs["y"]``. No labels.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> adata = sx.datasets.human_melanoma()  # doctest: +SKIP
    >>> adata.shape  # doctest: +SKIP
    (279, 15666)
    """
    adata = _st_dataset(
        path, cache_dir, "human_melanoma", "st_human_melanoma", "melanoma.h5ad", "human melanoma"
    )
    _add_info(
        adata,
        "human_melanoma",
        "https://github.com/almaan/sepal/blob/master/data/real/melanoma.tsv.gz",
        "Thrane et al. (2018) Cancer Res. 78:5970, doi:10.1158/0008-5472.CAN-18-0747",
    )
    return adata


# ---------------------------------------------------------------------------------------------------
# Single-cell: Baron pancreas, Cao worm neurons
# ---------------------------------------------------------------------------------------------------
_BARON_MEMBER = re.compile(r"(GSM\d+)_(human\d+)_umifm_counts\.csv(\.gz)?$")


def _read_baron_csv(handle, donor: str, sample: str) -> AnnData:
    df = pd.read_csv(handle, index_col=0)
    meta_cols = [c for c in ("barcode", "assigned_cluster") if c in df.columns]
    if "assigned_cluster" not in meta_cols:
        raise ValueError(f"Baron pancreas {sample}: no 'assigned_cluster' column.")
    obs = df[meta_cols].astype(str)
    obs["donor"] = donor
    obs["sample"] = sample
    X = sparse.csr_matrix(df.drop(columns=meta_cols).to_numpy(dtype=np.float32))
    adata = AnnData(X=X, obs=obs, var=pd.DataFrame(index=df.columns.drop(meta_cols).astype(str)))
    adata.obs_names = adata.obs_names.astype(str)
    return adata


def _read_baron_raw(path: Path) -> AnnData:
    """The human samples of GEO GSE84133 (a ``GSE84133_RAW.tar`` or one ``*_umifm_counts.csv(.gz)``)."""
    parts = []
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                m = _BARON_MEMBER.search(member.name)
                if m is None or not member.isfile():
                    continue
                logg.info(f"reading {member.name}")
                with tar.extractfile(member) as fh:
                    if member.name.endswith(".gz"):
                        with gzip.open(fh, "rt") as handle:
                            parts.append(_read_baron_csv(handle, m.group(2), m.group(1)))
                    else:
                        parts.append(_read_baron_csv(fh, m.group(2), m.group(1)))
    else:
        m = _BARON_MEMBER.search(path.name)
        parts.append(_read_baron_csv(path, m.group(2) if m else "unknown", m.group(1) if m else path.name))
    if not parts:
        raise FileNotFoundError(f"{str(path)!r} holds no 'GSM*_human*_umifm_counts.csv.gz' member.")
    return ad.concat(parts, join="outer", merge="same") if len(parts) > 1 else parts[0]


def baron_pancreas(path: PathLike | None = None, *, cache_dir: PathLike | None = None) -> AnnData:
    """Human pancreas, Baron et al. (2016), inDrop: 8,569 cells of 4 donors, 14 cell types (long-tailed).

    The reference/query data of the "Xin -> Baron human" inter-dataset setting of scGAD and scDET.

    Source: GEO GSE84133, https://ftp.ncbi.nlm.nih.gov/geo/series/GSE84nnn/GSE84133/suppl/GSE84133_RAW.tar
    (no published hash: ``known_hash=None``); the four ``GSM*_human*_umifm_counts.csv.gz`` members
    are read (raw UMI counts and the authors' ``assigned_cluster``).

    Parameters
    ----------
    path
        A local copy: an ``.h5ad`` file (e.g. a subset, with ``obs["cell_type1"]``), the GEO tar or
        one of its human CSVs, a folder holding ``baron_human.h5ad`` or a data root with
        ``pancreas_baron_human/baron_human.h5ad``. ``None`` downloads the GEO original.
    cache_dir
        Download cache (default :attr:`scomics_ext.settings.datasetdir`).

    Returns
    -------
    anndata.AnnData
        Raw counts in ``X`` (CSR float32) and ``obs["cell_type"]`` (categorical, from
        ``cell_type1`` or ``assigned_cluster``); the original columns (``donor``,
        ``assigned_cluster``/``cell_type1``, ...) are kept.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> adata = sx.datasets.baron_pancreas()  # doctest: +SKIP
    >>> adata.obs["cell_type"].value_counts().head(3)  # doctest: +SKIP
    """
    what = "Baron human pancreas"
    if path is None:
        file = fetch("baron_pancreas", cache_dir)
    else:
        file = _resolve_file(path, ["pancreas_baron_human"], ["baron_human.h5ad", "GSE84133_RAW.tar"], what)
    adata = _read_h5ad(file) if file.suffix == ".h5ad" else _read_baron_raw(file)
    adata.X = _counts_csr(adata.X)
    found = _first_column([adata.obs], ("cell_type1", "assigned_cluster", "cell_type", "celltype"))
    if found is None:
        raise ValueError(f"{what}: no cell-type column (cell_type1/assigned_cluster) in {str(file)!r}.")
    adata.obs[Key.cell_type] = as_categorical(found[1].astype(object).to_numpy(), index=adata.obs_names).array
    _add_info(
        adata,
        "baron_pancreas",
        "https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE84133",
        "Baron et al. (2016) Cell Syst. 3:346, doi:10.1016/j.cels.2016.08.011",
    )
    return adata


def _read_xy_h5(path: Path) -> AnnData:
    """An scDeepCluster-style ``.h5`` with a count matrix ``X`` (cells x genes) and labels ``Y``."""
    import h5py

    logg.info(f"reading {path}")
    with h5py.File(path, "r") as f:
        if "X" not in f or "Y" not in f:
            raise ValueError(f"{str(path)!r} has no 'X'/'Y' datasets (keys: {list(f.keys())}).")
        y = np.asarray(f["Y"][()]).ravel()
        node = f["X"]
        if isinstance(node, h5py.Group):  # sparse (data/indices/indptr)
            shape = node.attrs.get("shape", node.attrs.get("h5sparse_shape"))
            if shape is None:
                raise ValueError(f"{str(path)!r}: the sparse group 'X' has no 'shape' attribute.")
            shape = tuple(int(v) for v in shape)
            X = sparse.csr_matrix((node["data"][()], node["indices"][()], node["indptr"][()]), shape=shape)
        else:
            n, step = node.shape[0], 256
            X = sparse.vstack(
                [
                    sparse.csr_matrix(np.asarray(node[i : i + step], dtype=np.float32))
                    for i in range(0, n, step)
                ],
                format="csr",
            )
    if X.shape[0] != y.size and X.shape[1] == y.size:
        X = X.T.tocsr()
    if X.shape[0] != y.size:
        raise ValueError(f"{str(path)!r}: X has shape {X.shape} but Y has {y.size} labels.")
    if y.dtype.kind in "biuf":
        ranks = np.searchsorted(np.unique(y), y)
        labels = np.char.add("type_", (ranks + 1).astype(str))
    else:
        labels = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in y])
    obs = pd.DataFrame({Key.cell_type: labels}, index=pd.Index([f"cell_{i}" for i in range(y.size)]))
    return AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"gene_{j}" for j in range(X.shape[1])]))


def worm_neurons(path: PathLike | None = None, *, cache_dir: PathLike | None = None) -> AnnData:
    """C. elegans neurons, Cao et al. (2017), sci-RNA-seq: 4,186 cells x 13,488 genes, 10 types.

    The "Cao" intra-dataset benchmark of scGAD and scDET. Type names are not shipped with the
    public matrix: the 10 classes are ``"type_1"`` ... ``"type_10"`` (in the order of the
    published integer labels).

    Source: ``worm_neuron_cell.h5`` of the scMAE collection on Zenodo,
    https://zenodo.org/records/8175767 (the scDeepCluster-format ``X``/``Y`` file; no published hash:
    ``known_hash=None``).

    Parameters
    ----------
    path
        A local copy: an ``.h5ad`` file, an ``X``/``Y`` ``.h5`` file, a folder holding
        ``worm_neuron.h5ad`` or a data root with ``worm_neuron_cao/worm_neuron.h5ad``. ``None``
        downloads.
    cache_dir
        Download cache (default :attr:`scomics_ext.settings.datasetdir`).

    Returns
    -------
    anndata.AnnData
        Counts in ``X`` (CSR float32) and ``obs["cell_type"]`` (categorical).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> adata = sx.datasets.worm_neurons()  # doctest: +SKIP
    >>> adata.obs["cell_type"].nunique()  # doctest: +SKIP
    10
    """
    what = "Cao worm neurons"
    if path is None:
        file = fetch("worm_neurons", cache_dir)
    else:
        file = _resolve_file(path, ["worm_neuron_cao"], ["worm_neuron.h5ad", "worm_neuron_cell.h5"], what)
    adata = _read_h5ad(file) if file.suffix == ".h5ad" else _read_xy_h5(file)
    adata.X = _counts_csr(adata.X)
    found = _first_column([adata.obs], ("cell_type", "celltype", "cell_type1", "label"))
    if found is None:
        raise ValueError(f"{what}: no cell-type column in {str(file)!r}.")
    adata.obs[Key.cell_type] = as_categorical(found[1].astype(object).to_numpy(), index=adata.obs_names).array
    _add_info(
        adata,
        "worm_neurons",
        "https://zenodo.org/records/8175767",
        "Cao et al. (2017) Science 357:661, doi:10.1126/science.aam8940",
    )
    return adata
