"""`run_eval`: answer the same multiple-choice items in several modes, side by side (`c2c eval`).

Modes (docs/method.md §6):

- `receiver`: the receiver alone, through the C2C code path with fusion off (`fuse=False`).
- `sharer`: the sharer alone, prompted with its own chat template (`render_chat`; base models get
  the plain-text fallback and their BOS token).
- `t2t`: text-to-text (docs/method.md §6.7). Stage 1: the sharer writes background from the question stem
  alone (`background_messages`, greedy, `communication_max_new_tokens`). Stage 2: the receiver
  answers the 3-turn chat [background prompt, background, question] (`t2t_messages`).
- `c2c`: the receiver reads its cache fused with the sharer's (needs trained fusers);
  `fusion_strength`, `fuse_layers` and `fuse_proportion` narrow the fusion, `include_response` widens it to
  the response, and `ablate_sharer` averages the sharer's cache over the prompt (`FusionControl`).

Answer methods: `generate` (greedy, `max_new_tokens`, `extract_choice`) and `loglik` (docs/method.md §6.4:
the response prefix follows the generation prompt, then either the letters " A", " B", ... are read
from the next-token distribution, or each choice's text is scored as a continuation, lm-eval style).
Untimed items run in batches (left padding); the first `latency_items` items run one at a time and
are timed stage by stage (`timing.py`). Results go to a run folder (see `run_eval`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..chat import render_chat
from ..config import FuserConfig
from ..control import FusionControl
from ..inputs import pad_id
from ..loading import load_model, load_tokenizer, parse_device
from ..model import C2CModel
from ..sharers import sharer_names
from ..tasks import MultipleChoiceItem, TaskError, load_task
from ..tasks.answers import extract_choice, letter
from ..tasks.prompts import (
    PromptStyle,
    background_messages,
    background_prompt,
    context_first,
    question_turn,
    t2t_messages,
)
from .config import MODES, EvalConfig
from .modes import SharerReplies, generated_lengths, sharer_encode, sharer_replies, sharer_texts
from .rundir import RunFolder
from .scoring import ChoiceScorer, append_continuations, append_tokens, continuation_logits
from .timing import StageClock, timed_forward, timed_generate

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass
class Answer:
    """One mode's answer to one item (before it becomes a per-item record)."""

    pred: int | None
    prompt: str
    prompt_tokens: int
    output: str | None = None
    output_tokens: int = 0
    scores: list[float] | None = None


@dataclass
class EvalResult:
    """What `run_eval` produced.

    Attributes:
        output_dir: The run folder.
        summary: The content of `summary.json`.
        records: The per-item records of this run's items and modes (as in `items.jsonl`).
    """

    output_dir: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]


def build_model(config: EvalConfig) -> C2CModel:
    """The models an eval config names.

    With `fuser`: `C2CModel.from_pretrained` (models default to those the checkpoint records; a
    checkpoint for another pair is refused by its shape check). Without: the receiver and sharer
    alone, wrapped with a single small placeholder fuser that never runs (only `receiver`, `sharer`
    and `t2t` are allowed then; `check_eval_config` refuses `c2c`).

    Raises:
        ValueError: The checkpoint does not fit the models; OSError: a model cannot be found.
    """
    device, dtype = parse_device(config.device), config.dtype
    if config.fuser:
        return C2CModel.from_pretrained(
            config.fuser,
            receiver=config.receiver,
            sharer=sharer_names(config.sharer),
            subfolder=config.subfolder,
            dtype=dtype,
            device=device,
        ).eval()
    receiver = load_model(config.receiver, dtype=dtype, device=device)
    sharer = load_model(config.sharer, dtype=dtype, device=device)
    placeholder = FuserConfig(hidden_dim=8, intermediate_dim=8, num_layers=3, dropout=0.0)
    return C2CModel.from_models(
        receiver, sharer, fuser=placeholder, layer_map={0: 0},
        receiver_tokenizer=load_tokenizer(config.receiver), sharer_tokenizer=load_tokenizer(config.sharer),
    ).eval()  # fmt: skip


def build_self_model(config: EvalConfig, model: C2CModel) -> C2CModel:
    """The `self` mode's pair: `model`'s receiver reading its own cache through `config.self_fuser`.

    The receiver is shared, not loaded twice; the checkpoint must have been trained with the receiver
    as its sharer (its recorded sharer shapes are checked against the receiver's).
    """
    if config.self_fuser is None:
        raise ValueError("mode 'self' needs --self_fuser, a fuser trained with the receiver as its own sharer")
    tok = model.chat_tokenizer()
    return C2CModel.from_pretrained(
        config.self_fuser, receiver=model.receiver, sharer=model.receiver, receiver_tokenizer=tok, sharer_tokenizer=tok
    )


