"""Loading receivers, sharers and their tokenizers from whatever the user names.

`load_model` and `load_tokenizer` accept, in this order of precedence:

1. an existing local path: a Hugging Face folder (with `config.json`), a `.gguf` file, or a folder
   holding exactly one `.gguf`;
2. the alias of a fetched asset (`smollm2-135m-instruct`, `gemma-3-270m`, `qwen2.5-coder-0.5b-instruct`):
   the dense checkpoint `c2c fetch` converted into the cache (see `cache2cache.assets`);
3. anything else: a Hugging Face hub id.

GGUF files are dequantised on load (`GgufConfig(dequantize=True)`), which is slow: 27-123 s for the
fetched models' weights plus 10-52 s for their tokenizers (Gemma's rebuilds its merges from the
vocabulary). `convert_gguf` does that once and writes a dense float32 safetensors checkpoint whose
weights reload in about a second with identical logits.

Chat templates found in the fetched GGUF files (transformers 5.24), and hence in their dense checkpoints:

- SmolLM2-135M-Instruct carries one: ChatML (`<|im_start|>role ... <|im_end|>`), which adds the system
  prompt "You are a helpful AI assistant named SmolLM, trained by Hugging Face" when the conversation
  has none. Its file names `<|im_end|>` as both eos and pad token, and `<|im_start|>` as bos.
- Gemma-3-270M (base) carries none: `tokenizer.chat_template` is None, so a caller that renders chat
  messages must bring a template (or fall back to plain text) for it. Its pad token is `<pad>`.
- Qwen2.5-Coder-0.5B-Instruct carries one: ChatML with Qwen's default system prompt and tool calls;
  eos `<|im_end|>`, pad `<|endoftext|>`.

Gemma-3's configuration keeps what the file says: a 512-token sliding window on 15 of its 18 layers
(`layer_types`). It is deliberately not overridden, so prompts beyond 512 tokens behave as the model
was trained.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from . import assets
from .frozen import freeze
from .output_dir import output_dir_problem, replace_dir

logger = logging.getLogger(__name__)

GGUF_EXTRA = "pip install 'cache2cache[gguf]'"
_GGUF_MAGIC = b"GGUF"
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve(name_or_path: str | Path) -> tuple[str, str | None]:
    """Where a model named by the user lives.

    Args:
        name_or_path: a local path, a fetched asset alias or a hub id (see the module docstring).

    Returns:
        `(folder or hub id, gguf file name or None)`, ready for `from_pretrained(first, gguf_file=second)`.

    Raises:
        FileNotFoundError: a path-like name that does not exist, or a folder with neither `config.json`
            nor a `.gguf`; `AssetNotFetchedError` (a subclass) for an alias not yet fetched.
        ValueError: a file that is not a GGUF, or a folder with several `.gguf` files.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        _check_gguf_file(path)
        return str(path.parent), path.name
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path), None
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            _check_gguf_file(ggufs[0])
            return str(path), ggufs[0].name
        if ggufs:
            names = ", ".join(p.name for p in ggufs)
            raise ValueError(f"{path} holds several .gguf files ({names}); pass the path of the one to load")
        raise FileNotFoundError(f"{path} holds neither a config.json (a Hugging Face folder) nor a .gguf file")
    if text in assets.ASSETS:
        return str(assets.model_path(text)), None
    if _looks_like_path(text):
        raise FileNotFoundError(
            f"{text!r} does not exist; give an existing folder, a .gguf file, a hub id (org/name) or one of "
            f"the fetched models: {', '.join(_model_aliases())}"
        )
    return text, None


def _model_aliases() -> list[str]:
    return [name for name, asset in assets.ASSETS.items() if isinstance(asset, assets.ModelAsset)]


def _looks_like_path(text: str) -> bool:
    """A hub id is `name` or `org/name`; anything else the user typed is meant as a path."""
    return (
        text.endswith(".gguf") or text.startswith(("/", "./", "../", "~", "\\")) or text.count("/") > 1 or "\\" in text
    )


