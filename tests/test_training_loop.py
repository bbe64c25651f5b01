"""The training loop on the tiny pair: the loss falls; only fuser weights change; kill-and-resume
equals a straight run bit for bit; two torchrun processes match one; the tiny recipe runs through
`c2c train` and writes a checkpoint that reloads and exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cache2cache import C2CModel, FuserConfig
from cache2cache.cli.main import main
from cache2cache.published import export_published
from cache2cache.training import OutputOptions, TrainConfig, TrainingOptions, train_fusers
from cache2cache.training.batching import epoch_order
from tiny import tiny_receiver, tiny_sharer
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

pytestmark = pytest.mark.trains  # .ci/run reruns these at every CPU kernel level

ROOT = Path(__file__).resolve().parents[1]
QA = [
    ("What is the capital of France?", "Paris."),
    ("Two plus two?", "Four."),
    ("How are you today?", "I am fine."),
    ("Where is the station?", "Two streets away."),
]
CONVERSATIONS = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in QA]


def make_pair(aligned: bool = False, **fuser: object) -> C2CModel:
    """Tiny receiver and sharer (embeddings large enough to fit), on the toy tokenizers."""
    receiver_tok = bpe_tokenizer()
    sharer_tok = wordlevel_tokenizer() if aligned else None
    options = {"hidden_dim": 32, "intermediate_dim": 32, "dropout": 0.0, "gate_init": 3.0, **fuser}
    return C2CModel.from_models(
        tiny_receiver(vocab_size=len(receiver_tok), initializer_range=0.2),
        tiny_sharer(vocab_size=len(sharer_tok or receiver_tok), initializer_range=0.2),
        fuser=FuserConfig(**options),  # type: ignore[arg-type]
        receiver_tokenizer=receiver_tok,
        sharer_tokenizer=sharer_tok,
        seed=0,
    )


def config(output_dir: Path, **training: object) -> TrainConfig:
    options = {"max_steps": 30, "per_device_batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0,
               "precision": "fp32", "num_threads": 1, "anneal_ratio": 1.0, "device": "cpu", **training}  # fmt: skip
    return TrainConfig(
        training=TrainingOptions(**options),  # type: ignore[arg-type]
        output=OutputOptions(output_dir=str(output_dir), log_steps=1, save_steps=1000, eval_steps=0),
    )


def test_loss_falls_on_a_fittable_set_and_everything_is_logged(tmp_path) -> None:
    losses: list[float] = []
    final = train_fusers(
        make_pair(), CONVERSATIONS, CONVERSATIONS[:2], config(tmp_path), on_step=lambda s, m: losses.append(m["loss"])
    )
    assert losses[-1] < 0.1 * losses[0], losses
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 31))
    assert {"lr", "grad_norm", "tokens_per_s", "temperature", "gate_open"} <= set(rows[0])
    assert rows[-1] == {"step": 30, "eval_loss": pytest.approx(rows[-1]["eval_loss"])}  # eval at the end
    assert (tmp_path / "recipe.yaml").is_file() and final == tmp_path / "final"
    assert sorted(p.name for p in final.iterdir()) == ["c2c_config.json", "fuser.safetensors"]


def test_epoch_order_groups_by_length_and_keeps_every_example() -> None:
    lengths = [((i * 37) % 101) + 1 for i in range(3 * 32 * 4 + 3)]  # 3 pools of 32 batches of 4, 3 left over
    plain = epoch_order(lengths, seed=1, epoch=0, global_batch=4)
    grouped = epoch_order(lengths, seed=1, epoch=0, global_batch=4, group_by_length=True)
    assert sorted(plain) == sorted(grouped) == list(range(len(lengths)))
    assert grouped[-3:] == plain[-3:]  # the partial batch the epoch drops stays at the end
    assert grouped == epoch_order(lengths, seed=1, epoch=0, global_batch=4, group_by_length=True)  # resumable
    assert grouped != epoch_order(lengths, seed=1, epoch=1, global_batch=4, group_by_length=True)

    def padding(order: list[int]) -> int:  # tokens of padding when each global batch pads to its longest
        batches = [[lengths[i] for i in order[s : s + 4]] for s in range(0, len(order) - 3, 4)]
        return sum(len(b) * max(b) - sum(b) for b in batches)

    assert padding(grouped) < 0.2 * padding(plain)
    for pool in range(3):  # each pool holds the pool's shuffled members, in batches of similar length
        members = grouped[pool * 128 : (pool + 1) * 128]
        assert sorted(members) == sorted(plain[pool * 128 : (pool + 1) * 128])


def test_group_by_length_training_sees_every_example_each_epoch(tmp_path) -> None:
    seen: list[int] = []
    model = make_pair()
    forward = model.forward

    def spy(inputs, prompt_length, *args, **kwargs):
        seen.append(inputs.input_ids.shape[0])
        return forward(inputs, prompt_length, *args, **kwargs)

    model.forward = spy  # type: ignore[method-assign]
    train_fusers(model, CONVERSATIONS * 2, None, config(tmp_path, max_steps=None, epochs=2, group_by_length=True))
    assert sum(seen) == 2 * len(CONVERSATIONS) * 2


def test_only_fuser_parameters_change(tmp_path) -> None:
    model = make_pair(aligned=True)  # the aligned path, end to end
    frozen = {
        f"{role}.{k}": v.clone()
        for role in ("receiver", "sharer")
        for k, v in getattr(model, role).state_dict().items()
    }
    fusers_before = {k: v.clone() for k, v in model.fusers.state_dict().items()}
    train_fusers(model, CONVERSATIONS, None, config(tmp_path, max_steps=3))
    after = {f"{role}.{k}": v for role in ("receiver", "sharer") for k, v in getattr(model, role).state_dict().items()}
    assert all(torch.equal(frozen[k], after[k]) for k in frozen), "a frozen LLM weight changed"
    assert not any(p.requires_grad for p in [*model.receiver.parameters(), *model.sharer.parameters()])
    changed = [k for k, v in model.fusers.state_dict().items() if not torch.equal(v, fusers_before[k])]
    assert any(k.endswith("key_in.weight") for k in changed) and any(k.endswith("gate_logit") for k in changed)


def test_killed_and_resumed_run_equals_a_straight_run(tmp_path) -> None:
    # Published gate init 0 and dropout 0.1: Gumbel noise and dropout both matter for exactness.
    options = {"max_steps": 6, "per_device_batch_size": 2, "gradient_accumulation_steps": 2, "learning_rate": 3e-3}
    fuser = {"gate_init": 0.0, "dropout": 0.1}
    straight = train_fusers(make_pair(**fuser), CONVERSATIONS * 2, None, config(tmp_path / "straight", **options))

    killed = config(tmp_path / "killed", **options)
    killed.output.save_steps = 2

    def kill(step: int, metrics: dict[str, float]) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fusers(make_pair(**fuser), CONVERSATIONS * 2, None, killed, on_step=kill)
    assert sorted(p.name for p in (tmp_path / "killed").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    killed.training.resume_from = "latest"
    resumed = train_fusers(make_pair(**fuser), CONVERSATIONS * 2, None, killed)  # a new process: fresh model

    a, b = load_file(straight / "fuser.safetensors"), load_file(resumed / "fuser.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # rows past the checkpoint were replaced, not duplicated


def test_fresh_run_refuses_to_mix_with_earlier_checkpoints(tmp_path) -> None:
    cfg = config(tmp_path, max_steps=1)
    train_fusers(make_pair(), CONVERSATIONS, None, cfg)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train_fusers(make_pair(), CONVERSATIONS, None, cfg)


def _train_cli(*args: str) -> list[str]:
    return [
        "train",
        "--config",
        "recipes/tiny.yaml",
        "--max_steps",
        "4",
        "--eval_steps",
        "2",
        "--gate_init",
        "30",
        *args,
    ]


def test_two_torchrun_processes_match_one_with_the_same_global_batch(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    # gate_init 30: the gate is ~1 whatever the Gumbel noise, so the ranks' different noise cannot matter
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "cache2cache.cli.main",
               *_train_cli("--per_device_batch_size", "2", "--output_dir", str(tmp_path / "ddp"))]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert main(_train_cli("--per_device_batch_size", "4", "--output_dir", str(tmp_path / "one"))) == 0

    two, one = load_file(tmp_path / "ddp/final/fuser.safetensors"), load_file(tmp_path / "one/final/fuser.safetensors")
    # Two ranks sum each gradient in another order. Adam divides by sqrt(v), so a near-zero gradient's
    # rounding can move its weight by a small fraction of one step (lr 3e-3): at the unvectorised
    # kernel level (ATEN_CPU_CAPABILITY=default) one weight in 4096 differed by 1.5e-5. 1e-4 is 3 %
    # of a step; a wrong reduction (a rank's gradients lost or counted twice) moves weights by whole steps.
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-4)
    rows = {
        name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("ddp", "one")
    }
    for a, b in zip(rows["ddp"], rows["one"], strict=True):  # losses and eval losses averaged over ranks
        assert a.keys() == b.keys() and a["step"] == b["step"]
        for key in ("loss", "eval_loss"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-5)
    assert "joined the gloo process group" in result.stderr


def test_tiny_recipe_trains_through_the_cli_and_the_checkpoint_reloads(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "tiny"
    assert main(["train", "--config", "recipes/tiny.yaml", "--max_steps", "9", "--output_dir", str(out)]) == 0
    assert f"fusers saved to {out / 'final'}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-9", "final", "metrics.jsonl", "models", "recipe.yaml"]
    model = C2CModel.from_pretrained(out / "final")  # the recorded random-weight models reload from output_dir
    assert model.generate([{"role": "user", "content": "What colour is the fox?"}], max_new_tokens=3, do_sample=False)
    exported = export_published(model, tmp_path / "published")
    assert (exported / "final" / "projector_config.json").is_file()
    # a resume of the finished run has nothing left to do and leaves the fusers as they are
    before = load_file(out / "final" / "fuser.safetensors")
    assert (
        main(["train", "--config", "recipes/tiny.yaml", "--max_steps", "9", "--output_dir", str(out), "--resume"]) == 0
    )
    after = load_file(out / "final" / "fuser.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_auto_precision_picks_bf16_only_where_it_runs_natively() -> None:
    from cache2cache.loading import has_fast_bf16
    from cache2cache.training.distributed import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if has_fast_bf16(cpu) else "fp32")
    assert (resolve_precision("bf16", cpu), resolve_precision("fp32", cpu)) == ("bf16", "fp32")
