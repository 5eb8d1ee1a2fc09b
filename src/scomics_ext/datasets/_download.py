"""Where the public datasets live, and the one function that downloads them (pooch, with a cache)."""

from __future__ import annotations

import shutil
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanpy import logging as logg

from scomics_ext._settings import settings


@dataclass(frozen=True)
class Remote:
    """A downloadable file: its URL, hash (``"md5:..."``/``"sha256:..."`` or ``None``) and cache name."""

    url: str | None
    known_hash: str | None
    fname: str
    #: what to tell the user when ``url`` is ``None`` (no automatic download)
    instructions: str = ""


#: The public originals. A hash is given where the publisher (Zenodo md5, Git LFS sha256) states
#: one; otherwise ``None`` (pooch then logs the SHA256 of what it downloaded, to pin it later).
REGISTRY: dict[str, Remote] = {
    "spatialglue_simulation": Remote(
        url=None,
        known_hash=None,
        fname="spatialglue_simulation",
        instructions=(
            "The SpatialGlue triplet simulation (adata_RNA.h5ad, adata_ADT.h5ad, adata_ATAC.h5ad) is shared only "
            "in a Google Drive folder linked from SpatialGlue's tutorial 5 "
            "(https://spatialglue-tutorials.readthedocs.io, folder "
            "https://drive.google.com/drive/folders/1PsYs62vbA_VLxvMZOV82GZ5Dr7btNY3O), which cannot be "
            "downloaded automatically. Download the three files (and, if you have it, ground_truth.csv) into "
            "one folder and pass it as `path=`, or place them in `{cache}`."
        ),
    ),
    "human_lymph_node": Remote(
        url="https://zenodo.org/api/records/10362607/files/Data_SpatialGlue.zip/content",
        known_hash="md5:b766948c1136bb3af2f3e6e85dc81cfe",
        fname="Data_SpatialGlue.zip",
    ),
    "mouse_olfactory_bulb": Remote(
        url="https://github.com/Teichlab/SpatialDE/raw/master/Analysis/MouseOB/data/Rep11_MOB_0.csv",
        known_hash="sha256:df7cb0b838e2a9b9de3424024d084f38cbfc16b20fbd64ed2787a942039b6c3e",
        fname="Rep11_MOB_0.csv",
    ),
    "human_melanoma": Remote(
        url="https://raw.githubusercontent.com/almaan/sepal/master/data/real/melanoma.tsv.gz",
        known_hash=None,
        fname="thrane2018_melanoma_mel1_rep1.tsv.gz",
    ),
    "baron_pancreas": Remote(
        url="https://ftp.ncbi.nlm.nih.gov/geo/series/GSE84nnn/GSE84133/suppl/GSE84133_RAW.tar",
        known_hash=None,
        fname="GSE84133_RAW.tar",
    ),
    "worm_neurons": Remote(
        url="https://zenodo.org/records/8175767/files/worm_neuron_cell.h5?download=1",
        known_hash=None,
        fname="worm_neuron_cell.h5",
    ),
}


def cache_folder(cache_dir: str | Path | None) -> Path:
    """The download cache: ``cache_dir`` or :attr:`scomics_ext.settings.datasetdir`."""
    return Path(cache_dir) if cache_dir is not None else Path(settings.datasetdir)


def _copy_file_url(url: str, output_file: Any, pooch: Any = None, check_only: bool = False) -> bool | None:
    """Pooch downloader for ``file://`` URLs (local mirrors): copies the file."""
    src = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if check_only:
        return src.is_file()
    if not src.is_file():
        raise FileNotFoundError(f"{url} does not exist.")
    if hasattr(output_file, "write"):
        with open(src, "rb") as fh:
            shutil.copyfileobj(fh, output_file)
    else:
        shutil.copyfile(src, output_file)
    return None


def fetch(key: str, cache_dir: str | Path | None = None) -> Path:
    """Download (once) the file registered under ``key`` into the cache and return its path.

    Raises
    ------
    FileNotFoundError
        If the dataset has no public direct download (the message says where to get it).
    ValueError
        If the downloaded file does not match the registered hash (raised by pooch).
    """
    import pooch

    remote = REGISTRY[key]
    folder = cache_folder(cache_dir)
    if remote.url is None:
        raise FileNotFoundError(remote.instructions.format(cache=folder / remote.fname))
    folder.mkdir(parents=True, exist_ok=True)
    downloader = _copy_file_url if remote.url.startswith("file://") else None
    logg.info(f"fetching {remote.fname} into {folder}")
    path = pooch.retrieve(
        remote.url,
        known_hash=remote.known_hash,
        fname=remote.fname,
        path=folder,
        downloader=downloader,
        progressbar=bool(settings.progress_bar),
    )
    return Path(path)
