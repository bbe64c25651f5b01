"""`C2CLM`: an EleutherAI lm-evaluation-harness model, registered as `c2c`, so lm-eval tasks run through C2C.

    import lm_eval
    from lm_eval.tasks import TaskManager
    from cache2cache.evaluation.lm_eval import C2CLM

    lm = C2CLM(fuser="runs/pair/final", batch_size=8)          # or C2CLM(model=c2c_model)
    out = lm_eval.simple_evaluate(model=lm, tasks=["arc_easy_local"],
                                  task_manager=TaskManager(include_path="my_tasks/"))
    out["results"]["arc_easy_local"]["acc,none"]

Importing this module registers the name, so `simple_evaluate(model="c2c", model_args="fuser=...,
batch_size=8")` also works in that process. lm-eval 0.4.13's own CLI has a fixed model table and does
not discover models from other packages: `c2c lm-eval ARGS` registers the model and runs that CLI
(newer lm-eval finds it through the `lm_eval.models` entry point in pyproject.toml). Offline tasks are local YAML files with
`dataset_path: json` and `dataset_kwargs: {data_files: {test: /abs/path.jsonl}}` (see docs/results.md).

How requests map onto C2C:

- `loglikelihood` (TemplateLM tokenizes context and continuation with the receiver's tokenizer): the
  context minus its last token is prefilled by both models and fused, then one receiver pass runs
  [last context token + continuation] over the fused cache (`C2CModel.forward`); the continuation's
  log-probabilities are summed and `is_greedy` checks each is the argmax.
- `generate_until`: `C2CModel.generate_from_inputs` (greedy unless `do_sample`), stopping at the
  `until` strings, which are cut from the text.
- `loglikelihood_rolling`: lm-eval's disjoint rolling windows, each scored as above.

Prompts are raw text (lm-eval's default, `apply_chat_template=False`): every context token is fused.
When the tokenizers differ, the sharer reads the receiver's tokens mapped 1:1 (`TokenAligner.align_tokens`).
`fuse=False` evaluates the receiver alone through the same path; `fusion_strength`, `fuse_layers`
(`fuse_layers=0:1:2` in `model_args`) and `fuse_proportion` narrow the fusion, and `include_response=true`
also fuses the continuation (scored or generated) with the sharer reading it (`FusionControl`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval fills its own model table only while the table is empty)
import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm
from transformers import StoppingCriteriaList

from ..control import FusionControl
from ..inputs import C2CInputs, left_pad, pad_id
from ..loading import usable_device
from ..model import C2CModel
from .config import EvalConfig
from .modes import stop_criteria
from .runner import build_model
from .scoring import append_continuations, continuation_logprobs, greedy_flags

logger = logging.getLogger(__name__)


def _flag(value: bool | str) -> bool:
    """A boolean from Python or from lm-eval's `model_args` text ("True", "false", "1")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _layer_list(value: list[int] | int | str | None) -> list[int] | None:
    """Receiver layers from Python (a list, an int) or from `model_args` text ("0:1:2"; "" is none)."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    parts = [part.strip() for part in str(value).split(":") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise ValueError(
            f"fuse_layers={value!r}: expected receiver layers joined by ':' (e.g. fuse_layers=0:1:2), since ',' separates model_args"
        )
    return [int(part) for part in parts]


@register_model("c2c")
class C2CLM(TemplateLM):
    """A `C2CModel` as an lm-eval model.

    Args:
        model: A loaded pair; otherwise it is built from `fuser` (and `receiver` / `sharer`).
        fuser: A fuser checkpoint (folder, published layout or hub id).
        receiver: The receiver (default: the one the checkpoint records).
        sharer: The sharer (default: the one the checkpoint records).
        subfolder: Folder inside `fuser`.
        fuse: False scores with the receiver alone (then `fuser` may be omitted: the pair is built
            from `receiver` and `sharer` without fusers, as `c2c eval` does for its baselines).
        batch_size: Requests per forward pass.
        max_length: Longest context + continuation (default: the receiver's `max_position_embeddings`).
        max_gen_toks: Default generation budget when a task gives none.
        add_bos_token: Prepend the receiver's special tokens (BOS) when tokenizing contexts.
        dtype: Model dtype when building ("auto", "float32", "bfloat16", "float16").
        fusion_strength: alpha >= 0, the scale of every fused delta (0: receiver alone, 1: C2C).
        fuse_layers: Receiver layers to fuse: a list, or in `model_args` text the layers joined by
            ":" (`fuse_layers=0:1:2`; `fuse_layers=` fuses none); None fuses every mapped layer.
        fuse_proportion: p in [0, 1]: fuse only the last p of each context's tokens.
        include_response: Also fuse the continuation, scored or generated (`response_fusion.py`).
        device: Device when building ("auto", "cpu", "cuda", ...; default: cuda when available). CUDA on a
            machine without it falls back to the CPU with a warning (lm-eval's CLI says `cuda:0`).
        **kwargs: Other lm-eval arguments (`max_batch_size`), ignored.

    Raises:
        ValueError: Neither `model` nor `fuser` given with `fuse=True` (untrained fusers are never used).
    """

    def __init__(
        self,
        model: C2CModel | None = None,
        *,
        fuser: str | None = None,
        receiver: str | None = None,
        sharer: str | None = None,
        subfolder: str | None = None,
        fuse: bool | str = True,
        batch_size: int | str = 8,
        max_length: int | str | None = None,
        max_gen_toks: int | str = 256,
        add_bos_token: bool | str = False,
        dtype: str = "auto",
        device: str | None = None,
        fusion_strength: float | str = 1.0,
        fuse_layers: list[int] | int | str | None = None,
        fuse_proportion: float | str = 1.0,
        include_response: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.fuse = _flag(fuse)
        self.control = FusionControl.from_kwargs(
            float(fusion_strength), _layer_list(fuse_layers), float(fuse_proportion), _flag(include_response)
        )
        if model is None:
            if self.fuse and not fuser:
                raise ValueError(
                    "C2CLM needs model= or fuser= (a trained checkpoint); for the receiver alone pass fuse=False with receiver= and sharer="
                )
            model = build_model(EvalConfig(receiver=receiver, sharer=sharer, fuser=fuser, subfolder=subfolder, dtype=dtype,  # type: ignore[arg-type]
                                           device=str(usable_device(None if device == "auto" else device)), modes=["c2c" if fuser else "receiver"]))  # fmt: skip
        if model.receiver_tokenizer is None:
            raise ValueError("C2CLM needs a C2CModel with a receiver_tokenizer")
        self.control.check_layers(model.config.fused_layers)
        self.c2c = model.eval()
        self.tokenizer = model.receiver_tokenizer
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        if str(batch_size) != str(self.batch_size):
            logger.warning("batch_size %r is not a number (lm-eval's 'auto' is not supported); using 8", batch_size)
        self._max_length = (
            int(max_length)
            if max_length is not None
            else int(getattr(model.receiver.config, "max_position_embeddings", 2048))
        )
        self.max_gen_toks = int(max_gen_toks)
        self.add_bos_token = _flag(add_bos_token)
        if kwargs:
            logger.info("C2CLM ignores lm-eval arguments %s", sorted(kwargs))

    # ------------------------------------------------------------------------------ lm-eval API

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None) -> C2CLM:
        """lm-eval's constructor hook: `model_args` win over the run-wide settings lm-eval adds.

        lm-eval's CLI always adds `batch_size` (1 unless `--batch_size` is given), which would
        otherwise clash with a `batch_size` in `model_args`.
        """
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None) -> C2CLM:
        """`create_from_arg_obj` on `model_args` text (`"fuser=runs/pair/final,batch_size=8"`)."""
        return cls.create_from_arg_obj(lm_utils.simple_parse_args_string(arg_string), additional_config)

    @property
    def eot_token_id(self) -> int:
        """The receiver's end-of-sequence id (lm-eval's context for an empty context)."""
        return int(self.tokenizer.eos_token_id)

    @property
    def max_length(self) -> int:
        """Longest sequence scored (context is cut from the left beyond it)."""
        return self._max_length

    @property
    def device(self) -> torch.device:
        """The receiver's device."""
        return self.c2c.device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Receiver token ids of `string` (special tokens only with `add_bos_token` or when asked)."""
        add = self.add_bos_token if add_special_tokens is None else add_special_tokens
        return self.tokenizer.encode(string, add_special_tokens=add)

    def tok_decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        """Text of receiver token ids."""
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    # ------------------------------------------------------------------------------ internals

    def _inputs(self, prompts: list[list[int]]) -> C2CInputs:
        """Left-padded `C2CInputs` for receiver token lists; the sharer's tokens mapped 1:1 when its tokenizer differs."""
        ids, mask = left_pad(prompts, pad_id(self.tokenizer))
        aligner = self.c2c.aligner
        if aligner is None:
            return self.c2c.inputs_from_ids(ids, mask)
        sharer_ids, _ = left_pad([aligner.align_tokens(p) for p in prompts], aligner.sharer_pad_id)
        return self.c2c.inputs_from_ids(ids, mask, sharer_input_ids=sharer_ids, sharer_attention_mask=mask)

    @torch.inference_mode()
    def _loglikelihood_tokens(
        self,
        requests: list[tuple[tuple[str, str], list[int], list[int]]],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        """Score `(strings, context ids, continuation ids)` requests through the fused cache, longest first."""
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        step = override_bs or self.batch_size
        pad = pad_id(self.tokenizer)
        for start in tqdm(range(0, len(order), step), disable=disable_tqdm, desc="c2c loglikelihood"):
            chunk = order[start : start + step]
            prompts, continuations = [], []
            for i in chunk:
                _, context, continuation = requests[i]
                whole = (context + continuation)[-(self.max_length + 1) :]
                length = min(len(continuation), len(whole) - 1)  # at least one context token stays
                prompts.append(whole[: len(whole) - length])
                continuations.append(whole[len(whole) - length :])
            inputs = self._inputs(prompts)
            prompt_length = inputs.input_ids.shape[1]
            batch = append_continuations(inputs, list(range(len(chunk))), continuations, pad)
            logits = self.c2c.forward(batch, prompt_length, enabled=self.fuse, control=self.control).logits
            scores = continuation_logprobs(logits, continuations)
            greedy = greedy_flags(logits, continuations)
            for i, score, is_greedy in zip(chunk, scores, greedy, strict=True):
                results[i] = (float(score.sum()), bool(is_greedy))
                if requests[i][0] is not None and requests[i][0][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], results[i])
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Total log-likelihood of each string, over lm-eval's disjoint rolling windows."""
        totals = []
        for request in tqdm(requests, disable=disable_tqdm, desc="c2c loglikelihood_rolling"):
            (string,) = request.args
            windows = map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1,
            ))  # fmt: skip
            scored = self._loglikelihood_tokens([((None, None), ctx, cont) for ctx, cont in windows], disable_tqdm=True)  # type: ignore[misc]
            totals.append(sum(score for score, _ in scored))
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), totals[-1])
        return totals

    @torch.inference_mode()
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Generate for each `(context, gen_kwargs)`; stop at `until` strings (cut from the text)."""
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        outputs: list[str] = [""] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="c2c generate_until")
        for indices in groups.values():
            kwargs = dict(requests[indices[0]].args[1])
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            if not kwargs.get("do_sample") or kwargs.get("temperature", 1.0) == 0:
                kwargs = {k: v for k, v in kwargs.items() if k not in ("temperature", "top_p", "top_k")}
                kwargs["do_sample"] = False
            if until:
                kwargs["stopping_criteria"] = StoppingCriteriaList([stop_criteria(self.tokenizer, until)])
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                prompts = [
                    self.tok_encode(requests[i].args[0])[-(self.max_length - max_new) :] or [self.prefix_token_id]
                    for i in chunk
                ]
                inputs = self._inputs(prompts)
                out = self.c2c.generate_from_inputs(
                    inputs, fuse=self.fuse, control=self.control, max_new_tokens=max_new, **kwargs
                )
                texts = self.tokenizer.batch_decode(out[:, inputs.input_ids.shape[1] :], skip_special_tokens=True)
                for i, text in zip(chunk, texts, strict=True):
                    for stop in until:
                        text = text.split(stop)[0]
                    outputs[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(chunk))
        bar.close()
        return outputs
