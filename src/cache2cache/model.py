"""`C2CModel`: a frozen receiver, a frozen sharer and the fusers between them.

Inference (`generate`):
    1. render the prompt with each model's chat template and tokenize (aligning the sharer's tokens
       1:1 to the receiver's when the tokenizers differ);
    2. prefill receiver and sharer on the prompt minus its last token (base models only, no LM head);
    3. fuse each mapped receiver layer's cache with its sharer layer, on fusion-mask tokens only
       (`FusionControl` narrows this at inference: strength, layer subset, proportion of tokens);
    4. hand the fused cache and the *full* prompt to the receiver's Hugging Face `generate`, which runs
       the last prompt token over the fused cache and decodes (sampling, streamers, stopping criteria
       and GenerationConfig all work).

Training (`forward`) is the same prefill over the instruction minus its last token, then one receiver
pass over [last instruction token + response] with labels; gradients reach only the fusers.

With `include_response` (`FusionControl`), the sharer also reads the response and each response token
is fused as the receiver reads it, generated or teacher-forced (`response_fusion.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from . import kv
from .chat import render_chat
from .config import C2CConfig, FuserConfig
from .control import FusionControl
from .fuser import C2CFuser, FuserStack
from .response_fusion import ResponseFusion

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]
Stage = Callable[[str], AbstractContextManager[Any]]
"""Wraps each stage of a call, by name (`prefill`, `sharer`, `fuse`, `decode`, `score`): a timer such as
`evaluation.timing.StageClock.stage`. The default runs every stage untimed."""


def _untimed(name: str) -> AbstractContextManager[None]:
    return nullcontext()


@dataclass
class C2CInputs:
    """A tokenized batch for both models, left-padded, aligned token for token.

    Attributes:
        input_ids: Receiver token ids, (B, N).
        attention_mask: Receiver mask, (B, N), 0 on padding.
        sharer_input_ids: Sharer token ids, (B, N); equal to `input_ids` for a shared tokenizer.
        sharer_attention_mask: Sharer mask, (B, N).
        fusion_mask: (B, N) bool, True where the receiver's cache is fused with the sharer's.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    sharer_input_ids: torch.Tensor
    sharer_attention_mask: torch.Tensor
    fusion_mask: torch.Tensor

    def __post_init__(self) -> None:
        shapes = {f.name: tuple(getattr(self, f.name).shape) for f in fields(self)}
        if len(set(shapes.values())) != 1 or len(shapes["input_ids"]) != 2:
            raise ValueError(f"C2CInputs tensors must all be (B, N), got {shapes}")

    def to(self, device: torch.device | str) -> C2CInputs:
        """The same inputs on `device`."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def truncate(self, length: int) -> C2CInputs:
        """The first `length` tokens of every sequence."""
        return replace(self, **{f.name: getattr(self, f.name)[:, :length] for f in fields(self)})


class C2CModel(nn.Module):
    """A receiver LLM that reads a sharer LLM's KV-cache through trained fusers.

    Both LLMs are frozen and stay in eval mode whatever `.train()` says; only `fusers` train.

    Args:
        receiver: The causal LM that answers.
        sharer: The causal LM whose cache is fused into the receiver's.
        fusers: One fuser per mapped receiver layer.
        config: The pair's architecture (fingerprints, fuser hyperparameters, layer map).
        receiver_tokenizer: Needed to generate from chat messages.
        sharer_tokenizer: The sharer's tokenizer; when it differs from the receiver's, prompts are
            token-aligned (see `alignment.py`). None means the sharer shares the receiver's tokenizer.
    """

    def __init__(
        self,
        receiver: PreTrainedModel,
        sharer: PreTrainedModel,
        fusers: FuserStack,
        config: C2CConfig,
        receiver_tokenizer: PreTrainedTokenizerBase | None = None,
        sharer_tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        super().__init__()
        self.receiver = receiver.eval().requires_grad_(False)
        self.sharer = sharer.eval().requires_grad_(False)
        self.fusers = fusers
        self.config = config
        self.receiver_tokenizer = receiver_tokenizer
        self.sharer_tokenizer = sharer_tokenizer
        self.aligner = None
        if (
            receiver_tokenizer is not None
            and sharer_tokenizer is not None
            and not _same_vocab(receiver_tokenizer, sharer_tokenizer)
        ):
            from .alignment import TokenAligner

            self.aligner = TokenAligner(receiver_tokenizer, sharer_tokenizer, strategy=config.alignment_strategy)

    # ----------------------------------------------------------------------------------- building

    @classmethod
    def from_models(
        cls,
        receiver: PreTrainedModel,
        sharer: PreTrainedModel,
        config: C2CConfig | None = None,
        *,
        fuser: FuserConfig | None = None,
        layer_map: str | dict[int, int] = "terminal",
        receiver_tokenizer: PreTrainedTokenizerBase | None = None,
        sharer_tokenizer: PreTrainedTokenizerBase | None = None,
        seed: int | None = None,
    ) -> C2CModel:
        """Wrap two loaded models with freshly initialised fusers (fp32, on the receiver's device).

        Args:
            receiver: The receiver.
            sharer: The sharer.
            config: A full pair config; built from `fuser` and `layer_map` when None.
            fuser: Fuser hyperparameters when `config` is None (published defaults otherwise).
            layer_map: "terminal" (default), "depth" or an explicit dict, when `config` is None.
            receiver_tokenizer: Receiver tokenizer (needed for chat-message inputs).
            sharer_tokenizer: Sharer tokenizer, when it differs from the receiver's.
            seed: Seed for the fusers' initialisation.
        """
        config = config or C2CConfig.for_pair(receiver, sharer, fuser=fuser, layer_map=layer_map)
        model = cls(receiver, sharer, build_fusers(config, seed=seed), config, receiver_tokenizer, sharer_tokenizer)
        model.check_pair()
        return model.to_fuser_device()

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, **kwargs: Any) -> C2CModel:
        """Load fusers saved with `save_pretrained`, or in the published layout. See `checkpoint.load_c2c`."""
        from .checkpoint import load_c2c

        return load_c2c(path_or_hub_id, **kwargs)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write exactly `c2c_config.json` and `fuser.safetensors` into `directory`, atomically."""
        from .checkpoint import save_c2c

        return save_c2c(self, directory)

    def check_pair(self) -> None:
        """Raise `ValueError` if the loaded models do not match the config's fingerprints."""
        from .config import ModelFingerprint

        problems = []
        for role, model, expected in (
            ("receiver", self.receiver, self.config.receiver),
            ("sharer", self.sharer, self.config.sharer),
        ):
            actual = ModelFingerprint.from_model(model)
            mismatch = expected.shape_mismatches(actual)
            if mismatch:
                problems.append(
                    f"{role}: the fusers were built for {expected.describe()} but got {actual.describe()}; "
                    f"differing fields (saved != loaded): {'; '.join(mismatch)}"
                )
            elif expected.name_or_path and actual.name_or_path and expected.name_or_path != actual.name_or_path:
                logger.info(
                    "%s loaded from %r; fusers were trained with %r (same shapes)",
                    role,
                    actual.name_or_path,
                    expected.name_or_path,
                )
        if problems:
            raise ValueError(
                "this C2C checkpoint does not fit the models given: "
                + "; and ".join(problems)
                + ". Fix: pass the receiver and sharer the checkpoint was trained for, or train fusers for this pair."
            )

    def to_fuser_device(self) -> C2CModel:
        """Move the fusers to the receiver's device (keeping their dtype); returns self."""
        self.fusers.to(self.device)
        return self

    @property
    def device(self) -> torch.device:
        """The receiver's device."""
        return self.receiver.device

    def train(self, mode: bool = True) -> C2CModel:
        """Set the fusers' mode; the frozen LLMs always stay in eval mode (dropout off, cache kept)."""
        self.fusers.train(mode)
        self.training = mode
        return self

    def fuser_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: those of the fusers, nothing else."""
        return list(self.fusers.parameters())

    # ----------------------------------------------------------------------------------- inputs

    def encode(
        self,
        conversations: list[Messages],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool = False,
    ) -> C2CInputs:
        """Render chat conversations with the chat templates and tokenize them for both models.

        With a shared tokenizer the sharer reads the receiver's ids; otherwise the token aligner
        renders each side with its own template and maps message tokens 1:1, and only message tokens
        are fused. Left padding.

        Args:
            conversations: B conversations, each a list of `{"role", "content"}` messages.
            add_generation_prompt: Append the assistant turn header (for generation).
            enable_thinking: Passed to templates that use it (Qwen3); off by default, as in the paper.

        Returns:
            `C2CInputs` on the receiver's device. For a shared tokenizer, every prompt token is in
            the fusion mask (the last one is never fused, since it is not prefilled).
        """
        if self.receiver_tokenizer is None:
            raise ValueError(
                "chat messages need a receiver tokenizer: pass receiver_tokenizer= when building the C2CModel"
            )
        if self.aligner is not None:
            batch = self.aligner.align_batch(
                conversations, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
            )
            inputs = C2CInputs(
                batch.receiver_input_ids,
                batch.receiver_attention_mask,
                batch.sharer_input_ids,
                batch.sharer_attention_mask,
                batch.fusion_mask,
            )
            return inputs.to(self.device)
        tok = self.receiver_tokenizer
        texts = [
            render_chat(tok, c, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking)
            for c in conversations
        ]
        previous_side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        finally:
            tok.padding_side = previous_side
        ids, mask = enc["input_ids"], enc["attention_mask"]
        return C2CInputs(ids, mask, ids, mask, mask.bool()).to(self.device)

    def inputs_from_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        sharer_input_ids: torch.Tensor | None = None,
        sharer_attention_mask: torch.Tensor | None = None,
        fusion_mask: torch.Tensor | None = None,
    ) -> C2CInputs:
        """Build `C2CInputs` from token ids (left-padded). Sharer ids default to the receiver's,
        which is only valid for a shared tokenizer; the fusion mask defaults to every real token."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if sharer_input_ids is None:
            if self.aligner is not None:
                raise ValueError(
                    "receiver and sharer tokenizers differ, so token ids alone are ambiguous: pass sharer_input_ids "
                    "(aligned 1:1 with input_ids), or pass chat messages and let the token aligner build both"
                )
            sharer_input_ids, sharer_attention_mask = input_ids, attention_mask
        if sharer_attention_mask is None:
            sharer_attention_mask = torch.ones_like(sharer_input_ids)
        if fusion_mask is None:
            fusion_mask = attention_mask.bool() & sharer_attention_mask.bool()
        vocab = self.config.sharer.vocab_size
        if int(sharer_input_ids.max()) >= vocab:
            raise ValueError(
                f"sharer token id {int(sharer_input_ids.max())} is outside the sharer's vocabulary ({vocab}); "
                "the tokenizers probably differ: pass sharer_tokenizer= so prompts get aligned"
            )
        return C2CInputs(input_ids, attention_mask, sharer_input_ids, sharer_attention_mask, fusion_mask.bool()).to(
            self.device
        )

    # ----------------------------------------------------------------------------------- the method

    def fuse(
        self,
        inputs: C2CInputs,
        *,
        fusers: nn.Module | None = None,
        enabled: bool = True,
        control: FusionControl | None = None,
        stage: Stage = _untimed,
    ) -> Cache | None:
        """Prefill both models on `inputs` and fuse the sharer's cache into the receiver's.

        Both LLM passes run without gradients; the fusers run with them when grad is enabled, so a
        loss on the receiver's continuation trains the fusers through the fused cache.

        Args:
            inputs: The tokens to prefill, (B, P) each: normally the prompt minus its last token.
            fusers: The fuser module to call (e.g. a DDP-wrapped `self.fusers`); default `self.fusers`.
            enabled: False runs the receiver-only path: the same prefill, no sharer, no fusion.
            control: Strength, layer subset and proportion of fusion (`control.py`); default plain C2C.
            stage: Wraps the `prefill`, `sharer` and `fuse` stages (for timing them).

        Returns:
            The receiver's cache over the P tokens, fused where `inputs.fusion_mask` is True (and
            `control` allows); None if P == 0.
        """
        control = control or FusionControl()
        control.check_layers(self.config.layer_map)
        if inputs.input_ids.shape[1] == 0:
            return None
        mask = control.fusion_mask(inputs.fusion_mask)
        with torch.no_grad():
            with stage("prefill"):
                receiver_cache = kv.prefill(self.receiver, inputs.input_ids, inputs.attention_mask)
            if not enabled or control.fuses_nothing or not bool(mask.any()):
                return receiver_cache
            with stage("sharer"):
                sharer_cache = kv.prefill(
                    self.sharer, inputs.sharer_input_ids, inputs.sharer_attention_mask, keep_all_tokens=True
                )
        with stage("fuse"):
            fused = (fusers or self.fusers)(
                kv.layers(sharer_cache),
                kv.layers(receiver_cache),
                mask,
                layers=control.layers,
                strength=control.strength,
            )
            for layer_idx, (keys, values) in fused.items():
                kv.replace_layer(receiver_cache, layer_idx, keys, values)
        return receiver_cache

    def forward(
        self,
        inputs: C2CInputs,
        prompt_length: int,
        labels: torch.Tensor | None = None,
        *,
        fusers: nn.Module | None = None,
        enabled: bool = True,
        control: FusionControl | None = None,
        stage: Stage = _untimed,
    ) -> CausalLMOutputWithPast:
        """Teacher-forced pass for training: fuse the prompt, then score the continuation.

        Prompts are left-padded and continuations right-padded, so every prompt ends at column
        `prompt_length - 1` and padding never sits inside a sequence.

        Args:
            inputs: (B, L) tokens: left-padded prompt of length `prompt_length`, then the response.
            prompt_length: Columns belonging to the prompt (the same for every row).
            labels: (B, L) targets, -100 where no loss applies (the prompt, padding).
            fusers: The fuser module to call (a DDP wrapper in distributed training).
            enabled: False gives the receiver-only baseline through the same path.
            control: Strength, layer subset and proportion of fusion; default plain C2C.
            stage: Wraps the `prefill`, `sharer`, `fuse` and `score` stages (for timing them).

        Returns:
            The receiver's output on columns `prompt_length - 1 ..`: `logits` (B, L - P + 1, V) and
            `loss` (mean cross-entropy over labelled tokens) when labels are given.
        """
        if not 1 <= prompt_length <= inputs.input_ids.shape[1]:
            raise ValueError(f"prompt_length must be in [1, {inputs.input_ids.shape[1]}], got {prompt_length}")
        start = prompt_length - 1
        reading: AbstractContextManager[Any] = nullcontext()
        if enabled and control is not None and control.fuses_response:
            fusion = ResponseFusion(self, inputs.truncate(prompt_length), control, fusers=fusers, stage=stage)
            cache, reading = fusion.fused_cache, fusion.reading(inputs.input_ids[:, start:], inputs.attention_mask)
        else:
            cache = self.fuse(
                inputs.truncate(prompt_length - 1), fusers=fusers, enabled=enabled, control=control, stage=stage
            )
        with stage("score"), reading:
            return self.receiver(
                input_ids=inputs.input_ids[:, start:],
                attention_mask=inputs.attention_mask,
                position_ids=kv.positions(inputs.attention_mask)[:, start:],
                labels=None if labels is None else labels[:, start:],
                use_cache=True,
                **{kv.cache_kwarg(self.receiver): cache},
            )

    @torch.no_grad()
    def generate(
        self,
        messages: Messages | list[Messages] | str | None = None,
        *,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        sharer_input_ids: torch.Tensor | None = None,
        sharer_attention_mask: torch.Tensor | None = None,
        fusion_mask: torch.Tensor | None = None,
        fuse: bool = True,
        fusion_strength: float = 1.0,
        fuse_layers: Iterable[int] | None = None,
        fuse_proportion: float = 1.0,
        include_response: bool = False,
        enable_thinking: bool = False,
        **generate_kwargs: Any,
    ) -> Any:
        """Generate with the receiver reading the fused cache.

        Give either chat `messages` (a string, one conversation, or a list of conversations) or token
        ids. Remaining keyword arguments go to Hugging Face `generate` (`max_new_tokens`, `do_sample`,
        `streamer`, `return_dict_in_generate`, `output_logits`, ...).

        Args:
            messages: A user string, a conversation (list of messages) or a batch of conversations.
            input_ids: (B, N) left-padded receiver ids, instead of messages.
            attention_mask: (B, N) receiver mask.
            sharer_input_ids: (B, N) sharer ids aligned to `input_ids` (default: the same ids).
            sharer_attention_mask: (B, N) sharer mask.
            fusion_mask: (B, N) bool: which prompt tokens get fused (default: all; the last prompt
                token is never fused, since the receiver runs it over the fused cache).
            fuse: False runs the receiver alone through the same code path (for comparison).
            fusion_strength: alpha >= 0, the scale of every fused delta (0: receiver alone, 1: C2C).
            fuse_layers: Receiver layers to fuse, among the layer map's (None: all; []: none).
            fuse_proportion: p in [0, 1]: fuse only the last floor(p * n) of the prompt's n fused
                tokens (0: receiver alone, 1: C2C).
            include_response: Keep the sharer reading the generated tokens and fuse each one as the
                receiver reads it (`response_fusion.py`); `fuse_proportion` then counts prompt tokens only.
            enable_thinking: Passed to chat templates that use it (Qwen3).

        Returns:
            For messages: the generated text (a string for one conversation, a list for a batch).
            For token ids: whatever Hugging Face `generate` returns (sequences include the prompt).
        """
        if (messages is None) == (input_ids is None):
            raise ValueError("pass either chat messages or input_ids, not both and not neither")
        control = FusionControl.from_kwargs(fusion_strength, fuse_layers, fuse_proportion, include_response)
        check_generation_kwargs(generate_kwargs)
        single = False
        if messages is not None:
            conversations, single = _as_conversations(messages)
            inputs = self.encode(conversations, enable_thinking=enable_thinking)
        else:
            inputs = self.inputs_from_ids(
                input_ids,
                attention_mask,
                sharer_input_ids=sharer_input_ids,
                sharer_attention_mask=sharer_attention_mask,
                fusion_mask=fusion_mask,
            )
        self._check_prompt_length(inputs.input_ids.shape[1], generate_kwargs.get("max_new_tokens"))
        out = self.generate_from_inputs(inputs, fuse=fuse, control=control, **generate_kwargs)
        if messages is None:
            return out
        sequences = out.sequences if hasattr(out, "sequences") else out
        texts = self.receiver_tokenizer.batch_decode(
            sequences[:, inputs.input_ids.shape[1] :], skip_special_tokens=True
        )
        return texts[0] if single else texts

    def _check_prompt_length(self, length: int, max_new_tokens: Any) -> None:
        """Refuse a prompt longer than either model's positions; warn when the answer would run past them."""
        for role, model in (("receiver", self.receiver), ("sharer", self.sharer)):
            limit = getattr(model.config.get_text_config(), "max_position_embeddings", None)
            if limit is None:
                continue
            name = getattr(model, "name_or_path", None) or model.config.model_type
            if length > limit:
                raise ValueError(
                    f"the prompt is {length} tokens but the {role} {name!r} reads at most {limit} positions "
                    "(max_position_embeddings); shorten the prompt"
                )
            if role == "receiver" and isinstance(max_new_tokens, int) and length + max_new_tokens > limit:
                logger.warning(
                    "prompt (%d tokens) + max_new_tokens (%d) exceed the receiver's %d positions; tokens past them are unreliable",
                    length, max_new_tokens, limit,
                )  # fmt: skip

    @torch.no_grad()
    def generate_from_inputs(
        self,
        inputs: C2CInputs,
        *,
        fuse: bool = True,
        control: FusionControl | None = None,
        stage: Stage = _untimed,
        **generate_kwargs: Any,
    ) -> Any:
        """`generate` on prepared `C2CInputs` (with `control` of fusion; `stage` wraps `prefill`, `sharer`,
        `fuse` and `decode`; with `control.include_response` the fusers run inside `decode`); returns
        Hugging Face `generate`'s output."""
        decoding: AbstractContextManager[Any] = nullcontext()
        if fuse and control is not None and control.fuses_response:
            fusion = ResponseFusion(self, inputs, control, fusers=None, stage=stage)
            cache, decoding = fusion.fused_cache, fusion.decoding()
        else:
            cache = self.fuse(
                inputs.truncate(inputs.input_ids.shape[1] - 1), enabled=fuse, control=control, stage=stage
            )
        if self.receiver_tokenizer is not None and self.receiver.generation_config.pad_token_id is None:
            generate_kwargs.setdefault("pad_token_id", self.receiver_tokenizer.pad_token_id)
        if cache is not None:
            generate_kwargs[kv.cache_kwarg(self.receiver)] = cache
        with stage("decode"), decoding:
            return self.receiver.generate(
                input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **generate_kwargs
            )


def build_fusers(config: C2CConfig, *, seed: int | None = None) -> FuserStack:
    """Fresh fp32 fusers for every receiver layer in `config.layer_map`."""
    generator_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        kwargs = config.fuser_kwargs()
        fusers = {t: C2CFuser(**kwargs) for t in config.layer_map}
    finally:
        if seed is not None:
            torch.random.set_rng_state(generator_state)
    return FuserStack(config.layer_map, fusers)


ROLES: tuple[str, ...] = ("system", "user", "assistant")
"""The chat roles a prompt may use."""


def check_generation_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse generation settings Hugging Face would accept silently or report without the fix.

    Raises:
        ValueError: `max_new_tokens` not a positive integer, `temperature` not > 0, `top_p` outside
            (0, 1] or `top_k` not a non-negative integer.
    """
    problems = []
    max_new = kwargs.get("max_new_tokens")
    if max_new is not None and (not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1):
        problems.append(
            f"max_new_tokens={max_new!r}: expected a positive integer (the most tokens to generate), e.g. 64"
        )
    temperature = kwargs.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not temperature > 0):
        problems.append(
            f"temperature={temperature!r}: expected a number > 0 (1.0 samples as trained; for greedy decoding, drop do_sample)"
        )
    top_p = kwargs.get("top_p")
    if top_p is not None and (not isinstance(top_p, int | float) or not 0 < top_p <= 1):
        problems.append(f"top_p={top_p!r}: expected a probability mass in (0, 1], e.g. 0.9 (1.0 keeps every token)")
    top_k = kwargs.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        problems.append(f"top_k={top_k!r}: expected an integer >= 0 (0 keeps every token)")
    if problems:
        raise ValueError("bad generation settings: " + "; ".join(problems))


def _as_conversations(messages: Messages | list[Messages] | str) -> tuple[list[Messages], bool]:
    """Normalise a prompt to a batch of conversations; the flag says it was a single one.

    Raises:
        ValueError: not a string, a conversation or a list of conversations; an unknown role; a
            message without string content; or a user message with no text.
    """
    if isinstance(messages, str):
        conversations, single = [[{"role": "user", "content": messages}]], True
    elif isinstance(messages, list | tuple) and messages and isinstance(messages[0], dict):
        conversations, single = [list(messages)], True  # type: ignore[list-item]
    elif isinstance(messages, list | tuple) and messages and all(isinstance(c, list | tuple) for c in messages):
        conversations, single = [list(c) for c in messages], False  # type: ignore[union-attr]
    else:
        raise ValueError(
            f"messages must be a string, a conversation (a list of {{'role', 'content'}} dicts) or a list of conversations; "
            f"got {type(messages).__name__} {str(messages)[:40]!r}"
        )
    for b, conversation in enumerate(conversations):
        where = f"conversation {b}, " if not single else ""
        if not conversation:
            raise ValueError(
                f"{f'conversation {b}' if not single else 'the conversation'} has no messages; give at least one user message"
            )
        for i, message in enumerate(conversation):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise ValueError(f"{where}message {i}: expected a dict with a string 'content', got {message!r}")
            role = message.get("role")
            if role not in ROLES:
                raise ValueError(f"{where}message {i}: role {role!r} is not one of {', '.join(ROLES)}; fix the role")
            if role == "user" and not message["content"].strip():
                raise ValueError(
                    f"{where}message {i}: the user message is empty; give the question or instruction to answer"
                )
    return conversations, single


def _same_vocab(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """True when two tokenizers map every token string to the same id."""
    return a is b or (len(a) == len(b) and a.get_vocab() == b.get_vocab())
