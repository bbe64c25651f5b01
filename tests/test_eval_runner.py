"""`c2c eval` runner on tiny random pairs: every mode and output, the T2T prompts, the C2C fusion mask,
loglik ranking against a hand computation, the timed path against the library path, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cache2cache import C2CModel, kv
from cache2cache.chat import render_chat
from cache2cache.evaluation.config import EvalConfig
from cache2cache.evaluation.modes import sharer_encode
from cache2cache.evaluation.runner import run_eval
from cache2cache.evaluation.scoring import ChoiceScorer, split_continuation
from cache2cache.evaluation.timing import StageClock, timed_forward, timed_generate
from cache2cache.tasks import load_task
from cache2cache.tasks.prompts import background_messages, background_prompt, mc_prompt
from tiny import tokenized_pair
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

TASK = str(Path(__file__).parent / "fixtures" / "eval" / "tiny_mc.jsonl")
STAGES = {  # generate / loglik
    "receiver": ({"prefill", "decode", "total"}, {"prefill", "score", "total"}),
    "c2c": ({"prefill", "sharer", "fuse", "decode", "total"}, {"prefill", "sharer", "fuse", "score", "total"}),
    "sharer": ({"generate", "total"}, {"score", "total"}),
    "t2t": ({"stage1", "stage2", "total"}, {"stage1", "stage2", "total"}),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_eval_pair(kind: str = "aligned") -> C2CModel:
    """A tiny pair with real (toy) tokenizers and open gates.

    kind: "aligned" (BPE receiver <- word-level sharer, token-aligned), "wordlevel" (the reverse: the
    receiver's letters " A".." D" are single tokens) or "shared" (both read the BPE tokenizer).
    """
    rt, st = {
        "aligned": (bpe_tokenizer(), wordlevel_tokenizer()),
        "wordlevel": (wordlevel_tokenizer(), bpe_tokenizer()),
    }.get(kind, (None, None))
    if kind == "shared":
        rt = st = bpe_tokenizer()
    return tokenized_pair(rt, st)


def config(tmp_path: Path, **overrides) -> EvalConfig:
    base = dict(task=TASK, modes=["receiver", "sharer", "t2t", "c2c"], max_new_tokens=3, communication_max_new_tokens=4,
                batch_size=4, latency_items=2, output_dir=str(tmp_path / "run"))  # fmt: skip
    return EvalConfig(**{**base, **overrides})


def read_items(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def aligned() -> C2CModel:
    return tiny_eval_pair("aligned")


@pytest.mark.parametrize(
    "method",
    [
        {"answer_method": "generate"},
        {"answer_method": "loglik", "loglik_target": "letters"},
        {"answer_method": "loglik", "loglik_target": "texts", "prompt_style": "plain"},
        {"answer_method": "loglik", "loglik_target": "texts", "prompt_style": "listed"},
    ],
    ids=["generate", "loglik-letters", "loglik-texts-plain", "loglik-texts-listed"],
)
def test_every_mode_writes_all_outputs_and_the_summary_agrees_with_the_items(aligned, tmp_path, method):
    result = run_eval(config(tmp_path, **method), model=aligned, progress=False)
    run = result.output_dir
    for name in ("config.yaml", "items.jsonl", "summary.json", "results.md", "results.png"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert (run / "results.png").read_bytes()[:4] == b"\x89PNG"
    items = read_items(run)
    num_choices = {it.id: len(it.choices) for it in load_task(TASK)}
    summary = json.loads((run / "summary.json").read_text())
    assert len(items) == 4 * 6 and summary["n_items"] == 6
    for entry in summary["modes"]:
        rows = [r for r in items if r["mode"] == entry["mode"]]
        assert entry["n"] == len(rows) == 6
        assert entry["correct"] == sum(r["correct"] for r in rows)
        assert entry["accuracy"] == pytest.approx(entry["correct"] / 6)
        assert entry["ci_low"] <= entry["accuracy"] <= entry["ci_high"]
        assert entry["latency_n"] == 2 and entry["latency_median_ms"] > 0
        for subject, group in entry["by_subject"].items():
            in_subject = [r for r in rows if r["subject"] == subject]
            assert (group["n"], group["correct"]) == (len(in_subject), sum(r["correct"] for r in in_subject))
        for r in rows:
            assert r["correct"] == (r["pred"] == r["gold"])
            assert r["tokens"]["prompt"] > 0 and r["prompt"]
            assert (r["latency_ms"] is not None) == (r["id"] in ("q1", "q2"))
            if r["latency_ms"]:
                assert set(r["latency_ms"]) == STAGES[entry["mode"]][method["answer_method"] == "loglik"]
                assert r["latency_ms"]["total"] == pytest.approx(
                    sum(v for k, v in r["latency_ms"].items() if k != "total")
                )
            if method["answer_method"] == "loglik":
                assert len(r["scores"]) == num_choices[r["id"]]
                assert r["pred"] == max(range(len(r["scores"])), key=r["scores"].__getitem__)
            else:
                assert r["output"] is not None and 0 < r["tokens"]["output"] <= 3
    markdown = (run / "results.md").read_text()
    assert "| c2c | 6 |" in markdown and "Accuracy by subject" in markdown and "geography" in markdown


def _hand_scores(
    model: C2CModel, messages, choices_text: list[str], prefix: str, fuse: bool, sharer_messages=None
) -> list[float]:
    """Fuse the prompt minus its last token, then run [last token + prefix + continuation] through the
    receiver alone, one choice at a time (batch size 1, no padding), and sum the continuation's log-probs.
    `sharer_messages`: the sharer's own prompt (docs/method.md §1.6)."""
    tok = model.receiver_tokenizer
    inputs = model.encode([messages], sharer_conversations=None if sharer_messages is None else [sharer_messages])
    prompt_len = inputs.input_ids.shape[1]
    rendered = render_chat(tok, messages, add_generation_prompt=True, enable_thinking=False)
    delimiter = "" if (rendered + prefix)[-1].isspace() else " "
    prefix_ids = tok.encode(prefix, add_special_tokens=False) if prefix else []
    scores = []
    for text in choices_text:
        continuation = tok.encode(prefix + delimiter + text, add_special_tokens=False)[len(prefix_ids) :]
        with torch.no_grad():
            cache = model.fuse(inputs.truncate(prompt_len - 1), enabled=fuse)
            tail = torch.tensor([prefix_ids + continuation])
            seq = torch.cat([inputs.input_ids[:, -1:], tail], dim=1)
            start = int(inputs.attention_mask.sum()) - 1  # the aligner may pad template sections inside the prompt
            positions = torch.arange(start, start + seq.shape[1])[None]
            mask = torch.cat([inputs.attention_mask, torch.ones_like(tail)], dim=1)
            logits = model.receiver(
                input_ids=seq, attention_mask=mask, position_ids=positions, **{kv.cache_kwarg(model.receiver): cache}
            ).logits
        logprobs = torch.log_softmax(logits[0].float(), dim=-1)
        scores.append(sum(float(logprobs[len(prefix_ids) + k, t]) for k, t in enumerate(continuation)))
    return scores


@pytest.mark.parametrize("kind", ["aligned", "wordlevel"])
@pytest.mark.parametrize("target", ["letters", "texts"])
def test_loglik_ranking_equals_a_hand_computation(tmp_path, kind, target):
    model = tiny_eval_pair(kind)
    cfg = config(tmp_path, modes=["receiver", "c2c"], answer_method="loglik", loglik_target=target, latency_items=1)
    items = load_task(TASK)
    records = read_items(run_eval(cfg, model=model, items=items, progress=False).output_dir)
    assert len(records) == 2 * len(items)
    for record in records:
        item = next(it for it in items if it.id == record["id"])
        messages = [{"role": "user", "content": mc_prompt(item.question, item.choices)}]
        texts = [chr(65 + i) for i in range(len(item.choices))] if target == "letters" else item.choices
        hand = _hand_scores(model, messages, texts, "The correct answer is", fuse=record["mode"] == "c2c")
        torch.testing.assert_close(torch.tensor(record["scores"]), torch.tensor(hand), rtol=1e-4, atol=1e-4)
        assert record["pred"] == max(range(len(hand)), key=hand.__getitem__)


def test_sharer_context_is_read_by_the_sharer_alone(aligned, tmp_path):
    task = tmp_path / "ctx.jsonl"
    rows = [
        {"question": "where does sazera live ?", "choices": ["paris", "rome"], "answer": 0, "context": "sazera lives in paris ."},
        {"question": "what is two ?", "choices": ["one", "two"], "answer": 1},  # no context: plain C2C
    ]  # fmt: skip
    task.write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = dict(task=str(task), modes=["receiver", "c2c", "self"], answer_method="loglik", loglik_target="texts",
                  prompt_style="plain", latency_items=1, self_fuser=_self_fuser(aligned, tmp_path / "self", 3.0))  # fmt: skip
    runs = {
        flag: read_items(run_eval(config(tmp_path / str(flag), **common, sharer_context=flag), model=aligned,
                                  progress=False).output_dir)
        for flag in (False, True)
    }  # fmt: skip
    by = {flag: {(r["mode"], r["id"]): r["scores"] for r in records} for flag, records in runs.items()}
    with_context, plain = by[True][("c2c", "ctx:1")], by[False][("c2c", "ctx:1")]
    assert with_context != plain  # the sharer read something else
    assert by[True][("c2c", "ctx:2")] == by[False][("c2c", "ctx:2")]
    assert by[True][("self", "ctx:1")] != by[False][("self", "ctx:1")]  # self: the receiver reads it as its sharer
    assert by[True][("self", "ctx:2")] == by[False][("self", "ctx:2")]
    assert by[True][("receiver", "ctx:1")] == by[False][("receiver", "ctx:1")]  # the receiver alone never sees it
    question = [{"role": "user", "content": rows[0]["question"]}]
    sharer = [{"role": "system", "content": rows[0]["context"]}, *question]
    hand = _hand_scores(aligned, question, rows[0]["choices"], "", fuse=True, sharer_messages=sharer)
    torch.testing.assert_close(torch.tensor(with_context), torch.tensor(hand), rtol=1e-4, atol=1e-4)


def test_sharer_scores_equal_a_full_forward_of_each_choice(aligned, tmp_path, monkeypatch):
    # The sharer prefills each question once and computes only the continuation's logits (the real
    # Gemma-3 head is 262k wide); the scores must equal a plain forward of prompt + choice, one choice
    # at a time, with every logit.
    cfg = config(tmp_path, modes=["sharer"], answer_method="loglik", loglik_target="texts", prompt_style="plain",
                 batch_size=32, latency_items=0)  # fmt: skip
    items = {it.id: it for it in load_task(TASK)}
    tok = aligned.sharer_tokenizer
    prefilled: list[int] = []
    prefill = kv.prefill
    monkeypatch.setattr(
        kv, "prefill", lambda model, ids, *a, **k: prefilled.append(len(ids)) or prefill(model, ids, *a, **k)
    )
    records = read_items(run_eval(cfg, model=aligned, items=list(items.values()), progress=False).output_dir)
    assert prefilled == [len(items)]  # one pass over every question's choices, each question prefilled once
    for record in records:
        prompt, hand = record["prompt"], []
        ids, _ = sharer_encode(aligned, [prompt])
        for choice in items[record["id"]].choices:
            continuation = split_continuation(tok, prompt, ("" if prompt[-1].isspace() else " ") + choice)
            with torch.no_grad():
                logits = aligned.sharer(input_ids=torch.cat([ids, torch.tensor([continuation])], dim=1)).logits
            logprobs = torch.log_softmax(logits[0, ids.shape[1] - 1 : -1].float(), dim=-1)
            hand.append(float(logprobs[torch.arange(len(continuation)), continuation].sum()))
        torch.testing.assert_close(torch.tensor(record["scores"]), torch.tensor(hand), rtol=1e-4, atol=1e-4)


def test_single_token_letters_are_read_from_one_next_token_distribution():
    scorer = ChoiceScorer("The correct answer is", "letters", rows_per_pass=8)
    items = load_task(TASK, limit=2)
    prompts = ["[assistant]"] * 2
    plan = scorer.plan(wordlevel_tokenizer(), prompts, [it.choices for it in items])  # "A".."D" are words
    assert plan.rows == [0, 1] and all(
        ids is not None and len(ids) == len(it.choices) for (_, ids), it in zip(plan.reads, items)
    )
    # The toy BPE's merges depend on the trainer's tie-breaking, which varies between processes, so
    # whether " C" after the prefix is one token, and a different one from " D", is read off the
    # tokenizer (as the scorer tokenizes it: after the prefix) rather than assumed.
    bpe = bpe_tokenizer()
    split = scorer.plan(bpe, prompts, [it.choices for it in items])
    for b, it in enumerate(items):
        pieces = [split_continuation(bpe, "The correct answer is", " " + chr(65 + i)) for i in range(len(it.choices))]
        single = all(len(p) == 1 for p in pieces) and len({p[0] for p in pieces}) == len(pieces)
        assert split.rows.count(b) == (1 if single else len(it.choices))
    assert all((ids is None) == (split.rows.count(b) > 1) for (_, ids), b in zip(split.reads, range(len(items))))


def test_t2t_builds_the_spec_prompts_and_never_fuses(aligned, tmp_path):
    calls = []
    handle = aligned.fusers.register_forward_hook(lambda *args: calls.append(1))
    try:
        result = run_eval(
            config(tmp_path, modes=["t2t"], communication_max_new_tokens=5), model=aligned, progress=False
        )
    finally:
        handle.remove()
    assert not calls, "T2T's stage 2 is the receiver alone"
    for record, item in zip(result.records, load_task(TASK), strict=True):
        stage1 = render_chat(aligned.sharer_tokenizer, background_messages(item), add_generation_prompt=True)
        assert record["stage1_prompt"] == stage1
        assert item.question in stage1 and not any(f"{chr(65 + i)}. {c}" in stage1 for i, c in enumerate(item.choices))
        assert 0 < record["background_tokens"] <= 5
        stage2 = [
            {"role": "user", "content": background_prompt(item.question)},
            {"role": "assistant", "content": record["background"]},
            {"role": "user", "content": mc_prompt(item.question, item.choices)},
        ]
        assert record["prompt"] == render_chat(
            aligned.receiver_tokenizer, stage2, add_generation_prompt=True, enable_thinking=False
        )


@pytest.mark.parametrize("kind", ["aligned", "shared"])
@pytest.mark.parametrize("method", ["generate", "loglik"])
def test_c2c_fuses_the_prompt_minus_its_last_token_and_nothing_else(tmp_path, kind, method):
    model = tiny_eval_pair(kind)
    masks = []
    handle = model.fusers.register_forward_hook(lambda module, args, out: masks.append(args[2].clone()))
    common = dict(
        answer_method=method, loglik_target="texts", latency_items=0, batch_size=1
    )  # one item (one row) per pass
    try:
        run_eval(config(tmp_path, modes=["receiver", "sharer", "t2t"], **common), model=model, progress=False)
        assert not masks, "only the c2c mode runs the fusers"
        items = load_task(TASK)
        run_eval(config(tmp_path / "c2c", modes=["c2c"], **common), model=model, items=items, progress=False)
    finally:
        handle.remove()
    # The mask of each item's prompt as the library encodes it; the last prompt token is never fused.
    expected = [
        model.encode([[{"role": "user", "content": mc_prompt(it.question, it.choices)}]]).fusion_mask[:, :-1]
        for it in items
    ]
    assert len(masks) == (len(items) if method == "generate" else sum(len(it.choices) for it in items))
    for mask in masks:  # a loglik row's continuation is never in the mask: it is as wide as the prompt minus one
        assert any(mask.shape == e.shape and torch.equal(mask, e) for e in expected)
    if kind == "shared":  # one tokenizer: every prompt token but the last
        assert all(bool(e.all()) for e in expected)


@pytest.mark.parametrize("fuse", [False, True])
def test_the_timed_path_computes_what_the_library_computes(aligned, fuse):
    convs = [[{"role": "user", "content": "What is the capital of France?"}]]
    inputs = aligned.encode(convs)
    clock = StageClock("cpu")
    timed = timed_generate(aligned, inputs, fuse=fuse, clock=clock, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    library = aligned.generate_from_inputs(inputs, fuse=fuse, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert torch.equal(timed, library)
    assert set(clock.ms) == ({"prefill", "sharer", "fuse", "decode"} if fuse else {"prefill", "decode"})
    prompt_length = inputs.input_ids.shape[1] - 2  # the last two prompt tokens play the continuation
    with torch.no_grad():
        expected = aligned.forward(inputs, prompt_length, enabled=fuse).logits
    got = timed_forward(aligned, inputs, prompt_length, fuse=fuse, clock=StageClock("cpu"))
    torch.testing.assert_close(got, expected)


def test_batched_and_timed_items_give_the_same_answers(aligned, tmp_path):
    timed = run_eval(
        config(tmp_path / "a", answer_method="loglik", latency_items=None), model=aligned, progress=False
    ).records
    batched = run_eval(
        config(tmp_path / "b", answer_method="loglik", latency_items=0), model=aligned, progress=False
    ).records
    assert all(r["latency_ms"] for r in timed) and not any(r["latency_ms"] for r in batched)
    for a, b in zip(timed, batched, strict=True):
        assert (a["mode"], a["id"], a["pred"]) == (b["mode"], b["id"], b["pred"])
        torch.testing.assert_close(torch.tensor(a["scores"]), torch.tensor(b["scores"]), rtol=1e-4, atol=1e-4)


def test_resume_skips_finished_items_and_refuses_a_changed_setup(aligned, tmp_path):
    cfg = config(tmp_path, modes=["receiver"], answer_method="loglik", limit=3)
    run_eval(cfg, model=aligned, progress=False)
    with pytest.raises(ValueError, match="--resume"):
        run_eval(cfg, model=aligned, progress=False)
    items_file = tmp_path / "run" / "items.jsonl"
    with items_file.open("a") as sink:
        sink.write('{"mode": "receiver", "id": "q4", "pre')  # an interrupted write
    resumed = run_eval(config(tmp_path, modes=["receiver", "sharer"], answer_method="loglik", limit=4, resume=True),
                       model=aligned, progress=False)  # fmt: skip
    keys = [(r["mode"], r["id"]) for r in read_items(tmp_path / "run")]
    assert len(keys) == len(set(keys)) == 4 + 4 and len(resumed.records) == 8
    with pytest.raises(ValueError, match="answer_method"):
        run_eval(
            config(tmp_path, modes=["receiver"], answer_method="generate", resume=True), model=aligned, progress=False
        )
    fresh = run_eval(
        config(tmp_path, modes=["receiver"], answer_method="loglik", limit=2, overwrite=True),
        model=aligned,
        progress=False,
    )
    assert len(read_items(fresh.output_dir)) == 2


def test_a_setting_only_t2t_reads_may_change_until_t2t_has_records(aligned, tmp_path):
    run_eval(config(tmp_path, modes=["sharer"], answer_method="loglik", limit=2), model=aligned, progress=False)
    longer = config(tmp_path, modes=["sharer", "t2t"], answer_method="loglik", limit=2, resume=True,
                    communication_max_new_tokens=6)  # fmt: skip
    run_eval(longer, model=aligned, progress=False)  # the sharer's records never read the background budget
    assert sorted({r["mode"] for r in read_items(tmp_path / "run")}) == ["sharer", "t2t"]
    with pytest.raises(ValueError, match="communication_max_new_tokens"):  # t2t records exist now
        run_eval(config(tmp_path, modes=["sharer", "t2t"], answer_method="loglik", limit=2, resume=True),
                 model=aligned, progress=False)  # fmt: skip


# ------------------------------------------------------------------------------------------ self mode


def _self_fuser(pair: C2CModel, folder: Path, gate_init: float) -> str:
    """A checkpoint of fusers that read the receiver's own cache (the receiver as its own sharer)."""
    from cache2cache import FuserConfig

    tok = pair.receiver_tokenizer
    fuser = FuserConfig(hidden_dim=16, intermediate_dim=16, num_layers=3, dropout=0.0, gate_init=gate_init)
    itself = C2CModel.from_models(pair.receiver, pair.receiver, fuser=fuser, receiver_tokenizer=tok,
                                  sharer_tokenizer=tok, seed=5)  # fmt: skip
    return str(itself.save_pretrained(folder))


def test_self_mode_fuses_the_receivers_own_cache(aligned, tmp_path):
    """Scored by loglik, whose per-choice scores show any change (the tiny receiver's greedy replies are empty)."""
    closed, opened = _self_fuser(aligned, tmp_path / "closed", -3.0), _self_fuser(aligned, tmp_path / "open", 3.0)
    runs = {}
    for name, fuser in (("closed", closed), ("open", opened)):
        cfg = config(tmp_path / name, modes=["receiver", "self"], self_fuser=fuser, answer_method="loglik")
        run_eval(cfg, model=aligned, progress=False)
        runs[name] = read_items(tmp_path / name / "run")
    by_mode = {name: {m: [r["scores"] for r in records if r["mode"] == m] for m in ("receiver", "self")}
               for name, records in runs.items()}  # fmt: skip
    assert by_mode["closed"]["self"] == by_mode["closed"]["receiver"]  # closed gates: the receiver alone
    assert by_mode["open"]["self"] != by_mode["open"]["receiver"]  # open gates: its own cache, enriched
    assert len(by_mode["open"]["self"]) == len(load_task(TASK))


def test_a_fuser_joins_a_resumed_run_until_its_mode_has_records(aligned, tmp_path):
    first, second = _self_fuser(aligned, tmp_path / "a", 3.0), _self_fuser(aligned, tmp_path / "b", 3.0)
    run_eval(config(tmp_path, modes=["receiver"], answer_method="loglik", limit=3), model=aligned, progress=False)
    joined = config(
        tmp_path, modes=["receiver", "self"], self_fuser=first, answer_method="loglik", limit=3, resume=True
    )
    run_eval(joined, model=aligned, progress=False)  # no self records yet: the fuser may be named now
    assert sorted({r["mode"] for r in read_items(tmp_path / "run")}) == ["receiver", "self"]
    with pytest.raises(ValueError, match="self_fuser"):  # self records exist: another fuser would mix them
        run_eval(config(tmp_path, modes=["receiver", "self"], self_fuser=second, answer_method="loglik", limit=3,
                        resume=True), model=aligned, progress=False)  # fmt: skip


def test_self_mode_needs_its_own_fuser(tmp_path):
    from cache2cache.evaluation.config import check_eval_config

    problems = check_eval_config(config(tmp_path, modes=["receiver", "self"]), check_files=False)
    assert any("'self' needs a fuser trained on the receiver's own cache" in p for p in problems)
