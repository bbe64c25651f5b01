"""The `c2c` command line: help without torch, generate / chat / inspect on tiny pairs saved to disk,
and one-line errors (non-zero exit, no traceback) for bad inputs."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

from cache2cache import C2CModel, FuserConfig, count_parameters, prefix
from cache2cache.alignment import TokenAligner
from cache2cache.chat import render_chat
from cache2cache.cli.main import COMMANDS, main
from tiny import tiny_receiver, tiny_sharer
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

MY_VERBS = ("generate", "chat", "inspect")
SMALL = ["--hidden_dim", "16", "--intermediate_dim", "16"]


def _special_ids(tok) -> dict[str, int]:
    return {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny models saved with `save_pretrained`, each with its toy tokenizer, plus a trained-looking fuser checkpoint.

    recv: Qwen3 + BPE tokenizer; shr: Llama + WordLevel tokenizer (different tokenizers);
    shr_bpe: Llama + the receiver's BPE tokenizer (shared tokenizer); shr_deep: like shr, 3 layers;
    ckpt: open-gate fusers for recv <- shr, saved with `save_pretrained`.
    """
    root = tmp_path_factory.mktemp("cli")
    rtok, stok = bpe_tokenizer(), wordlevel_tokenizer()
    models = {
        "recv": (tiny_receiver(vocab_size=len(rtok), **_special_ids(rtok)), rtok),
        "shr": (tiny_sharer(vocab_size=len(stok), **_special_ids(stok)), stok),
        "shr_bpe": (tiny_sharer(vocab_size=len(rtok), **_special_ids(rtok)), rtok),
        "shr_deep": (tiny_sharer(vocab_size=len(stok), num_hidden_layers=3, **_special_ids(stok)), stok),
    }
    out = {}
    for name, (model, tok) in models.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = str(root / name)
    fuser = FuserConfig(hidden_dim=16, intermediate_dim=16, dropout=0.0, gate_init=3.0)
    pair = C2CModel.from_models(models["recv"][0], models["shr"][0], fuser=fuser, seed=0)
    pair.save_pretrained(root / "ckpt")
    out["ckpt"] = str(root / "ckpt")
    return out


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expected_text(model: C2CModel, messages: list[dict[str, str]], max_new_tokens: int, fuse: bool = True) -> str:
    return model.generate(messages, max_new_tokens=max_new_tokens, do_sample=False, fuse=fuse)


# ------------------------------------------------------------------------------------------ help


