"""cache2cache: Cache-to-Cache (C2C) communication between language models.

A frozen **receiver** LLM answers from its own KV-cache fused, layer by layer, with a frozen
**sharer** LLM's KV-cache through small trained **fusers** (Fu et al., arXiv 2510.03215).

    from cache2cache import C2CModel
    model = C2CModel.from_pretrained("path/or/hub-id", receiver="Qwen/Qwen3-0.6B", sharer="Qwen/Qwen2.5-0.5B-Instruct")
    print(model.generate([{"role": "user", "content": "Say hello."}], max_new_tokens=32))

The public names are imported lazily (PEP 562), so `import cache2cache.cli` (and `c2c --help`)
never pays for torch and transformers.
"""

from __future__ import annotations

from .lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "C2CConfig": "config",
    "FuserConfig": "config",
    "ModelFingerprint": "config",
    "FusionControl": "control",
    "C2CFuser": "fuser",
    "FuserStack": "fuser",
    "count_parameters": "fuser",
    "build_layer_map": "layer_map",
    "depth_map": "layer_map",
    "terminal_map": "layer_map",
    "C2CInputs": "inputs",
    "C2CModel": "model",
    "build_fusers": "sharers",
    "TokenAligner": "alignment",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
