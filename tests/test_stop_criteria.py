"""One stop-string criterion per tokenizer: the same stops as `generate(stop_strings=...)`, built once."""

from __future__ import annotations

import torch
from transformers import StoppingCriteriaList

from cache2cache.evaluation.modes import PLAIN_STOPS, stop_criteria
from tiny import tiny_receiver
from toy_tokenizers import no_template_tokenizer


def test_the_criterion_is_built_once_per_tokenizer_and_stops():
    tok = no_template_tokenizer()
    assert stop_criteria(tok, PLAIN_STOPS) is stop_criteria(tok, list(PLAIN_STOPS))
    assert stop_criteria(tok, PLAIN_STOPS) is not stop_criteria(tok, ("\nuser:",))
    assert stop_criteria(no_template_tokenizer(), PLAIN_STOPS) is not stop_criteria(tok, PLAIN_STOPS)


def test_the_cached_criterion_stops_where_stop_strings_does():
    tok = no_template_tokenizer()
    model = tiny_receiver(vocab_size=len(tok), seed=3)
    ids = tok(["hello world", "the fox"], return_tensors="pt", padding=True, padding_side="left")
    greedy = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tok.pad_token_id}
    free = model.generate(**ids, **greedy)
    text = tok.decode(free[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    stops = [text[len(text) // 3 : len(text) // 3 + 2]]  # text row 0 does reach, so it stops early
    by_strings = model.generate(**ids, **greedy, stop_strings=stops, tokenizer=tok)
    cached = StoppingCriteriaList([stop_criteria(tok, stops)])
    first = model.generate(**ids, **greedy, stopping_criteria=cached)
    again = model.generate(**ids, **greedy, stopping_criteria=cached)  # no state kept between calls
    assert torch.equal(first, by_strings) and torch.equal(again, by_strings)
    stopped = tok.decode(by_strings[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(stopped) < len(text)  # row 0 ended early, at the stop string