def test_help_lists_every_verb(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    for verb in COMMANDS:
        assert verb in out


def test_help_does_not_import_torch():
    script = "import sys; from cache2cache.cli.main import main; main(['--help']); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert "generate" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]", "c2c --help imported torch/transformers"


@pytest.mark.parametrize("verb", MY_VERBS)
def test_verb_help_shows_a_copy_pasteable_example(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"c2c {verb} " in out.split("example")[1]
    for flag in ("--receiver", "--sharer"):
        assert flag in out


# ------------------------------------------------------------------------------------------ generate


def test_generate_with_fresh_fusers_streams_the_receivers_answer(dirs, capsys, caplog):
    prompt = "What is the capital of France?"
    code, out, err = _run(
        ["generate", prompt, "--receiver", dirs["recv"], "--sharer", dirs["shr"], "--max_new_tokens", "6", *SMALL],
        capsys,
    )
    assert code == 0, err
    assert "UNTRAINED" in caplog.text
    # Fresh fusers have closed gates (published init), so the streamed text is the receiver's own answer.
    receiver = AutoModelForCausalLM.from_pretrained(dirs["recv"])
    tok = bpe_tokenizer()
    text = render_chat(tok, [{"role": "user", "content": prompt}], enable_thinking=False)  # as C2CModel renders it
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    plain = receiver.generate(ids, max_new_tokens=6, do_sample=False)
    assert out == tok.decode(plain[0, ids.shape[1] :], skip_special_tokens=True) + "\n"
    code, out_no_fuse, _ = _run(
        [
            "generate",
            prompt,
            "--receiver",
            dirs["recv"],
            "--sharer",
            dirs["shr"],
            "--max_new_tokens",
            "6",
            "--no_fuse",
            *SMALL,
        ],
        capsys,
    )
    assert code == 0 and out_no_fuse == out


def test_generate_with_a_checkpoint_streams_what_the_library_generates(dirs, capsys):
    argv = ["generate", "Hello world", "--fuser", dirs["ckpt"], "--receiver", dirs["recv"], "--sharer", dirs["shr"],
            "--max_new_tokens", "7", "--system", "You are a helpful assistant."]  # fmt: skip
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    model = C2CModel.from_pretrained(dirs["ckpt"], receiver=dirs["recv"], sharer=dirs["shr"])
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello world"},
    ]
    assert out == _expected_text(model, messages, 7) + "\n"
    code, out_no_fuse, _ = _run([*argv, "--no_fuse"], capsys)
    assert code == 0 and out_no_fuse == _expected_text(model, messages, 7, fuse=False) + "\n"


def test_generate_samples_reproducibly_with_a_seed(dirs, capsys):
    argv = ["generate", "Hello", "--receiver", dirs["recv"], "--sharer", dirs["shr_bpe"], "--max_new_tokens", "8",
            "--do_sample", "--temperature", "1.5", "--top_p", "0.95", "--seed", "3", *SMALL]  # fmt: skip
    first, second = _run(argv, capsys), _run(argv, capsys)
    assert first[0] == second[0] == 0
    assert first[1] == second[1]


# ------------------------------------------------------------------------------------------ chat


@pytest.fixture
def recorded_turns(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[dict[str, str]], str]]:
    """Every answer of the test, through `C2CModel.generate` or `prefix.generate` (prefix reuse):
    (the conversation passed, the reply returned)."""
    turns: list[tuple[list[dict[str, str]], str]] = []
    original, original_reusing = C2CModel.generate, prefix.generate

    def recording_generate(self, messages, **kwargs):
        assert kwargs["streamer"] is not None
        reply = original(self, messages, **kwargs)
        turns.append(([dict(m) for m in messages], reply))
        return reply

    def recording_reusing(model, messages, **kwargs):
        assert kwargs["streamer"] is not None
        reply, cached = original_reusing(model, messages, **kwargs)
        turns.append(([dict(m) for m in messages], reply))
        return reply, cached

    monkeypatch.setattr(C2CModel, "generate", recording_generate)
    monkeypatch.setattr(prefix, "generate", recording_reusing)
    return turns


