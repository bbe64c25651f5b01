"""`cache2cache.compat`: the Hugging Face model card's example runs with one changed import, on a
published-layout folder of a tiny pair, and gives what `C2CModel.generate` gives; `kv_cache_index`
becomes the fusion mask it describes."""

from __future__ import annotations

import copy
import textwrap

import pytest
import torch

from cache2cache import C2CModel
from cache2cache.compat import ReferenceStyleModel, fusion_mask_from_kv_cache_index
from cache2cache.published import export_published
from test_eval_runner import tiny_eval_pair

pytestmark = pytest.mark.usefixtures("one_thread")

RECEIVER_ID, SHARER_ID, PAIR = "Qwen/Qwen3-0.6B", "Qwen/Qwen2.5-0.5B-Instruct", "qwen3_0.6b+qwen2.5_0.5b_Fuser"

# The usage example of the nics-efc/C2C_Fuser model card, as published, except its import line (it
# imported load_rosetta_model from the reference repository's script/playground/inference_example).
MODEL_CARD_EXAMPLE = textwrap.dedent("""
    import torch
    from huggingface_hub import snapshot_download
    from cache2cache.compat import load_rosetta_model

    checkpoint_dir = snapshot_download(
        repo_id="nics-efc/C2C_Fuser",
        allow_patterns=["qwen3_0.6b+qwen2.5_0.5b_Fuser/*"],
    )

    model_config = {
        "rosetta_config": {
            "base_model": "Qwen/Qwen3-0.6B",
            "teacher_model": "Qwen/Qwen2.5-0.5B-Instruct",
            "checkpoints_dir": f"{checkpoint_dir}/qwen3_0.6b+qwen2.5_0.5b_Fuser/final",
        }
    }

    rosetta_model, tokenizer = load_rosetta_model(model_config, eval_config={}, device=torch.device("cuda"))
    device = rosetta_model.device

    prompt = [{"role": "user", "content": "Say hello in one short sentence."}]
    input_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    inputs = tokenizer(input_text, return_tensors="pt").to(device)
    instruction_index = torch.tensor([1, 0], dtype=torch.long).repeat(inputs['input_ids'].shape[1] - 1, 1).unsqueeze(0).to(device)
    label_index = torch.tensor([-1, 0], dtype=torch.long).repeat(1, 1).unsqueeze(0).to(device)
    kv_cache_index = [instruction_index, label_index]

    with torch.no_grad():
        sampling_params = {
            'do_sample': False,
            'max_new_tokens': 256
        }
        outputs = rosetta_model.generate(**inputs, kv_cache_index=kv_cache_index, **sampling_params)
        output_text = tokenizer.decode(outputs[0, instruction_index.shape[1] + 1:], skip_special_tokens=True)
        print(f"C2C output text: {output_text}")
""")


def _section(value: int, length: int) -> torch.Tensor:
    return torch.tensor([value, 0]).repeat(length, 1).unsqueeze(0)


@pytest.mark.parametrize("kind", ["shared", "aligned"])
def test_the_model_card_example_runs_with_one_changed_import(kind, tmp_path, monkeypatch, capsys):
    pair = tiny_eval_pair(kind)
    export_published(pair, tmp_path / "hub" / PAIR)
    served = {RECEIVER_ID: (pair.receiver, pair.receiver_tokenizer), SHARER_ID: (pair.sharer, pair.sharer_tokenizer)}

    def load_model(name, dtype=None, device="cpu"):  # the hub, for the two ids the card names
        return copy.deepcopy(served[str(name)][0]).to(device=device, dtype=dtype)

    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda repo_id, allow_patterns: str(tmp_path / "hub"))
    monkeypatch.setattr("cache2cache.loading.load_model", load_model)
    monkeypatch.setattr("cache2cache.loading.load_tokenizer", lambda name: served[str(name)][1])
    card: dict = {}
    exec(compile(MODEL_CARD_EXAMPLE, "model_card_example", "exec"), card)
    assert "C2C output text:" in capsys.readouterr().out

    device = card["device"]
    ours = C2CModel.from_pretrained(
        tmp_path / "hub" / PAIR, receiver=load_model(RECEIVER_ID, torch.bfloat16, device), sharer=load_model(SHARER_ID, torch.bfloat16, device),
        receiver_tokenizer=pair.receiver_tokenizer, sharer_tokenizer=pair.sharer_tokenizer,
    )  # fmt: skip
    ids = card["inputs"]["input_ids"]
    sharer_ids = (
        None if ours.aligner is None else torch.tensor([ours.aligner.align_tokens(ids[0].tolist())], device=device)
    )
    expected = ours.generate(input_ids=ids, sharer_input_ids=sharer_ids, do_sample=False, max_new_tokens=256)
    assert card["rosetta_model"].c2c.receiver.dtype == torch.bfloat16
    assert torch.equal(card["outputs"], expected)


