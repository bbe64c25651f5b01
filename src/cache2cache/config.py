"""`C2CConfig`: the architecture of a C2C pair, saved as `c2c_config.json` with every checkpoint.

It records which receiver and sharer the fusers were built for (name and shape fingerprint), the fuser
hyperparameters and the layer map. Loading checks the fingerprints against the models it is given,
so a fuser trained for one pair never silently runs on another. Run configuration (training and
evaluation recipes) lives apart from this, in `training.config` and `evaluation.config`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .layer_map import LayerMapName, build_layer_map
from .recipe import type_name

if TYPE_CHECKING:
    from transformers import PreTrainedModel

FORMAT_VERSION = 1
CONFIG_NAME = "c2c_config.json"
AnnealSchedule = Literal["geometric", "linear"]
"""How the gate temperature anneals: "geometric" (published code) or "linear" (the paper's wording)."""
AlignmentStrategy = Literal["first", "longest"]
"""Token alignment when the tokenizers differ (`cache2cache.alignment`)."""
LayerMapLabel = Literal[LayerMapName, "custom"]
"""How a saved layer map was built: by name, or given as a dict ("custom")."""
SHARER_MODES = ("parallel", "sequential")
"""How several sharers combine (docs/method.md §7): `parallel` sums every sharer's delta on the clean
receiver cache; `sequential` fuses each sharer into the cache the previous one produced."""


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
    """Hyperparameters of every `C2CFuser` in a pair (published names; docs/method.md §2.2 defaults).

    Attributes:
        hidden_dim: Fuser width h (published: 1024).
        intermediate_dim: Inner width i of the fuser's feed-forward blocks (published: 1024).
        num_layers: Fuser depth L >= 3: one fusion block and L-2 projection blocks (published: 3).
        dropout: Dropout inside the fuser while training (published: 0.1).
        initial_temperature: Gate temperature at step 0 (published: 1.0).
        final_temperature: Gate temperature once annealed (published: 0.001).
        anneal_steps: Steps over which the temperature anneals (published: 1929).
        zero_init: Start the output projections at zero, so fresh fusers add nothing.
        gate_init: Initial gate logit; 0 is the published init (gates half open).
        anneal_schedule: "geometric" (published code) or "linear" (the paper's wording).
    """

    hidden_dim: int = 1024
    intermediate_dim: int = 1024
    num_layers: int = 3
    dropout: float = 0.1
    initial_temperature: float = 1.0
    final_temperature: float = 0.001
    anneal_steps: int = 1929
    zero_init: bool = False
    gate_init: float = 0.0
    anneal_schedule: AnnealSchedule = "geometric"

    def problems(self, prefix: str) -> list[str]:
        """Every out-of-range field, each as `<prefix><field>: got <value>, expected <range>`."""
        problems = []
        for name in ("hidden_dim", "intermediate_dim", "anneal_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{prefix}{name}: got {getattr(self, name)}, expected a positive integer")
        if self.num_layers < 3:
            problems.append(
                f"{prefix}num_layers: got {self.num_layers}, expected >= 3 (one fusion block and L-2 projection blocks)"
            )
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"{prefix}dropout: got {self.dropout}, expected 0 <= dropout < 1 (published: 0.1)")
        for name in ("initial_temperature", "final_temperature"):
            if not getattr(self, name) > 0:
                problems.append(f"{prefix}{name}: got {getattr(self, name)}, expected > 0")
        return problems + literal_problems(self, prefix)


@dataclass
class SharerLink:
    """One more sharer of a receiver that reads several (docs/method.md §7): its identity and layer map.

    Attributes:
        sharer: Fingerprint of this sharer.
        layer_map: Receiver layer -> this sharer's layer; one fuser per key.
        layer_map_name: How `layer_map` was built ("terminal", "depth" or "custom").
    """

    sharer: ModelFingerprint
    layer_map: dict[int, int]
    layer_map_name: LayerMapLabel = "terminal"