def answer_messages(item: MultipleChoiceItem, style: PromptStyle) -> Messages:
    """The single-turn chat the receiver, the sharer and C2C answer."""
    return [{"role": "user", "content": question_turn(item, style)}]


def t2t_stage2_messages(item: MultipleChoiceItem, background: str, config: EvalConfig) -> Messages:
    """The T2T receiver's 3-turn chat: [background request, the sharer's background, the question]."""
    return t2t_messages(
        background_prompt(item.question, config.background_prompt), background, question_turn(item, config.prompt_style)
    )


class Evaluator:
    """Answers batches of items in one mode; holds the model and the run's settings.

    Args:
        model: The pair (its fusers are only used by the `c2c` mode).
        config: The run's settings (answer method, prompts, token budgets).
    """

    def __init__(self, model: C2CModel, config: EvalConfig, *, self_model: C2CModel | None = None) -> None:
        if model.receiver_tokenizer is None or model.sharer_tokenizer is None:
            raise ValueError(
                "evaluation renders chat prompts, so the C2CModel needs receiver_tokenizer and sharer_tokenizer"
            )
        self.model = model
        self.self_model = self_model
        self.config = config
        self.receiver_tokenizer: PreTrainedTokenizerBase = model.receiver_tokenizer
        self.sharer_tokenizer: PreTrainedTokenizerBase = model.sharer_tokenizer
        self.scorer = ChoiceScorer(config.response_text, config.loglik_target, config.batch_size)
        self.control = replace(
            FusionControl.from_kwargs(
                config.fusion_strength, config.fuse_layers, config.fuse_proportion, config.include_response
            ),
            ablate_sharer=config.ablate_sharer,
        )
        self.control.check_layers(model.config.fused_layers)

    # ------------------------------------------------------------------------------ modes

    def answer(self, mode: str, items: Sequence[MultipleChoiceItem], *, timed: bool = False) -> list[dict[str, Any]]:
        """Per-item records of `mode` for `items` (one batch; `timed` needs a single item)."""
        if timed and len(items) != 1:
            raise ValueError(f"timed batches hold one item (docs/method.md §6.8 times batch size 1), got {len(items)}")
        clock = StageClock(self.model.device) if timed else None
        extra: list[dict[str, Any]] = [{} for _ in items]
        if mode in ("receiver", "c2c"):
            convs = [answer_messages(it, self.config.prompt_style) for it in items]
            sharers = self._sharer_contexts(items) if mode == "c2c" else None
            answers = self._receiver_answers(convs, items, fuse=mode == "c2c", clock=clock, sharers=sharers)
        elif mode == "self":
            if self.self_model is None:
                raise ValueError(
                    "mode 'self' needs the receiver paired with itself: pass self_model (see build_self_model)"
                )
            convs = [answer_messages(it, self.config.prompt_style) for it in items]
            answers = self._receiver_answers(
                convs, items, fuse=True, clock=clock, model=self.self_model, sharers=self._sharer_contexts(items)
            )
        elif mode == "sharer":
            answers = self._sharer_answers(
                [answer_messages(it, self.config.prompt_style) for it in items], items, clock
            )
        elif mode == "t2t":
            answers, extra, clock = self._t2t(items, timed)
        else:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        return [
            _record(mode, item, answer, clock.breakdown() if clock else None, len(items), more)
            for item, answer, more in zip(items, answers, extra, strict=True)
        ]

    def _t2t(
        self, items: Sequence[MultipleChoiceItem], timed: bool
    ) -> tuple[list[Answer], list[dict[str, Any]], StageClock | None]:
        stage1 = StageClock(self.model.device) if timed else None
        convs = [background_messages(it, self.config.background_prompt) for it in items]
        stage1_replies = self._sharer_generate(convs, self.config.communication_max_new_tokens, stage1, "stage1")
        backgrounds, counts, prompts = stage1_replies.replies, stage1_replies.reply_tokens, stage1_replies.prompts
        stage2 = StageClock(self.model.device) if timed else None
        convs2 = [t2t_stage2_messages(it, bg, self.config) for it, bg in zip(items, backgrounds)]
        answers = self._receiver_answers(convs2, items, fuse=False, clock=stage2)
        extra = [
            {"stage1_prompt": p, "background": bg, "background_tokens": n}
            for p, bg, n in zip(prompts, backgrounds, counts)
        ]
        clock = None
        if stage1 is not None and stage2 is not None:
            clock = StageClock(self.model.device)
            clock.ms = {"stage1": stage1.breakdown()["total"], "stage2": stage2.breakdown()["total"]}
        return answers, extra, clock

    def _sharer_contexts(self, items: Sequence[MultipleChoiceItem]) -> list[Messages] | None:
        """With `sharer_context`, the sharer's prompts: each item's context as a system turn before the
        question (plain where an item has none); otherwise None, the sharer reading the receiver's prompt."""
        if not self.config.sharer_context:
            return None
        return [context_first(it, answer_messages(it, self.config.prompt_style)) for it in items]

    # ------------------------------------------------------------------------------ receiver side

    def _receiver_answers(
        self,
        convs: list[Messages],
        items: Sequence[MultipleChoiceItem],
        *,
        fuse: bool,
        clock: StageClock | None,
        model: C2CModel | None = None,
        sharers: list[Messages] | None = None,
    ) -> list[Answer]:
        """The receiver's answers, alone or from its fused cache (`model`: the pair; default the run's;
        `sharers`: the sharer's own prompts, one per conversation, docs/method.md §1.6)."""
        model, cfg, tok = model or self.model, self.config, self.receiver_tokenizer
        control = self.control if fuse else None
        texts = [render_chat(tok, c, add_generation_prompt=True, enable_thinking=cfg.enable_thinking) for c in convs]
        inputs = model.encode(convs, enable_thinking=cfg.enable_thinking, sharer_conversations=sharers)
        prompt_len = inputs.input_ids.shape[1]
        counts = inputs.attention_mask.sum(dim=1).tolist()
        if cfg.answer_method == "generate":
            kwargs: dict[str, Any] = {"max_new_tokens": cfg.max_new_tokens, "do_sample": False}
            if clock is not None:
                out = timed_generate(model, inputs, fuse=fuse, clock=clock, control=control, **kwargs)
            else:
                out = model.generate_from_inputs(inputs, fuse=fuse, control=control, **kwargs)
            return self._generated(out[:, prompt_len:], tok, model.receiver.generation_config, texts, counts, items)
        plan = self.scorer.plan(tok, texts, [it.choices for it in items])
        pad = pad_id(tok)

        def forward(chunk_rows: list[int], chunk_tails: list[list[int]]) -> torch.Tensor:
            batch = append_continuations(inputs, chunk_rows, chunk_tails, pad)
            if clock is not None:
                return timed_forward(model, batch, prompt_len, fuse=fuse, clock=clock, control=control)
            return model.forward(batch, prompt_len, enabled=fuse, control=control).logits

        return self._ranked(self.scorer.score(plan, forward, [len(it.choices) for it in items]), texts, counts)

    # ------------------------------------------------------------------------------ sharer side

    def _sharer_generate(
        self, convs: list[Messages], max_new_tokens: int, clock: StageClock | None, stage: str
    ) -> SharerReplies:
        with clock.stage(stage) if clock is not None else nullcontext():
            return sharer_replies(
                self.model, convs, max_new_tokens=max_new_tokens, enable_thinking=self.config.enable_thinking
            )

    def _sharer_answers(
        self, convs: list[Messages], items: Sequence[MultipleChoiceItem], clock: StageClock | None
    ) -> list[Answer]:
        cfg, tok, sharer = self.config, self.sharer_tokenizer, self.model.sharer
        if cfg.answer_method == "generate":
            r = self._sharer_generate(convs, cfg.max_new_tokens, clock, "generate")
            return [
                Answer(extract_choice(reply, len(it.choices), it.choices), text, p, reply, n)
                for reply, n, text, p, it in zip(r.replies, r.reply_tokens, r.prompts, r.prompt_tokens, items)
            ]
        texts = sharer_texts(self.model, convs, enable_thinking=cfg.enable_thinking)
        ids, mask = sharer_encode(self.model, texts)
        prompt_len = ids.shape[1]
        plan = self.scorer.plan(tok, texts, [it.choices for it in items])

        def forward(chunk_rows: list[int], chunk_tails: list[list[int]]) -> torch.Tensor:
            full, full_mask = append_tokens(ids, mask, chunk_rows, chunk_tails, pad_id(tok))
            with clock.stage("score") if clock is not None else nullcontext():
                return continuation_logits(sharer, full, full_mask, prompt_len)

        scores = self.scorer.score(plan, forward, [len(it.choices) for it in items])
        return self._ranked(scores, texts, mask.sum(dim=1).tolist())

    # ------------------------------------------------------------------------------ shared helpers

    def _generated(self, new: torch.Tensor, tok: PreTrainedTokenizerBase, generation_config: Any, texts: list[str],
                   prompt_counts: list[int], items: Sequence[MultipleChoiceItem]) -> list[Answer]:  # fmt: skip
        counts = generated_lengths(new, generation_config, tok)
        answers = []
        for row, n, text, p, item in zip(new.tolist(), counts, texts, prompt_counts, items):
            reply = tok.decode(row[:n], skip_special_tokens=True).strip()
            answers.append(Answer(extract_choice(reply, len(item.choices), item.choices), text, p, reply, n))
        return answers

    def _ranked(self, scores: list[list[float]], texts: list[str], prompt_counts: list[int]) -> list[Answer]:
        return [Answer(max(range(len(row)), key=row.__getitem__), text + self.config.response_text, p, None, 0, row)
                for row, text, p in zip(scores, texts, prompt_counts)]  # fmt: skip


