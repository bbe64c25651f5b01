"""The demo LMs' packed batches: each document computed exactly as if alone, no loss across documents."""

from __future__ import annotations

import pytest
import torch

from cache2cache.demo.toy_models import pack_rows, receiver_model, sharer_model


@pytest.mark.parametrize("build", [sharer_model, receiver_model])
def test_packed_rows_equal_each_document_alone(build):
    model = build(50, seed=0).eval()
    docs = [[0, 5, 6, 7, 1], [0, 8, 9], [0, 10, 11, 12, 13, 1], [0, 14]]
    ids, positions, labels = pack_rows(docs, width=9, pad_id=3)
    assert ids.shape == (2, 9)
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        starts = {0: (0, 0), 1: (0, 5), 2: (1, 0), 3: (1, 6)}
        for i, doc in enumerate(docs):
            alone = model(input_ids=torch.tensor([doc]), use_cache=False).logits[0]
            row, start = starts[i]
            torch.testing.assert_close(packed[row, start : start + len(doc)], alone, atol=1e-5, rtol=1e-5)


def test_packed_labels_skip_document_starts_and_padding():
    ids, positions, labels = pack_rows([[0, 5, 6], [0, 7]], width=6, pad_id=3)
    assert ids.tolist() == [[0, 5, 6, 0, 7, 3]]
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0]]
    assert labels.tolist() == [[-100, 5, 6, -100, 7, -100]]


def test_packed_loss_equals_padded_loss():
    model = sharer_model(50, seed=0).eval()
    docs = [[0, 5, 6, 7, 1], [0, 8, 9], [0, 10, 11, 12, 13, 1]]
    ids, positions, labels = pack_rows(docs, width=8, pad_id=3)
    width = max(map(len, docs))
    padded = torch.tensor([d + [3] * (width - len(d)) for d in docs])
    mask = torch.tensor([[1] * len(d) + [0] * (width - len(d)) for d in docs])
    with torch.no_grad():
        packed_loss = model(input_ids=ids, position_ids=positions, labels=labels, use_cache=False).loss
        padded_loss = model(
            input_ids=padded, attention_mask=mask, labels=padded.masked_fill(mask == 0, -100), use_cache=False
        ).loss
    torch.testing.assert_close(packed_loss, padded_loss, atol=1e-5, rtol=1e-5)


def test_a_document_longer_than_a_row_is_refused():
    with pytest.raises(ValueError, match="6-token document does not fit a packed row of 4 tokens"):
        pack_rows([[0, 1, 2, 3, 4, 5]], width=4, pad_id=3)