@dataclass
class C2CConfig:
    """Architecture of a C2C pair, or of a receiver reading several sharers.

    The first sharer is `sharer` / `layer_map`, as in a pair; further sharers are `more_sharers`,
    combined by `sharer_mode`. Every sharer's fusers share the `fuser` sizes. A pair's JSON carries
    neither of the two extra keys, so single-sharer checkpoints read and write as they always have.

    Attributes:
        receiver: Fingerprint of the receiver.
        sharer: Fingerprint of the (first) sharer.
        fuser: Fuser hyperparameters.
        layer_map: Receiver layer -> sharer layer; one fuser per key.
        layer_map_name: How `layer_map` was built ("terminal", "depth" or "custom").
        alignment_strategy: Token-alignment strategy used when the tokenizers differ.
        format_version: Version of the checkpoint format.
        more_sharers: Sharers 2, 3, ... with their layer maps; empty for a pair.
        sharer_mode: "parallel" or "sequential" (`SHARER_MODES`), when there are several sharers.
    """

    receiver: ModelFingerprint
    sharer: ModelFingerprint
    fuser: FuserConfig = field(default_factory=FuserConfig)
    layer_map: dict[int, int] = field(default_factory=dict)
    layer_map_name: LayerMapLabel = "terminal"
    alignment_strategy: AlignmentStrategy = "longest"
    format_version: int = FORMAT_VERSION
    more_sharers: list[SharerLink] = field(default_factory=list)
    sharer_mode: str = "parallel"

    @classmethod
    def for_pair(
        cls,
        receiver: PreTrainedModel,
        sharer: PreTrainedModel,
        *,
        fuser: FuserConfig | None = None,
        layer_map: LayerMapName | dict[int, int] = "terminal",
        alignment_strategy: AlignmentStrategy = "longest",
        more_sharers: Sequence[PreTrainedModel] = (),
        sharer_mode: str = "parallel",
    ) -> C2CConfig:
        """A config for fresh fusers between two loaded models (or a receiver and several sharers).

        Args:
            receiver: The receiver model.
            sharer: The (first) sharer model.
            fuser: Fuser hyperparameters (defaults to the published ones).
            layer_map: "terminal", "depth", or an explicit receiver -> sharer dict; used for every sharer.
            alignment_strategy: "longest" (default) or "first".
            more_sharers: Further sharers, each with its own fusers.
            sharer_mode: How several sharers combine: "parallel" (default) or "sequential".
        """
        r = ModelFingerprint.from_model(receiver)
        links = [_link(r, ModelFingerprint.from_model(m), layer_map) for m in (sharer, *more_sharers)]
        first = links[0]
        config = cls(
            r, first.sharer, fuser or FuserConfig(), first.layer_map, first.layer_map_name, alignment_strategy,
            more_sharers=links[1:], sharer_mode=sharer_mode,
        )  # fmt: skip
        config.validate()
        return config

    @property
    def sharers(self) -> list[SharerLink]:
        """Every sharer with its layer map, the first one (`sharer`, `layer_map`) included."""
        return [SharerLink(self.sharer, self.layer_map, self.layer_map_name), *self.more_sharers]

    @property
    def fused_layers(self) -> list[int]:
        """The receiver layers some sharer fuses, sorted."""
        return sorted({t for link in self.sharers for t in link.layer_map})

    def fuser_kwargs(self, sharer_index: int = 0) -> dict[str, Any]:
        """Constructor arguments of one `C2CFuser` reading sharer `sharer_index` (0: the first)."""
        sharer = self.sharers[sharer_index].sharer
        return dict(
            source_dim=sharer.head_dim,
            target_dim=self.receiver.head_dim,
            source_num_heads=sharer.num_key_value_heads,
            target_num_heads=self.receiver.num_key_value_heads,
            **asdict(self.fuser),
        )

    def validate(self) -> None:
        """Raise `ValueError` listing every inconsistency (layer indices out of range, bad names)."""
        problems = []
        several = bool(self.more_sharers)
        for i, link in enumerate(self.sharers):
            name = f"more_sharers[{i - 1}].layer_map" if i else "layer_map"
            what = f"sharer {i + 1}'s layer" if several else "sharer layer"
            for t, s in link.layer_map.items():
                if not 0 <= t < self.receiver.num_hidden_layers:
                    problems.append(
                        f"{name} key {t} is not a receiver layer (0..{self.receiver.num_hidden_layers - 1})"
                    )
                if not 0 <= s < link.sharer.num_hidden_layers:
                    problems.append(
                        f"{name} value {s} (for receiver layer {t}) is not a {what} (0..{link.sharer.num_hidden_layers - 1})"
                    )
            if not link.layer_map:
                problems.append(f"{name} is empty: no receiver layer would be fused")
        if self.sharer_mode not in SHARER_MODES:
            problems.append(
                f"sharer_mode must be one of {', '.join(SHARER_MODES)} (how several sharers combine), got {self.sharer_mode!r}"
            )
        problems += literal_problems(self)
        for i, link in enumerate(self.more_sharers):
            problems += literal_problems(link, f"more_sharers[{i}].")
        problems += self.fuser.problems("fuser.")
        if problems:
            raise ValueError("invalid C2CConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (layer-map keys become strings); a pair's has no `more_sharers` / `sharer_mode`."""
        d = asdict(self)
        d["layer_map"] = {str(t): s for t, s in self.layer_map.items()}
        if not self.more_sharers:
            del d["more_sharers"], d["sharer_mode"]
        for link in d.get("more_sharers", []):
            link["layer_map"] = {str(t): s for t, s in link["layer_map"].items()}
        return d

    @classmethod
    def from_dict(cls, d: Any, *, source: str = CONFIG_NAME) -> C2CConfig:
        """Inverse of `to_dict`; refuses unknown format versions, unknown or missing keys and wrong types.

        Args:
            d: The parsed JSON.
            source: What to call it in error messages (the file's path).

        Raises:
            ValueError: One line naming every bad field, its value and what was expected.
        """
        fix = "re-save the checkpoint with save_pretrained, or restore the file from where it came"
        if not isinstance(d, dict):
            raise ValueError(
                f"{source} is not a valid C2C config: the top level is a {type(d).__name__}, expected a JSON object; {fix}"
            )
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{source} has format_version {version!r}; this cache2cache reads version {FORMAT_VERSION}. "
                "Upgrade cache2cache, or re-save the checkpoint with the version that wrote it."
            )
        problems = _field_problems(cls, d, "", required=("receiver", "sharer", "fuser", "layer_map"))
        for key, kind in (("receiver", ModelFingerprint), ("sharer", ModelFingerprint), ("fuser", FuserConfig)):
            if key in d:
                problems += _field_problems(kind, d[key], key)
        problems += _layer_map_problems(d.get("layer_map", {}), "layer_map")
        more = d.get("more_sharers", [])
        if not isinstance(more, list):
            problems.append(f"more_sharers: got {more!r}, expected a list of {{sharer, layer_map, layer_map_name}}")
            more = []
        for i, link in enumerate(more):
            where = f"more_sharers[{i}]"
            problems += _field_problems(SharerLink, link, where)
            if isinstance(link, dict) and "sharer" in link:
                problems += _field_problems(ModelFingerprint, link["sharer"], f"{where}.sharer")
            if isinstance(link, dict) and "layer_map" in link:
                problems += _layer_map_problems(link["layer_map"], f"{where}.layer_map")
        if problems:
            raise ValueError(f"{source} is not a valid C2C config: {'; '.join(problems)}; {fix}")
        config = cls(
            receiver=ModelFingerprint(**d["receiver"]),
            sharer=ModelFingerprint(**d["sharer"]),
            fuser=FuserConfig(**d["fuser"]),
            layer_map={int(t): s for t, s in d["layer_map"].items()},
            layer_map_name=d.get("layer_map_name", "custom"),
            alignment_strategy=d.get("alignment_strategy", "longest"),
            format_version=version,
            more_sharers=[
                SharerLink(
                    ModelFingerprint(**link["sharer"]),
                    {int(t): s for t, s in link["layer_map"].items()},
                    link.get("layer_map_name", "custom"),
                )
                for link in more
            ],
            sharer_mode=d.get("sharer_mode", "parallel"),
        )
        try:
            config.validate()
        except ValueError as err:
            raise ValueError(f"{source}: {err}; {fix}") from err
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
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{path} does not exist; give a folder written by save_pretrained") from err
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); re-save the checkpoint with save_pretrained"
            ) from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); re-save the checkpoint with save_pretrained"
            ) from err
        return cls.from_dict(data, source=str(path))