def _text_length(item: MultipleChoiceItem) -> int:
    return len(item.question) + sum(len(c) for c in item.choices)


def _record(mode: str, item: MultipleChoiceItem, answer: Answer, latency: dict[str, float] | None, batch: int,
            extra: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The per-item JSONL record."""
    return {
        "mode": mode, "id": item.id, "subject": item.subject, "category": item.category,
        "gold": item.answer, "gold_letter": item.answer_letter,
        "pred": answer.pred, "pred_letter": None if answer.pred is None else letter(answer.pred),
        "correct": answer.pred == item.answer,
        "prompt": answer.prompt, "output": answer.output, "scores": answer.scores, **extra,
        "tokens": {"prompt": int(answer.prompt_tokens), "output": int(answer.output_tokens)},
        "latency_ms": latency, "batch_size": batch,
    }  # fmt: skip


def run_eval(
    config: EvalConfig,
    *,
    model: C2CModel | None = None,
    items: list[MultipleChoiceItem] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Answer the task's items in every mode of `config` and write the run folder.

    The run folder (`config.output_dir`) receives `config.yaml` (the resolved config), `items.jsonl`
    (one record per mode and item: prompt, output, scores, extracted answer, gold, correct, token
    counts, latency breakdown or null), `summary.json`, `results.md` and `results.png`. Records are
    appended as batches finish, so `config.resume` continues an interrupted run.

    Args:
        config: The run (a checked `EvalConfig`, e.g. from `load_eval_config`).
        model: The pair; default `build_model(config)`.
        items: The items; default `load_task` with the config's task, split, subjects, limit/sample.
        progress: Show a tqdm bar per mode.

    Returns:
        An `EvalResult` (the summary and this run's records).

    Raises:
        TaskError: No items, or duplicate item ids.
        ValueError: `output_dir` holds another run (without resume/overwrite), or a resumed run's
            config differs in a field that changes results.
    """
    if items is None:
        items = load_task(config.task, split=config.split, subjects=config.subjects, limit=config.limit,
                          sample=config.sample, seed=config.seed, data_dir=config.data_dir, skip=config.skip)  # fmt: skip
    if not items:
        raise TaskError(f"task {config.task!r} gave no items (check subjects, split and limit)")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise TaskError(f"task {config.task!r} has duplicate item ids; give each item a unique 'id'")
    model = model if model is not None else build_model(config)
    folder = RunFolder(config.output_dir)
    done = folder.open(config)
    self_model = build_self_model(config, model) if "self" in config.modes else None
    evaluator = Evaluator(model, config, self_model=self_model)
    timed_count = len(items) if config.latency_items is None else min(config.latency_items, len(items))
    with torch.inference_mode():
        for mode in config.modes:
            todo = [(i, it) for i, it in enumerate(items) if (mode, it.id) not in done]
            with tqdm(
                total=len(items), initial=len(items) - len(todo), desc=f"{mode:>8}", unit="item", disable=not progress
            ) as bar:
                for _, item in [x for x in todo if x[0] < timed_count]:
                    folder.append(evaluator.answer(mode, [item], timed=True))
                    bar.update(1)
                # Untimed items go in batches of similar length (less padding); records keep item order.
                rest = sorted((it for i, it in todo if i >= timed_count), key=_text_length)
                for start in range(0, len(rest), config.batch_size):
                    batch = rest[start : start + config.batch_size]
                    folder.append(evaluator.answer(mode, batch))
                    bar.update(len(batch))
    records = folder.records(config.modes, ids)
    summary = folder.write_reports(config, records, len(items))
    logger.info(
        "wrote %s (%s)", folder.path, ", ".join(f"{s['mode']} {100 * s['accuracy']:.1f}%" for s in summary["modes"])
    )
    return EvalResult(folder.path, summary, records)
