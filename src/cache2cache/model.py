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

Around the model: `encoding.py` tokenizes prompts into `C2CInputs`, `generation.py` checks a
generation call's arguments, `pairing.py` checks that the models and tokenizers fit the config.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from . import encoding, kv
from .checkpoint import load_pair, save_c2c
from .config import C2CConfig, FuserConfig
from .control import FusionControl
from .frozen import freeze
from .fuser import FuserStack
from .generation import check_generation_kwargs, check_prompt_length, sharer_message_batch
from .inputs import C2CInputs, Messages, SharerInputs, Stage, as_conversations, untimed
from .layer_map import LayerMapName
from .pairing import aligner_for, check_models, sharer_lists, unshared_sharer_ids
from .response_fusion import ResponseFusion
from .sharer_prompt import encode_with_sharer_messages
from .sharers import MultiFuserStack, build_fusers, run_fusers

logger = logging.getLogger(__name__)


class C2CModel(nn.Module):
    """A receiver LLM that reads a sharer LLM's KV-cache through trained fusers.

    Both LLMs are frozen and stay in eval mode whatever `.train()` says; only `fusers` train.

    Several sharers (docs/method.md §7): give `sharer` (and `sharer_tokenizer`) as lists, with a
    config that records them all (`C2CConfig.more_sharers`) and a `MultiFuserStack`. `sharer`,
    `sharer_tokenizer` and `aligner` are then the first sharer's; `sharers`, `sharer_tokenizers` and
    `aligners` hold every sharer's.

    Args:
        receiver: The causal LM that answers.
        sharer: The causal LM whose cache is fused into the receiver's, or a list of them.
        fusers: One fuser per mapped receiver layer (a `MultiFuserStack` for several sharers).
        config: The pair's architecture (fingerprints, fuser hyperparameters, layer map).
        receiver_tokenizer: Needed to generate from chat messages.
        sharer_tokenizer: The sharer's tokenizer (a list for several sharers); when it differs from
            the receiver's, prompts are token-aligned (see `alignment.py`). None means the sharer
            shares the receiver's tokenizer.
    """

    def __init__(
        self,
        receiver: PreTrainedModel,
        sharer: PreTrainedModel | Sequence[PreTrainedModel],
        fusers: FuserStack | MultiFuserStack,
        config: C2CConfig,
        receiver_tokenizer: PreTrainedTokenizerBase | None = None,
        sharer_tokenizer: PreTrainedTokenizerBase | Sequence[PreTrainedTokenizerBase | None] | None = None,
    ) -> None:
        super().__init__()
        sharers, tokenizers = sharer_lists(sharer, sharer_tokenizer, config, fusers)
        # Any: causal LMs are PreTrainedModel plus GenerationMixin, a combination transformers' types lack.
        self.receiver: Any = freeze(receiver)
        self.sharer: Any = freeze(sharers[0])
        self.more_sharers = nn.ModuleList(freeze(m) for m in sharers[1:])
        self.fusers = fusers
        self.config = config
        self.receiver_tokenizer = receiver_tokenizer
        self.sharer_tokenizers = tokenizers
        self.sharer_tokenizer = tokenizers[0]
        self.aligners = [aligner_for(receiver_tokenizer, tok, config.alignment_strategy) for tok in tokenizers]
        self.aligner = self.aligners[0]

    @property
    def sharers(self) -> list[PreTrainedModel]:
        """Every sharer, the first (`sharer`) included, in the config's order."""
        return [self.sharer, *self.more_sharers]

    # ----------------------------------------------------------------------------------- building

    @classmethod
    def from_models(
        cls,
        receiver: PreTrainedModel,
        sharer: PreTrainedModel | Sequence[PreTrainedModel],
        config: C2CConfig | None = None,
        *,
        fuser: FuserConfig | None = None,
        layer_map: LayerMapName | dict[int, int] = "terminal",
        sharer_mode: str = "parallel",
        receiver_tokenizer: PreTrainedTokenizerBase | None = None,
        sharer_tokenizer: PreTrainedTokenizerBase | Sequence[PreTrainedTokenizerBase | None] | None = None,
        seed: int | None = None,
    ) -> C2CModel:
        """Wrap loaded models with freshly initialised fusers (fp32, on the receiver's device).

        Args:
            receiver: The receiver.
            sharer: The sharer, or a list of sharers (each gets its own fusers).
            config: A full pair config; built from `fuser`, `layer_map` and `sharer_mode` when None.
            fuser: Fuser hyperparameters when `config` is None (published defaults otherwise).
            layer_map: "terminal" (default), "depth" or an explicit dict, when `config` is None.
            sharer_mode: With several sharers: "parallel" (default) or "sequential" (docs/method.md §7).
            receiver_tokenizer: Receiver tokenizer (needed for chat-message inputs).
            sharer_tokenizer: Sharer tokenizer (a list for several sharers), when it differs from the receiver's.
            seed: Seed for the fusers' initialisation; the first sharer's fusers are the ones a pair
                with that sharer gets from the same seed.

        Example:
            >>> model = C2CModel.from_models(receiver, [sharer_a, sharer_b], sharer_mode="sequential")  # doctest: +SKIP
        """
        sharers = list(sharer) if isinstance(sharer, Sequence) else [sharer]
        config = config or C2CConfig.for_pair(
            receiver, sharers[0], fuser=fuser, layer_map=layer_map, more_sharers=sharers[1:], sharer_mode=sharer_mode
        )
        model = cls(receiver, sharers, build_fusers(config, seed=seed), config, receiver_tokenizer, sharer_tokenizer)
        model.check_pair()
        return model.to_fuser_device()

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, **kwargs: Any) -> C2CModel:
        """Load fusers saved with `save_pretrained`, or in the published layout, with the models they
        record or those given; in eval mode. Arguments: see `checkpoint.load_pair`."""
        model = cls(*load_pair(path_or_hub_id, **kwargs))
        model.check_pair()
        return model.eval()

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write exactly `c2c_config.json` and `fuser.safetensors` into `directory`, atomically."""
        return save_c2c(self.config, self.fusers, directory)

    def check_pair(self) -> None:
        """Raise `ValueError` if the loaded models do not match the config's fingerprints."""
        check_models(self.config, self.receiver, self.sharers)

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

    def chat_tokenizer(self) -> PreTrainedTokenizerBase:
        """The receiver's tokenizer, which chat messages need (a ValueError naming the fix without one)."""
        if self.receiver_tokenizer is None:
            raise ValueError(
                "chat messages need a receiver tokenizer: pass receiver_tokenizer= when building the C2CModel"
            )
        return self.receiver_tokenizer

    def encode(
        self,
        conversations: list[Messages],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool = False,
        sharer_conversations: list[Messages] | None = None,
    ) -> C2CInputs:
        """Render chat conversations with the chat templates and tokenize them for both models.

        With a shared tokenizer the sharer reads the receiver's ids; otherwise the token aligner
        renders each side with its own template and maps message tokens 1:1, and only message tokens
        are fused. Left padding.

        Args:
            conversations: B conversations, each a list of `{"role", "content"}` messages.
            add_generation_prompt: Append the assistant turn header (for generation).
            enable_thinking: Passed to templates that use it (Qwen3); off by default, as in the paper.
            sharer_conversations: B conversations for the sharer to read instead of `conversations`,
                laid out by `sharer_prompt.py`'s rule (receiver filler where the sharer's prompt is longer).

        Returns:
            `C2CInputs` on the receiver's device. For a shared tokenizer, every prompt token is in
            the fusion mask (the last one is never fused, since it is not prefilled). With several
            sharers, each is aligned on its own to the same receiver tokens (`more_sharers`).
        """
        tok = self.chat_tokenizer()
        if sharer_conversations is not None:
            return encode_with_sharer_messages(
                self, conversations, sharer_conversations,
                add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking,
            )  # fmt: skip
        return encoding.encode_conversations(
            tok,
            self.aligners,
            conversations,
            add_generation_prompt=add_generation_prompt,
            enable_thinking=enable_thinking,
        ).to(self.device)

    def inputs_from_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        sharer_input_ids: torch.Tensor | Sequence[torch.Tensor] | None = None,
        sharer_attention_mask: torch.Tensor | Sequence[torch.Tensor] | None = None,
        fusion_mask: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> C2CInputs:
        """Build `C2CInputs` from token ids (left-padded). Sharer ids default to the receiver's,
        which is only valid for a shared tokenizer; the fusion mask defaults to every real token.

        With several sharers, each sharer argument may be a list with one (B, N) tensor per sharer;
        a single tensor (or None) applies to every sharer."""
        return encoding.inputs_from_ids(
            input_ids,
            attention_mask,
            sharer_input_ids=sharer_input_ids,
            sharer_attention_mask=sharer_attention_mask,
            fusion_mask=fusion_mask,
            aligners=self.aligners,
            sharer_vocab_sizes=[link.sharer.vocab_size for link in self.config.sharers],
        ).to(self.device)

    # ----------------------------------------------------------------------------------- the method

    def fuse(
        self,
        inputs: C2CInputs,
        *,
        fusers: nn.Module | None = None,
        enabled: bool = True,
        control: FusionControl | None = None,
        stage: Stage = untimed,
    ) -> Cache | None:
        """Prefill both models on `inputs` and fuse the sharer's cache into the receiver's.

        Both LLM passes run without gradients; the fusers run with them when grad is enabled, so a
        loss on the receiver's continuation trains the fusers through the fused cache.

        Args:
            inputs: The tokens to prefill, (B, P) each: normally the prompt minus its last token.
            fusers: The fuser module to call (e.g. a DDP-wrapped `self.fusers`); default `self.fusers`.
            enabled: False runs the receiver-only path: the same prefill, no sharer, no fusion.
            control: Strength, layer subset and proportion of fusion, and the sharer ablation
                (`control.py`); default plain C2C.
            stage: Wraps the `prefill`, `sharer` and `fuse` stages (for timing them).

        Returns:
            The receiver's cache over the P tokens, fused where `inputs.fusion_mask` is True (and
            `control` allows); None if P == 0.
        """
        control = control or FusionControl()
        control.check_layers(self.config.fused_layers)
        if inputs.input_ids.shape[1] == 0:
            return None
        sides = self._sharer_inputs(inputs)
        masks = [control.fusion_mask(side.fusion_mask) for side in sides]
        with torch.no_grad():
            with stage("prefill"):
                receiver_cache = kv.prefill(self.receiver, inputs.input_ids, inputs.attention_mask)
            if not enabled or control.fuses_nothing or not any(bool(mask.any()) for mask in masks):
                return receiver_cache
            with stage("sharer"):
                sharer_kv = [
                    self._sharer_kv(sharer, side, inputs, receiver_cache)
                    for sharer, side in zip(self.sharers, sides, strict=True)
                ]
                if control.ablate_sharer:
                    sharer_kv = [control.ablated(layers, mask) for layers, mask in zip(sharer_kv, masks, strict=True)]
        with stage("fuse"):
            fused = run_fusers(
                fusers or self.fusers,
                sharer_kv,
                kv.layers(receiver_cache),
                masks,
                layers=control.layers,
                strength=control.strength,
            )
            for layer_idx, (keys, values) in fused.items():
                kv.replace_layer(receiver_cache, layer_idx, keys, values)
        return receiver_cache

    def _sharer_kv(
        self, sharer: PreTrainedModel, side: SharerInputs, inputs: C2CInputs, receiver_cache: Cache
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One sharer's (K, V) per layer, each (B, H_kv, N, D), over every prompt token.

        A sharer that is the receiver itself (the `self` control) reading the receiver's own ids and
        mask would compute the receiver's prefill again: its cache is taken instead, unless a
        sliding-window layer kept fewer than the N tokens fusion reads. Fusion later swaps the
        receiver cache's tensors for new ones (`kv.replace_layer`), so the list taken here keeps the
        unfused K/V.
        """
        if sharer is self.receiver and torch.equal(side.input_ids, inputs.input_ids):
            own = kv.layers(receiver_cache)
            tokens = inputs.input_ids.shape[1]
            if torch.equal(side.attention_mask, inputs.attention_mask) and all(k.shape[2] == tokens for k, _ in own):
                return own
        return kv.layers(kv.prefill(sharer, side.input_ids, side.attention_mask, keep_all_tokens=True))

    def _sharer_inputs(self, inputs: C2CInputs) -> list[SharerInputs]:
        """Every sharer's inputs; refuses to let a sharer read another's ids when their tokenizers differ."""
        if len(self.sharers) > 1 and not inputs.more_sharers:
            unshared = self.unshared_sharer_ids()
            if unshared:
                raise ValueError(
                    f"{unshared}: build the inputs with C2CModel.encode (chat messages), or pass one sharer_input_ids per sharer"
                )
        return inputs.sharer_inputs(len(self.sharers))

    def unshared_sharer_ids(self) -> str | None:
        """Why sharers past the first cannot read the first sharer's token ids (a different tokenizer), or None."""
        return unshared_sharer_ids(self.receiver_tokenizer, self.sharer_tokenizers)

    def forward(
        self,
        inputs: C2CInputs,
        prompt_length: int,
        labels: torch.Tensor | None = None,
        *,
        fusers: nn.Module | None = None,
        enabled: bool = True,
        control: FusionControl | None = None,
        stage: Stage = untimed,
    ) -> CausalLMOutputWithPast:
        """Teacher-forced pass for training: fuse the prompt, then score the continuation.

        Prompts are left-padded and continuations right-padded, so every prompt ends at column
        `prompt_length - 1` and padding never sits inside a sequence. In eval mode, rows that repeat a
        prompt (the choices of one question) share one prefill and fusion of it.

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
        cache: Cache | None
        if enabled and control is not None and control.fuses_response:
            fusion = ResponseFusion(self, inputs.truncate(prompt_length), control, fusers=fusers, stage=stage)
            cache, reading = fusion.fused_cache, fusion.reading(inputs.input_ids[:, start:], inputs.attention_mask)
        else:
            prompts = inputs.truncate(prompt_length - 1)
            # rows repeating a prompt (one per choice of a question) share its fusion; training samples
            # gate noise per row, so it keeps every row
            repeated = None if self.training else prompts.distinct_rows()
            cache = self.fuse(
                repeated[0] if repeated else prompts, fusers=fusers, enabled=enabled, control=control, stage=stage
            )
            if repeated and cache is not None:
                cache.batch_select_indices(repeated[1])
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
        sharer_messages: Messages | list[Messages] | str | None = None,
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
            sharer_messages: A separate prompt for the sharer, shaped like `messages` (one per
                conversation); the receiver's prompt gets filler positions for the sharer's extra
                tokens (`sharer_prompt.py`, docs/method.md §1.6). None: the sharer reads `messages`.

        Returns:
            For messages: the generated text (a string for one conversation, a list for a batch).
            For token ids: whatever Hugging Face `generate` returns (sequences include the prompt).
        """
        if (messages is None) == (input_ids is None):
            raise ValueError("pass either chat messages or input_ids, not both and not neither")
        control = FusionControl.from_kwargs(fusion_strength, fuse_layers, fuse_proportion, include_response)
        check_generation_kwargs(generate_kwargs)
        single = False
        sharer_conversations = None if sharer_messages is None else sharer_message_batch(messages, sharer_messages)
        if input_ids is None:
            conversations, single = as_conversations(messages)
            inputs = self.encode(
                conversations, enable_thinking=enable_thinking, sharer_conversations=sharer_conversations
            )
        else:
            inputs = self.inputs_from_ids(
                input_ids,
                attention_mask,
                sharer_input_ids=sharer_input_ids,
                sharer_attention_mask=sharer_attention_mask,
                fusion_mask=fusion_mask,
            )
        check_prompt_length(
            self.receiver, self.sharers, inputs.input_ids.shape[1], generate_kwargs.get("max_new_tokens")
        )
        out = self.generate_from_inputs(inputs, fuse=fuse, control=control, **generate_kwargs)
        if messages is None:
            return out
        sequences = out.sequences if hasattr(out, "sequences") else out
        texts = self.chat_tokenizer().batch_decode(sequences[:, inputs.input_ids.shape[1] :], skip_special_tokens=True)
        return texts[0] if single else texts

    # generate's argument checks, written in generation.py
    @torch.no_grad()
    def generate_from_inputs(
        self,
        inputs: C2CInputs,
        *,
        fuse: bool = True,
        control: FusionControl | None = None,
        stage: Stage = untimed,
        fused_cache: Cache | None = None,
        **generate_kwargs: Any,
    ) -> Any:
        """`generate` on prepared `C2CInputs` (with `control` of fusion; `stage` wraps `prefill`, `sharer`,
        `fuse` and `decode`; with `control.include_response` the fusers run inside `decode`); returns
        Hugging Face `generate`'s output. `fused_cache`: the cache over the prompt minus its last token,
        computed elsewhere (`prefix.py` reuses a prefix's); decoding extends it."""
        decoding: AbstractContextManager[Any] = nullcontext()
        cache: Cache | None
        if fused_cache is not None:
            cache = fused_cache
        elif fuse and control is not None and control.fuses_response:
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