@pytest.fixture
def reused_columns(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """For every answer through `prefix.generate`, how many prompt columns came from the previous prompt's caches."""
    reused: list[int] = []
    original = prefix.generate

    def recording(model, messages, **kwargs):
        reply, cached = original(model, messages, **kwargs)
        reused.append(cached.reused)
        return reply, cached

    monkeypatch.setattr(prefix, "generate", recording)
    return reused


def test_chat_reuses_the_previous_turn_and_answers_as_without_reuse(dirs, capsys, monkeypatch, reused_columns):
    lines = "Hello world\nHow are you?\n/reset\nThe sky is blue.\n"
    outs = []
    for flags in ([], ["--no_prefix_reuse"]):
        monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
        code, out, err = _run(["chat", "--fuser", dirs["ckpt"], "--receiver", dirs["recv"], "--sharer", dirs["shr"],
                               "--max_new_tokens", "4", "--system", "Be brief.", *flags], capsys)  # fmt: skip
        assert code == 0, err
        outs.append(out)
    assert outs[0] == outs[1]
    first, second, after_reset = reused_columns  # only the run with reuse goes through prefix.generate
    assert first == 0 and second > 0 and after_reset > 0  # the system message is reused after /reset too


def test_chat_keeps_history_resets_and_exits(dirs, capsys, monkeypatch, recorded_turns):
    monkeypatch.setattr(
        sys, "stdin", io.StringIO("Hello world\nHow are you?\n/reset\n\n/nope\nThe sky is blue.\n/exit\nnever read\n")
    )
    code, out, err = _run(["chat", "--fuser", dirs["ckpt"], "--receiver", dirs["recv"], "--sharer", dirs["shr"],
                           "--max_new_tokens", "4", "--system", "Be brief."], capsys)  # fmt: skip
    assert code == 0, err
    assert "(history cleared)" in err and "unknown command '/nope'" in err
    conversations = [[(m["role"], m["content"]) for m in messages] for messages, _ in recorded_turns]
    system, first_reply = ("system", "Be brief."), recorded_turns[0][1]
    assert conversations == [
        [system, ("user", "Hello world")],
        [system, ("user", "Hello world"), ("assistant", first_reply), ("user", "How are you?")],
        [system, ("user", "The sky is blue.")],
    ]
    assert out == "".join(reply + "\n" for _, reply in recorded_turns)  # the streamed answers, nothing else


def test_chat_ends_at_end_of_input(dirs, capsys, monkeypatch, recorded_turns):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello"))
    code, out, err = _run(
        ["chat", "--receiver", dirs["recv"], "--sharer", dirs["shr_bpe"], "--max_new_tokens", "3", *SMALL], capsys
    )
    assert code == 0, err
    assert len(recorded_turns) == 1 and out == recorded_turns[0][1] + "\n"


# ------------------------------------------------------------------------------------------ inspect


def test_inspect_shows_shapes_layer_map_fuser_size_and_alignment(dirs, capsys):
    prompt = "What is the capital of France?"
    code, out, err = _run(
        ["inspect", "--receiver", dirs["recv"], "--sharer", dirs["shr"], "--prompt", prompt, *SMALL], capsys
    )
    assert code == 0, err
    assert "qwen3" in out and "llama" in out
    kv_row = next(line for line in out.splitlines() if line.strip().startswith("KV heads"))
    assert kv_row.split()[-2:] == ["2", "3"]
    assert "layer map: terminal (3 fusers" in out and "0-1 <- 0" in out and "2 <- 1" in out
    per_fuser = count_parameters(C2CModel.from_models(tiny_receiver(vocab_size=400), tiny_sharer(vocab_size=149),
                                                      fuser=FuserConfig(hidden_dim=16, intermediate_dim=16)).fusers.fusers["0"])  # fmt: skip
    assert f"{per_fuser:,} parameters per fuser x 3 = {3 * per_fuser:,}" in out
    rows = TokenAligner(bpe_tokenizer(), wordlevel_tokenizer()).preview([{"role": "user", "content": prompt}])
    assert f"alignment of the prompt: {len(rows)} positions, {sum(f for *_, f in rows)} fused" in out
    assert "'<|im_start|>'" in out and "'<s>'" in out


def test_inspect_with_a_shared_tokenizer_and_depth_map(dirs, capsys):
    code, out, err = _run(
        ["inspect", "--receiver", dirs["recv"], "--sharer", dirs["shr_bpe"], "--layer_map", "depth", "--prompt", "Hi"],
        capsys,
    )
    assert code == 0, err
    assert "layer map: depth" in out and "identical vocabularies" in out and "are fused" in out


def test_inspect_measures_the_alignment_over_a_task(dirs, tmp_path, capsys):
    """`--task` counts, over the task's prompts as c2c eval renders them, what `TokenAligner.fidelity` counts."""
    questions = ["What is the capital of France?", "How are A, B, C?", "Two plus two is four?"]
    task = tmp_path / "task.jsonl"
    task.write_text("".join(json.dumps({"question": q, "choices": ["x", "y"], "answer": 0}) + "\n" for q in questions))
    code, out, err = _run(["inspect", "--receiver", dirs["recv"], "--sharer", dirs["shr"], "--task", str(task),
                           "--prompt_style", "plain", *SMALL], capsys)  # fmt: skip
    assert code == 0, err
    fid = TokenAligner(bpe_tokenizer(), wordlevel_tokenizer()).fidelity(
        [{"role": "user", "content": q}] for q in questions
    )
    assert f"alignment over 3 prompts of {task} (--prompt_style plain):" in out
    assert (
        f"{fid.message_tokens:,} fused positions; the sharer's own encoding of the same texts: {fid.native_tokens:,}"
        in out
    )
    assert f"exactly its own tokenization: {fid.native_conversations} of 3" in out
    assert (
        f"lose or replace characters: {fid.lossy_conversations} of 3 ({100 * fid.lossy_conversations / 3:.1f} %)" in out
    )
    code, _, err = _run(
        ["inspect", "--receiver", dirs["recv"], "--sharer", dirs["shr"], "--task", "no_such_task"], capsys
    )
    _assert_clean_error(code, err, "inspect", "unknown task 'no_such_task'")


def test_inspect_counts_the_published_fuser_stack_on_the_meta_device(tmp_path, capsys):
    """Qwen3-0.6B <- Qwen2.5-0.5B shapes from configs alone (no weights): the paper's 478M fusers."""
    tok = bpe_tokenizer()
    Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                num_key_value_heads=8, head_dim=128).save_pretrained(tmp_path / "qwen3")  # fmt: skip
    Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2).save_pretrained(tmp_path / "qwen2")  # fmt: skip
    for name in ("qwen3", "qwen2"):
        tok.save_pretrained(tmp_path / name)
    code, out, err = _run(
        ["inspect", "--receiver", str(tmp_path / "qwen3"), "--sharer", str(tmp_path / "qwen2")], capsys
    )
    assert code == 0, err
    assert "17,066,002 parameters per fuser x 28 = 477,848,056" in out
    assert "0-4 <- 0" in out and "5-27 <- 1-23" in out
    assert not list(tmp_path.glob("*/model.safetensors"))


