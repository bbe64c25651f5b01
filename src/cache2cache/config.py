"""`C2CConfig`: the architecture of a C2C pair, saved as `c2c_config.json` with every checkpoint.

It records which receiver and sharer the fusers were built for (name and shape fingerprint), the fuser
hyperparameters and the layer map. Loading checks the fingerprints against the models it is given,
so a fuser trained for one pair never silently runs on another. Run configuration (training and
evaluation recipes) lives apart from this, in `training.config` and `evaluation.config`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layer_map import build_layer_map

if TYPE_CHECKING:
    from transformers import PreTrainedModel

FORMAT_VERSION = 1
CONFIG_NAME = "c2c_config.json"


@dataclass(frozen=True)
class ModelFingerprint:
    """The identity and KV-cache shape of one model.

    Attributes:
        name_or_path: Hub id, local path or alias the model was loaded from (informational).
        model_type: `config.model_type`, e.g. "qwen3".
        num_hidden_layers: Decoder layers.
        num_key_value_heads: KV heads H_kv.
        head_dim: Per-head size D.
        vocab_size: Embedding rows.
        sliding_window: Window of the sliding-window layers, or None when there are none.
    """

    name_or_path: str | None
    model_type: str
    num_hidden_layers: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    sliding_window: int | None = None

    @classmethod
    def from_model(cls, model: PreTrainedModel) -> ModelFingerprint:
        """Read the fingerprint off a loaded model's (text) config."""
        cfg = model.config.get_text_config()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        layer_types = getattr(cfg, "layer_types", None) or []
        window = getattr(cfg, "sliding_window", None) if "sliding_attention" in layer_types else None
        name = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None) or None
        return cls(
            name_or_path=name,
            model_type=cfg.model_type,
            num_hidden_layers=cfg.num_hidden_layers,
            num_key_value_heads=getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
            head_dim=head_dim,
            vocab_size=cfg.vocab_size,
            sliding_window=window,
        )

    def describe(self) -> str:
        """Human-readable identity, e.g. `'Qwen/Qwen3-0.6B' (qwen3, 28 layers)`."""
        name = repr(self.name_or_path) if self.name_or_path else "an unnamed model"
        return f"{name} ({self.model_type}, {self.num_hidden_layers} layers)"

    def shape_mismatches(self, other: ModelFingerprint) -> list[str]:
        """Fields (other than the name) whose values differ, as `field: self != other` strings."""
        return [
            f"{f.name}: {getattr(self, f.name)} != {getattr(other, f.name)}"
            for f in dataclasses.fields(self)
            if f.name != "name_or_path" and getattr(self, f.name) != getattr(other, f.name)
        ]


@dataclass
class FuserConfig:
    """Hyperparameters of every `C2CFuser` in a pair (published names; docs/method.md §2.2 defaults)."""

    hidden_dim: int = 1024
    intermediate_dim: int = 1024
    num_layers: int = 3
    dropout: float = 0.1
    initial_temperature: float = 1.0
    final_temperature: float = 0.001
    anneal_steps: int = 1929
    zero_init: bool = False
    gate_init: float = 0.0
    anneal_schedule: str = "geometric"