def _link(receiver: ModelFingerprint, sharer: ModelFingerprint, layer_map: LayerMapName | dict[int, int]) -> SharerLink:
    """One sharer's layer map, built by name ("terminal", "depth") or given as a dict ("custom")."""
    if isinstance(layer_map, str):
        return SharerLink(
            sharer, build_layer_map(layer_map, receiver.num_hidden_layers, sharer.num_hidden_layers), layer_map
        )
    return SharerLink(sharer, {int(t): int(v) for t, v in layer_map.items()}, "custom")


def _layer_map_problems(layer_map: Any, where: str) -> list[str]:
    """A JSON layer map that is not an object of digit-string receiver layers -> integer sharer layers."""
    if isinstance(layer_map, dict) and all(
        isinstance(t, str) and t.isdigit() and isinstance(v, int) and not isinstance(v, bool)
        for t, v in layer_map.items()
    ):
        return []
    return [f'{where}: got {layer_map!r}, expected an object of receiver layer -> sharer layer, e.g. {{"0": 0}}']


def literal_problems(obj: Any, prefix: str = "") -> list[str]:
    """Every field of the dataclass `obj` annotated with a `Literal` whose value is not one of its choices,
    each as `<prefix><field>: got <value>, expected one of ...`."""
    hints = typing.get_type_hints(type(obj))
    return [
        f"{prefix}{f.name}: got {getattr(obj, f.name)!r}, expected {type_name(hints[f.name])}"
        for f in dataclasses.fields(obj)
        if typing.get_origin(hints[f.name]) is Literal and getattr(obj, f.name) not in typing.get_args(hints[f.name])
    ]