# ------------------------------------------------------------------------------------------ errors


def _assert_clean_error(code: int, err: str, verb: str, *needles: str) -> None:
    assert code != 0
    assert f"c2c {verb}: error:" in err and "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_bad_fuser_path_is_a_one_line_error(dirs, tmp_path, capsys):
    code, _, err = _run(
        [
            "generate",
            "Hi",
            "--fuser",
            str(tmp_path / "missing" / "ckpt"),
            "--receiver",
            dirs["recv"],
            "--sharer",
            dirs["shr"],
        ],
        capsys,
    )
    _assert_clean_error(code, err, "generate", "missing/ckpt", "neither an existing folder nor a hub repo id")
    code, _, err = _run(["chat", "--fuser", str(tmp_path), "--receiver", dirs["recv"], "--sharer", dirs["shr"]], capsys)
    _assert_clean_error(code, err, "chat", "holds no C2C checkpoint")


def test_checkpoint_on_mismatched_models_names_both_sides(dirs, capsys):
    code, _, err = _run(
        ["generate", "Hi", "--fuser", dirs["ckpt"], "--receiver", dirs["recv"], "--sharer", dirs["shr_deep"]], capsys
    )
    _assert_clean_error(code, err, "generate", "sharer: the fusers were built for", "num_hidden_layers: 2 != 3", "Fix:")


def test_flag_conflicts_and_missing_models_are_one_line_errors(dirs, capsys):
    code, _, err = _run(["generate", "Hi", "--fuser", dirs["ckpt"], "--hidden_dim", "8"], capsys)
    _assert_clean_error(code, err, "generate", "--hidden_dim shape fresh fusers only")
    code, _, err = _run(["generate", "Hi", "--receiver", dirs["recv"]], capsys)
    _assert_clean_error(code, err, "generate", "--sharer is required")
    code, _, err = _run(["inspect", "--receiver", dirs["recv"], "--sharer", "./no/such/model"], capsys)
    _assert_clean_error(code, err, "inspect", "no/such/model")