def test_kv_cache_index_selects_the_fused_tokens():
    ids = torch.zeros(2, 6, dtype=torch.long)
    standard = fusion_mask_from_kv_cache_index([_section(1, 5), _section(-1, 1)], ids)
    assert standard.tolist() == [[True] * 5 + [False]] * 2
    mixed = fusion_mask_from_kv_cache_index([_section(-1, 2), _section(1, 2), _section(0, 1), _section(1, 1)], ids)
    assert mixed[0].tolist() == [False, False, True, True, False, False]  # [0, 0] fuses nothing; the last section never
    per_row = torch.stack([torch.tensor([[1, 0]] * 5), torch.tensor([[-1, 0]] * 2 + [[1, 0]] * 3)])
    assert fusion_mask_from_kv_cache_index([per_row, _section(-1, 1)], ids)[1].tolist() == [
        False,
        False,
        True,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ([_section(1, 4), _section(-1, 1)], "cover 5 tokens .* but the prompt has 6"),
        ([torch.tensor([[1, 0]] * 6)], r"shape \(6, 2\); expected \(B, n, 2\)"),
        ([_section(3, 5), _section(-1, 1)], "sharer values \\[3\\]; this model has one sharer"),
        ([torch.tensor([[[1, 2]] * 5]), _section(-1, 1)], "layer offsets must be 0"),
        ([], "non-empty list"),
    ],
)
def test_bad_kv_cache_index_is_refused_with_the_fix(sections, message):
    with pytest.raises(ValueError, match=message):
        fusion_mask_from_kv_cache_index(sections, torch.zeros(1, 6, dtype=torch.long))


def test_generate_follows_the_index(pair):
    ids = torch.randint(3, 96, (1, 10), generator=torch.Generator().manual_seed(7))
    model = ReferenceStyleModel(pair)

    def run(**kw):
        return pair.generate(
            input_ids=ids, max_new_tokens=4, do_sample=False, return_dict_in_generate=True, output_logits=True, **kw
        )

    def via_index(sections):
        return model.generate(
            input_ids=ids,
            kv_cache_index=sections,
            max_new_tokens=4,
            do_sample=False,
            return_dict_in_generate=True,
            output_logits=True,
        )

    for got, expected in (
        (via_index([_section(1, 9), _section(-1, 1)]), run()),
        (via_index([_section(-1, 9), _section(-1, 1)]), run(fuse=False)),
        (
            via_index([_section(-1, 5), _section(1, 4), _section(-1, 1)]),
            run(fuse_proportion=4 / 9),
        ),  # the reference's back-order partial fusion
    ):
        assert torch.equal(got.sequences, expected.sequences)
        torch.testing.assert_close(got.logits[0], expected.logits[0], rtol=1e-5, atol=1e-5)


def test_load_rosetta_model_names_what_is_missing_or_unsupported():
    from cache2cache.compat import load_rosetta_model

    with pytest.raises(ValueError, match="rosetta_config"):
        load_rosetta_model({})
    with pytest.raises(ValueError, match="lacks teacher_model, checkpoints_dir"):
        load_rosetta_model({"rosetta_config": {"base_model": RECEIVER_ID}})
    with pytest.raises(ValueError, match="only one sharer"):
        load_rosetta_model(
            {"rosetta_config": {"base_model": RECEIVER_ID, "teacher_model": {"a": SHARER_ID}, "checkpoints_dir": "x"}}
        )
    with pytest.raises(ValueError, match="include_response is not supported"):
        load_rosetta_model(
            {
                "rosetta_config": {
                    "base_model": RECEIVER_ID,
                    "teacher_model": SHARER_ID,
                    "checkpoints_dir": "x",
                    "include_response": True,
                }
            }
        )