@dataclass
class C2CConfig:
    """Architecture of a C2C pair.

    Attributes:
        receiver: Fingerprint of the receiver.
        sharer: Fingerprint of the sharer.
        fuser: Fuser hyperparameters.
        layer_map: Receiver layer -> sharer layer; one fuser per key.
        layer_map_name: How `layer_map` was built ("terminal", "depth" or "custom").
        alignment_strategy: Token-alignment strategy used when the tokenizers differ.
        format_version: Version of the checkpoint format.
    """

    receiver: ModelFingerprint
    sharer: ModelFingerprint
    fuser: FuserConfig = field(default_factory=FuserConfig)
    layer_map: dict[int, int] = field(default_factory=dict)
    layer_map_name: str = "terminal"
    alignment_strategy: str = "longest"
    format_version: int = FORMAT_VERSION

    @classmethod
    def for_pair(
        cls,
        receiver: PreTrainedModel,
        sharer: PreTrainedModel,
        *,
        fuser: FuserConfig | None = None,
        layer_map: str | dict[int, int] = "terminal",
        alignment_strategy: str = "longest",
    ) -> C2CConfig:
        """A config for fresh fusers between two loaded models.

        Args:
            receiver: The receiver model.
            sharer: The sharer model.
            fuser: Fuser hyperparameters (defaults to the published ones).
            layer_map: "terminal", "depth", or an explicit receiver -> sharer dict.
            alignment_strategy: "longest" (default) or "first".
        """
        r, s = ModelFingerprint.from_model(receiver), ModelFingerprint.from_model(sharer)
        if isinstance(layer_map, str):
            mapping, name = build_layer_map(layer_map, r.num_hidden_layers, s.num_hidden_layers), layer_map
        else:
            mapping, name = {int(t): int(v) for t, v in layer_map.items()}, "custom"
        config = cls(r, s, fuser or FuserConfig(), mapping, name, alignment_strategy)
        config.validate()
        return config

    def fuser_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of one `C2CFuser` for this pair."""
        return dict(
            source_dim=self.sharer.head_dim,
            target_dim=self.receiver.head_dim,
            source_num_heads=self.sharer.num_key_value_heads,
            target_num_heads=self.receiver.num_key_value_heads,
            **asdict(self.fuser),
        )

    def validate(self) -> None:
        """Raise `ValueError` listing every inconsistency (layer indices out of range, bad names)."""
        problems = []
        for t, s in self.layer_map.items():
            if not 0 <= t < self.receiver.num_hidden_layers:
                problems.append(f"layer_map key {t} is not a receiver layer (0..{self.receiver.num_hidden_layers - 1})")
            if not 0 <= s < self.sharer.num_hidden_layers:
                problems.append(f"layer_map value {s} (for receiver layer {t}) is not a sharer layer (0..{self.sharer.num_hidden_layers - 1})")
        if not self.layer_map:
            problems.append("layer_map is empty: no receiver layer would be fused")
        if self.alignment_strategy not in ("first", "longest"):
            problems.append(f"alignment_strategy must be 'first' or 'longest', got {self.alignment_strategy!r}")
        if self.fuser.anneal_schedule not in ("geometric", "linear"):
            problems.append(f"fuser.anneal_schedule must be 'geometric' or 'linear', got {self.fuser.anneal_schedule!r}")
        if problems:
            raise ValueError("invalid C2CConfig:\n  - " + "\n  - ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (layer-map keys become strings)."""
        d = asdict(self)
        d["layer_map"] = {str(t): s for t, s in self.layer_map.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> C2CConfig:
        """Inverse of `to_dict`; refuses unknown format versions and unknown keys."""
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"c2c_config.json has format_version {version!r}; this cache2cache reads version {FORMAT_VERSION}. "
                "Upgrade cache2cache, or re-save the checkpoint with the version that wrote it."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"c2c_config.json has unknown keys {sorted(unknown)}; expected {sorted(known)}")
        config = cls(
            receiver=ModelFingerprint(**d["receiver"]),
            sharer=ModelFingerprint(**d["sharer"]),
            fuser=FuserConfig(**d["fuser"]),
            layer_map={int(t): int(s) for t, s in d["layer_map"].items()},
            layer_map_name=d.get("layer_map_name", "custom"),
            alignment_strategy=d.get("alignment_strategy", "longest"),
            format_version=version,
        )
        config.validate()
        return config

    def save(self, directory: str | Path) -> Path:
        """Write `c2c_config.json` into `directory`; returns its path."""
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> C2CConfig:
        """Read `c2c_config.json` from `directory`."""
        path = Path(directory) / CONFIG_NAME
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, KeyError) as err:
            raise ValueError(f"{path} is not a valid C2C config ({err}); re-save it with save_pretrained") from err