def _check_gguf_file(path: Path) -> None:
    if path.suffix != ".gguf":
        raise ValueError(
            f"{path} is a file but not a .gguf; give a .gguf file, a Hugging Face folder (with config.json) or a hub id"
        )
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != _GGUF_MAGIC:
        raise ValueError(f"{path} is not a GGUF file (it starts with {magic!r}, not {_GGUF_MAGIC!r})")


def require_gguf() -> None:
    """Raise an ImportError naming the extra when the GGUF loader's dependencies are missing."""
    try:
        import accelerate  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as error:
        raise ImportError(f"loading a GGUF file needs the `gguf` and `accelerate` packages: {GGUF_EXTRA}") from error


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls run natively on `device`: a CUDA GPU with bf16 support, or a CPU
    with AMX or AVX512-BF16. Elsewhere (e.g. AVX2-only CPUs) bf16 is emulated and several times
    slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(cpu, name, lambda: False)() for name in checks)
    return False


def auto_dtype(device: torch.device) -> torch.dtype:
    """What `dtype="auto"` loads on `device`: bfloat16 where `has_fast_bf16(device)`, else float32."""
    return torch.bfloat16 if has_fast_bf16(device) else torch.float32


def _parse_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return auto_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype={dtype!r} is not supported; use a torch.dtype, 'auto' or one of {', '.join(_DTYPES)}")