def fits_annotation(value: Any, tp: Any) -> bool:
    """Whether a JSON value fits a field annotation (int, float, bool, str, a Literal, or one of them | None)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(fits_annotation(value, arg) for arg in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _field_problems(cls: type, data: Any, where: str, required: tuple[str, ...] | None = None) -> list[str]:
    """Missing, unknown and mistyped keys of `data` as the dataclass `cls` (nested ones are checked apart).

    `required` names the keys that must be present (default: the fields without a default)."""
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(data, dict):
        return [f"{where}: got {data!r}, expected an object with keys {', '.join(names)}"]
    prefix = f"{where}." if where else ""
    hints = typing.get_type_hints(cls)
    problems = [f"{prefix}{key}: unknown key (expected one of {', '.join(names)})" for key in data if key not in names]
    for f in dataclasses.fields(cls):
        needed = (
            f.name in required
            if required is not None
            else f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        if f.name not in data:
            if needed:
                problems.append(f"{prefix}{f.name}: missing")
        elif (
            not dataclasses.is_dataclass(hints[f.name])
            and f.name not in ("layer_map", "more_sharers")
            and not fits_annotation(data[f.name], hints[f.name])
        ):
            problems.append(f"{prefix}{f.name}: got {data[f.name]!r}, expected {type_name(hints[f.name])}")
    return problems
