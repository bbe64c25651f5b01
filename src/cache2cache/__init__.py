"""cache2cache: Cache-to-Cache (C2C) communication between language models.

A frozen **receiver** LLM answers from its own KV-cache fused, layer by layer, with a frozen
**sharer** LLM's KV-cache through small trained **fusers** (Fu et al., arXiv 2510.03215).

    from cache2cache import C2CModel
    model = C2CModel.from_pretrained("path/or/hub-id", receiver="Qwen/Qwen3-0.6B", sharer="Qwen/Qwen2.5-0.5B-Instruct")
    print(model.generate([{"role": "user", "content": "Say hello."}], max_new_tokens=32))
"""

from .config import C2CConfig, FuserConfig, ModelFingerprint
from .fuser import C2CFuser, FuserStack, count_parameters
from .layer_map import build_layer_map, depth_map, terminal_map
from .model import C2CInputs, C2CModel, build_fusers

__version__ = "0.1.0"

__all__ = [
    "C2CConfig",
    "C2CFuser",
    "C2CInputs",
    "C2CModel",
    "FuserConfig",
    "FuserStack",
    "ModelFingerprint",
    "build_fusers",
    "build_layer_map",
    "count_parameters",
    "depth_map",
    "terminal_map",
]