def parse_device(device: str | torch.device) -> torch.device:
    """`device` as a `torch.device`, refused up front when it is not one or is not on this machine;
    "auto" is cuda when available, else cpu.

    Raises:
        ValueError: an unknown device string, or a CUDA (or MPS) device this torch build or machine lacks.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device {device!r} is not a torch device ({str(err).splitlines()[0]}); use e.g. cpu, cuda or cuda:1"
        ) from err
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(
                f"device {str(parsed)!r} requested but {build}; use cpu, or install a CUDA build of torch on a GPU machine"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(parsed)!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible; use cuda:0.."
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(parsed)!r} requested but MPS is not available here; use cpu")
    return parsed


def _from_pretrained(kind: Any, name: str | Path, location: str, gguf_file: str | None, **kwargs: object) -> Any:
    """`kind.from_pretrained` on a resolved `name`; a hub failure says what else the name could have meant."""
    if gguf_file is not None:
        require_gguf()
        kwargs["gguf_file"] = gguf_file
    try:
        return kind.from_pretrained(location, **kwargs)
    except OSError as error:
        if gguf_file is not None or Path(location).exists():
            raise
        raise OSError(
            f"could not load {str(name)!r}: it is not a local path nor a fetched model "
            f"({', '.join(_model_aliases())}), and as a hub id it failed: {error}"
        ) from error


def usable_device(device: str | torch.device | None) -> torch.device:
    """`device`, or the CPU (with a warning) when it names CUDA on a machine without CUDA; None is
    cuda when available, else cpu.

    Callers whose defaults name CUDA (lm-eval's CLI says `cuda:0`, the model card says `cuda`) use
    this, so their examples also run on CPU machines.
    """
    if device is None:
        return parse_device("auto")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning("device %s was asked for but CUDA is not available here; using the CPU instead", device)
        return torch.device("cpu")
    return device


def load_model(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
) -> PreTrainedModel:
    """Load a frozen causal LM (eval mode, no gradients) from a path, a fetched alias or a hub id.

    Args:
        name_or_path: a Hugging Face folder, a `.gguf` file, a folder with exactly one `.gguf`, a
            fetched alias such as `"smollm2-135m-instruct"`, or a hub id.
        dtype: a torch dtype or its name (`"bfloat16"`, `"bf16"`, `"float32"`, ...); `None` or `"auto"`
            picks by the device (`auto_dtype`): bfloat16 on a GPU with bf16 or a CPU with AMX or
            AVX512-BF16, float32 elsewhere (on AVX2-only CPUs bf16 is emulated and several times slower).
        device: where to put the model.

    Returns:
        The model, frozen (`frozen.freeze`: eval mode, no gradients, a fast output layer).

    Example:
        >>> receiver = load_model("smollm2-135m-instruct", dtype="bfloat16")  # doctest: +SKIP
    """
    device = parse_device(device)
    torch_dtype = _parse_dtype(dtype, device)
    location, gguf_file = resolve(name_or_path)
    kwargs: dict[str, object] = {"dtype": torch_dtype}
    if gguf_file is not None:
        from transformers import GgufConfig

        kwargs = {"dtype": torch_dtype, "quantization_config": GgufConfig(dequantize=True)}
    start = time.perf_counter()
    model = _from_pretrained(AutoModelForCausalLM, name_or_path, location, gguf_file, **kwargs)
    assert isinstance(model, PreTrainedModel)
    model = freeze(model.to(device))  # type: ignore[arg-type]  # transformers wraps .to, and mypy misreads the wrapper
    logger.info("loaded %s (%s, %s) in %.1f s", name_or_path, type(model).__name__, model.dtype,
                time.perf_counter() - start)  # fmt: skip
    return model


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer that goes with `load_model(name_or_path)`, making sure it has a pad token.

    A tokenizer without a pad token gets its eos token as pad token; nothing else is changed (padding
    side, chat template and special tokens stay as the checkpoint has them). See the module docstring
    for which fetched models carry a chat template.

    Args:
        name_or_path: the same kinds of names `load_model` accepts.

    Returns:
        The tokenizer.
    """
    tokenizer = _from_pretrained(AutoTokenizer, name_or_path, *resolve(name_or_path))
    assert isinstance(tokenizer, PreTrainedTokenizerBase)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            logger.warning("%s has neither a pad nor an eos token; batches cannot be padded", name_or_path)
        else:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def convert_gguf(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a GGUF model into a dense safetensors folder (model, tokenizer, generation config).

    `save_pretrained` refuses a GGUF-loaded model, so the dequantised weights are copied, strictly (no
    missing or unexpected keys), into a fresh model built from the same configuration minus its
    quantisation settings. Weights are written in float32, as dequantised. The folder is built beside
    `dst` and renamed into place, so `dst` is never half-written.

    Args:
        src: a `.gguf` file, or a folder holding exactly one.
        dst: the output folder.
        overwrite: replace an existing non-empty `dst` (otherwise refused).

    Returns:
        `dst` as a `Path`.

    Raises:
        FileNotFoundError: `src` does not exist.
        ValueError: `src` is not a GGUF file.
        FileExistsError: `dst` exists, is not empty and `overwrite` is False.
        ImportError: the `gguf` extra is not installed.

    Example:
        >>> convert_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-dense")  # doctest: +SKIP
    """
    source = Path(src).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist; give a .gguf file or a folder holding one")
    location, gguf_file = resolve(source)
    if gguf_file is None:
        raise ValueError(f"{source} is a Hugging Face folder, not a GGUF file; it needs no conversion")
    target = Path(dst).expanduser()
    unusable = output_dir_problem(target)
    if unusable:
        raise ValueError(f"cannot write the dense checkpoint: {unusable}; choose another output folder")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; choose another folder or pass overwrite=True")
    start = time.perf_counter()
    quantised = load_model(source, dtype=torch.float32)  # the dense copy keeps full precision
    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dense = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    dense.load_state_dict(quantised.state_dict(), strict=True)
    dense.generation_config = copy.deepcopy(quantised.generation_config)
    del quantised
    tokenizer = _from_pretrained(AutoTokenizer, source, location, gguf_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.partial-", dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        dense.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        replace_dir(staged, target)
    logger.info("converted %s into %s in %.1f s", source, target, time.perf_counter() - start)
    return target
