"""Bad input, counted: every case below is one distinct bad input, driven through the `c2c` command
line (in process, a few in a subprocess) or the Python API.

For each command-line case: a non-zero exit, a message of one line naming the problem and the fix
(the last line of stderr, and the only `error:` line), no traceback, nothing on stdout, and no
half-written output (the watched folder or file is exactly as before). The catalogue, with each
message, is docs/reliability.md; `test_the_catalogue_lists_every_case` keeps the two in step.

The second half covers "nothing lost at the end of a run": without matplotlib, `c2c eval` and the
demo's report write everything but the chart and warn; `c2c fetch` says the gguf extra is missing
before it downloads anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from cache2cache import C2CConfig, C2CModel, FuserConfig
from cache2cache.cli.main import main
from cache2cache.loading import load_model
from cache2cache.published import export_published
from cache2cache.tasks import TaskError, load_task
from cache2cache.training.config import ConfigError, load_train_config
from tiny import tiny_receiver, tiny_sharer
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "tests" / "fixtures" / "eval" / "tiny_mc.jsonl"
MARKER = "PWNED"  # the file a malicious pickle would create


class Payload:
    """Unpickling this runs `touch <marker>`: what a malicious projector_0.pt does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------------- the files


def _special_ids(tok) -> dict[str, int]:
    return {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id}


def _copy_ckpt(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _readonly_dir(root: Path) -> Path | None:
    """A folder this process cannot create entries in, or None where none can be made (root on a
    machine without a read-only pseudo file system)."""
    folder = root / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").mkdir()
    except OSError:
        return folder
    (folder / "probe").rmdir()
    for candidate in (Path("/sys/fs"), Path("/sys"), Path("/proc/sys")):  # refused even to root
        try:
            (candidate / "c2c-probe").mkdir()
        except OSError:
            return candidate
        (candidate / "c2c-probe").rmdir()
    return None


@pytest.fixture(scope="module")
def f(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | None]:
    """Every file the cases use, built once: tiny models, checkpoints (ours and published, sound and
    broken), task files, recipes and output folders that cannot be used."""
    root = tmp_path_factory.mktemp("bad")
    rt, st = bpe_tokenizer(), wordlevel_tokenizer()
    built = {
        "recv": (tiny_receiver(vocab_size=len(rt), **_special_ids(rt)), rt),
        "shr": (tiny_sharer(vocab_size=len(st), **_special_ids(st)), st),
        "other": (tiny_receiver(vocab_size=len(rt), num_hidden_layers=4, head_dim=8, **_special_ids(rt)), rt),
    }
    out: dict[str, Path | None] = {}
    for name, (model, tok) in built.items():
        model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = root / name
    receiver, sharer = load_model(out["recv"]), load_model(out["shr"])
    pair = C2CModel.from_models(receiver, sharer, fuser=FuserConfig(hidden_dim=16, intermediate_dim=16, dropout=0.0),
                                receiver_tokenizer=rt, sharer_tokenizer=st)  # fmt: skip
    ckpt = out["ckpt"] = pair.save_pretrained(root / "ckpt")
    narrow = C2CModel.from_models(
        receiver,
        sharer,
        fuser=FuserConfig(hidden_dim=8, intermediate_dim=8),
        receiver_tokenizer=rt,
        sharer_tokenizer=st,
    )
    narrow.save_pretrained(root / "narrow")

    # our format, broken
    weights = (ckpt / "fuser.safetensors").read_bytes()
    (_copy_ckpt(ckpt, root / "truncated") / "fuser.safetensors").write_bytes(weights[: len(weights) // 2])
    (_copy_ckpt(ckpt, root / "garbage") / "fuser.safetensors").write_bytes(b"\x00" * 64)
    (_copy_ckpt(ckpt, root / "no_weights") / "fuser.safetensors").unlink()
    shutil.copy(root / "narrow" / "fuser.safetensors", _copy_ckpt(ckpt, root / "other_weights") / "fuser.safetensors")
    configs = {
        "bad_json": lambda p: p.write_text('{"format_version": 1,'),
        "empty_json": lambda p: p.write_text(""),
        "list_json": lambda p: p.write_text("[1, 2]"),
        "no_fuser_key": lambda p: _edit_json(p, lambda d: d.pop("fuser")),
        "no_head_dim": lambda p: _edit_json(p, lambda d: d["receiver"].pop("head_dim")),
        "str_hidden_dim": lambda p: _edit_json(p, lambda d: d["fuser"].update(hidden_dim="big")),
        "list_layer_map": lambda p: _edit_json(p, lambda d: d.update(layer_map=[0, 1])),
        "unknown_fuser_key": lambda p: _edit_json(p, lambda d: d["fuser"].update(hidden_dims=16)),
        "version_99": lambda p: _edit_json(p, lambda d: d.update(format_version=99)),
        "negative_hidden_dim": lambda p: _edit_json(p, lambda d: d["fuser"].update(hidden_dim=-4)),
    }
    for name, damage in configs.items():
        damage(_copy_ckpt(ckpt, root / name) / "c2c_config.json")
        out[name] = root / name

    # the published layout, sound and broken
    published = out["published"] = export_published(C2CModel.from_pretrained(ckpt), root / "published")
    projector = (published / "final" / "projector_0.pt").read_bytes()
    evil = _copy_ckpt(published, root / "pickled")
    torch.save({"weight": Payload(root / MARKER)}, evil / "final" / "projector_0.pt")
    (_copy_ckpt(published, root / "truncated_pt") / "final" / "projector_0.pt").write_bytes(projector[:200])
    (_copy_ckpt(published, root / "bad_projector_json") / "final" / "projector_0.json").write_text("{oops")
    _edit_json(
        _copy_ckpt(published, root / "str_init_arg") / "final" / "projector_0.json",
        lambda d: d["init_args"].update(hidden_dim="big"),
    )
    (_copy_ckpt(published, root / "bad_layer_map") / "final" / "projector_config.json").write_text("[]")
    out["marker"] = root / MARKER

    # tasks
    tasks = root / "tasks"
    tasks.mkdir()
    good = '{"question": "Q?", "choices": ["a", "b"], "answer": 0}\n'
    (tasks / "bad_utf8.jsonl").write_bytes(
        good.encode() + b'{"question": "caf\xe9?", "choices": ["a", "b"], "answer": 0}\n'
    )
    (tasks / "no_answer.jsonl").write_text('{"question": "Q?", "choices": ["a", "b"]}\n')
    (tasks / "answer_5.jsonl").write_text('{"question": "Q?", "choices": ["a", "b"], "answer": 5}\n')
    (tasks / "answer_minus_1.jsonl").write_text('{"question": "Q?", "choices": ["a", "b"], "answer": -1}\n')
    (tasks / "not_json.jsonl").write_text(good + "question: Q?\n")
    (tasks / "empty.jsonl").write_text("")
    out["tasks"] = tasks

    # recipes
    recipes = root / "recipes"
    recipes.mkdir()
    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    for role in ("receiver", "sharer"):
        raw["model"][role] = str(ROOT / raw["model"][role])
    for split in ("train", "eval"):
        for source in raw["data"][split]:
            source["path"] = str(ROOT / source["path"])
    raw["training"]["max_steps"] = 2
    raw["output"].update(output_dir=str(root / "train_run"), overwrite=False)
    (recipes / "bad_utf8.jsonl").write_bytes(
        b'{"messages": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "ok"}]}\n'
    )
    (recipes / "no_messages.jsonl").write_text('{"text": "a record without messages"}\n')

    def recipe(name: str, edit: Callable[[dict], object] | None = None, text: str | None = None) -> None:
        data = json.loads(json.dumps(raw))
        if edit is not None:
            edit(data)
        (recipes / f"{name}.yaml").write_text(text if text is not None else yaml.safe_dump(data))

    recipe("ok")
    recipe("typo_key", lambda d: d["training"].update(learning_rat=1e-3))
    recipe("wrong_type", lambda d: d["training"].update(per_device_batch_size="eight"))
    recipe("no_data", lambda d: d["data"].update(train=[]))
    recipe("missing_data_file", lambda d: d["data"]["train"][0].update(path=str(recipes / "missing.jsonl")))
    recipe(
        "bad_utf8_data",
        lambda d: d["data"].update(train=[{"type": "chat", "path": str(recipes / "bad_utf8.jsonl")}], eval=[]),
    )
    recipe(
        "no_messages_data",
        lambda d: d["data"].update(train=[{"type": "chat", "path": str(recipes / "no_messages.jsonl")}], eval=[]),
    )
    recipe("bad_yaml", text="model: [receiver, sharer\ntraining: {}\n")
    recipe("list_yaml", text="- kind: train\n- model: {}\n")
    (recipes / "eval_typo.yaml").write_text(yaml.safe_dump({"kind": "eval", "receiver": str(out["recv"]), "sharer": str(out["shr"]),
                                                            "task": str(TASK), "modes": ["receiver"], "batch_sise": 4}))  # fmt: skip
    out["recipes"] = recipes

    # output folders that cannot be used, and an eval run that is finished
    (root / "a_file").write_text("not a folder\n")
    out["a_file"] = root / "a_file"
    out["readonly"] = _readonly_dir(root)
    finished = root / "finished_eval"
    finished.mkdir()
    (finished / "items.jsonl").write_text('{"mode": "receiver", "id": "q1"}\n')
    out["finished_eval"] = finished
    out["root"] = root
    for path in root.iterdir():  # every folder made above, by name
        out.setdefault(path.name, path)
    return out


# ------------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One bad input: `argv(f)` runs it; `needles` must all be in the error line; `watch(f)` is the
    output that must be untouched (None: nothing to watch beyond stdout)."""

    id: str
    argv: Callable[[dict], list[str]]
    needles: tuple[str, ...]
    watch: Callable[[dict], Path] | None = None
    needs: str | None = None  # a fixture entry that may be missing on this machine (skip then)


def _gen(f: dict, *extra: str, fuser: str = "ckpt", prompt: str = "Hi") -> list[str]:
    return [
        "generate",
        prompt,
        "--fuser",
        str(f[fuser]),
        "--receiver",
        str(f["recv"]),
        "--sharer",
        str(f["shr"]),
        "--max_new_tokens",
        "2",
        *extra,
    ]


def _fresh(f: dict, *extra: str) -> list[str]:
    return ["generate", "Hi", "--receiver", str(f["recv"]), "--sharer", str(f["shr"]), "--max_new_tokens", "2", *extra]


def _eval(f: dict, *extra: str, task: str | Path = TASK, out: Path | None = None) -> list[str]:
    return ["eval", "--receiver", str(f["recv"]), "--sharer", str(f["shr"]), "--task", str(task), "--modes", "receiver",
            "--max_new_tokens", "2", "--output_dir", str(out if out is not None else f["root"] / "eval_run"), *extra]  # fmt: skip


def _train(f: dict, recipe: str = "ok", *extra: str) -> list[str]:
    return ["train", "--config", str(f["recipes"] / f"{recipe}.yaml"), *extra]


def _eval_run(f: dict) -> Path:
    return f["root"] / "eval_run"


def _train_run(f: dict) -> Path:
    return f["root"] / "train_run"


CASES: list[Case] = [
    # ---- nonexistent and wrong-kind paths
    Case(
        "receiver-does-not-exist",
        lambda f: _fresh(f, "--receiver", str(f["root"] / "nowhere")),
        ("does not exist", "give an existing folder"),
    ),
    Case(
        "receiver-is-a-config-file",
        lambda f: _fresh(f, "--receiver", str(f["recv"] / "config.json")),
        ("is a file but not a .gguf", "give a .gguf file"),
    ),
    Case("fuser-is-a-file", lambda f: _gen(f, fuser="a_file"), ("is not a folder", "check the path")),
    Case(
        "fuser-is-a-model-folder",
        lambda f: _gen(f, fuser="recv"),
        ("holds no C2C checkpoint", "expected c2c_config.json"),
    ),
    Case(
        "fuser-does-not-exist",
        lambda f: _gen(f) + ["--fuser", str(f["root"] / "nowhere" / "ckpt")],
        ("neither an existing folder nor a hub repo id",),
    ),
    Case(
        "inspect-sharer-does-not-exist",
        lambda f: ["inspect", "--receiver", str(f["recv"]), "--sharer", "./no/such/model"],
        ("does not exist", "give an existing folder"),
    ),
    Case(
        "task-is-a-folder",
        lambda f: _eval(f, task=f["tasks"]),
        ("is neither a known task", "c2c eval --list_tasks"),
        _eval_run,
    ),
    Case("task-name-typo", lambda f: _eval(f, task="arc_esay"), ("did you mean arc_easy",), _eval_run),
    Case(
        "recipe-does-not-exist",
        lambda f: ["train", "--config", str(f["recipes"] / "nope.yaml")],
        ("recipe file not found",),
    ),
    Case(
        "recipe-is-a-folder",
        lambda f: ["train", "--config", str(f["recipes"])],
        ("is a folder, not a recipe", "give the .yaml file"),
    ),
    Case(
        "convert-missing-gguf",
        lambda f: ["convert", str(f["root"] / "model.gguf"), str(f["root"] / "dense")],
        ("does not exist", "give a .gguf file"),
        lambda f: f["root"] / "dense",
    ),
    Case(
        "convert-a-dense-folder",
        lambda f: ["convert", str(f["recv"]), str(f["root"] / "dense")],
        ("not a GGUF file", "needs no conversion"),
        lambda f: f["root"] / "dense",
    ),
    # ---- a fuser for another pair
    Case(
        "fuser-for-another-receiver",
        lambda f: _gen(f, "--receiver", str(f["other"])),
        ("does not fit", "num_hidden_layers: 3 != 4", "Fix: pass the receiver"),
    ),
    Case(
        "eval-fuser-for-another-receiver",
        lambda f: [
            "eval",
            "--fuser",
            str(f["ckpt"]),
            "--receiver",
            str(f["other"]),
            "--task",
            str(TASK),
            "--modes",
            "c2c",
            "--output_dir",
            str(_eval_run(f)),
        ],
        ("does not fit", "head_dim: 16 != 8", "Fix:"),
        _eval_run,
    ),  # fmt: skip
    Case(
        "chat-fuser-for-another-receiver",
        lambda f: ["chat", "--fuser", str(f["ckpt"]), "--receiver", str(f["other"])],
        ("does not fit", "Fix:"),
    ),
    Case(
        "published-fuser-for-another-receiver",
        lambda f: _gen(f, "--receiver", str(f["other"]), fuser="published"),
        ("trained for other KV shapes", "Fix: pass the receiver and sharer"),
    ),
    Case(
        "weights-of-another-fuser-size",
        lambda f: _gen(f, fuser="other_weights"),
        ("does not match the fuser architecture", "wrong shapes", "Fix:"),
    ),
    # ---- truncated or corrupted fuser.safetensors
    Case(
        "fuser-safetensors-truncated",
        lambda f: _gen(f, fuser="truncated"),
        ("cannot read fuser weights", "re-save the checkpoint"),
    ),
    Case("fuser-safetensors-garbage", lambda f: _gen(f, fuser="garbage"), ("cannot read fuser weights", "corrupt")),
    Case("fuser-safetensors-missing", lambda f: _gen(f, fuser="no_weights"), ("cannot read fuser weights", "missing")),
    # ---- c2c_config.json
    Case(
        "config-bad-json",
        lambda f: _gen(f, fuser="bad_json"),
        ("is not valid JSON", "line 1", "re-save the checkpoint"),
    ),
    Case("config-empty", lambda f: _gen(f, fuser="empty_json"), ("is not valid JSON", "re-save the checkpoint")),
    Case(
        "config-top-level-list",
        lambda f: _gen(f, fuser="list_json"),
        ("the top level is a list", "re-save the checkpoint"),
    ),
    Case(
        "config-missing-fuser-key",
        lambda f: _gen(f, fuser="no_fuser_key"),
        ("fuser: missing", "re-save the checkpoint"),
    ),
    Case("config-missing-head-dim", lambda f: _gen(f, fuser="no_head_dim"), ("receiver.head_dim: missing",)),
    Case(
        "config-string-hidden-dim",
        lambda f: _gen(f, fuser="str_hidden_dim"),
        ("fuser.hidden_dim: got 'big', expected an integer",),
    ),
    Case(
        "config-layer-map-list",
        lambda f: _gen(f, fuser="list_layer_map"),
        ("layer_map: got [0, 1]", "receiver layer -> sharer layer"),
    ),
    Case(
        "config-unknown-key",
        lambda f: _gen(f, fuser="unknown_fuser_key"),
        ("fuser.hidden_dims: unknown key", "hidden_dim"),
    ),
    Case(
        "config-format-version-99",
        lambda f: _gen(f, fuser="version_99"),
        ("format_version 99", "reads version 1", "Upgrade cache2cache"),
    ),
    Case(
        "config-negative-hidden-dim",
        lambda f: _gen(f, fuser="negative_hidden_dim"),
        ("fuser.hidden_dim: got -4, expected a positive integer",),
    ),
    # ---- the published layout
    Case(
        "published-pickle-payload",
        lambda f: _gen(f, fuser="pickled"),
        ("holds more than tensors (pickled objects or code)", "refused without running it", "posix.system"),
    ),
    Case(
        "published-pt-truncated", lambda f: _gen(f, fuser="truncated_pt"), ("truncated or corrupt", "download it again")
    ),
    Case(
        "published-projector-json-bad",
        lambda f: _gen(f, fuser="bad_projector_json"),
        ("projector_0.json is not valid JSON", "restore it"),
    ),
    Case(
        "published-init-arg-string",
        lambda f: _gen(f, fuser="str_init_arg"),
        ("hidden_dim: got 'big', expected an integer", "restore it"),
    ),
    Case(
        "published-layer-map-list",
        lambda f: _gen(f, fuser="bad_layer_map"),
        ("is not a published layer map", "expected {'0'"),
    ),
    # ---- absurd generation parameters
    Case(
        "max-new-tokens-0",
        lambda f: _gen(f, "--max_new_tokens", "0"),
        ("max_new_tokens=0", "expected a positive integer"),
    ),
    Case(
        "max-new-tokens-negative",
        lambda f: _gen(f, "--max_new_tokens", "-5"),
        ("max_new_tokens=-5", "expected a positive integer"),
    ),
    Case(
        "max-new-tokens-not-a-number",
        lambda f: _gen(f, "--max_new_tokens", "many"),
        ("--max_new_tokens: invalid int value: 'many'",),
    ),
    Case(
        "top-p-2",
        lambda f: _gen(f, "--do_sample", "--top_p", "2"),
        ("top_p=2.0", "expected a probability mass in (0, 1]"),
    ),
    Case(
        "temperature-0",
        lambda f: _gen(f, "--do_sample", "--temperature", "0"),
        ("temperature=0.0", "expected a number > 0", "drop do_sample"),
    ),
    Case(
        "temperature-negative",
        lambda f: _gen(f, "--do_sample", "--temperature", "-1"),
        ("temperature=-1.0", "expected a number > 0"),
    ),
    Case(
        "device-bogus",
        lambda f: _gen(f, "--device", "bogus"),
        ("--device 'bogus' is not a torch device", "use e.g. cpu"),
    ),
    Case(
        "device-cuda-without-cuda",
        lambda f: _gen(f, "--device", "cuda"),
        ("--device 'cuda' requested", "use cpu"),
        needs="no_cuda",
    ),
    Case("dtype-int8", lambda f: _gen(f, "--dtype", "int8"), ("--dtype: invalid choice: 'int8'",)),
    Case(
        "fresh-hidden-dim-negative",
        lambda f: _fresh(f, "--hidden_dim", "-3"),
        ("fuser.hidden_dim: got -3, expected a positive integer",),
    ),
    Case("fresh-num-layers-1", lambda f: _fresh(f, "--num_layers", "1"), ("num_layers: got 1", "expected >= 3")),
    Case(
        "shape-flags-with-a-checkpoint",
        lambda f: _gen(f, "--hidden_dim", "8"),
        ("--hidden_dim shape fresh fusers only", "Drop them"),
    ),
    # ---- prompts
    Case("prompt-empty", lambda f: _gen(f, prompt=""), ("the user message is empty", "give the question")),
    Case("prompt-whitespace", lambda f: _gen(f, prompt="  \n "), ("the user message is empty",)),
    Case(
        "prompt-100k-characters",
        lambda f: _gen(f, prompt="word " * 20_000),
        ("reads at most 512 positions", "shorten the prompt"),
    ),
    # ---- JSONL tasks
    Case(
        "task-bad-utf8",
        lambda f: _eval(f, task=f["tasks"] / "bad_utf8.jsonl"),
        ("bad_utf8.jsonl:2: not UTF-8", "byte 0xe9", "save the file as UTF-8"),
        _eval_run,
    ),
    Case(
        "task-missing-answer",
        lambda f: _eval(f, task=f["tasks"] / "no_answer.jsonl"),
        ("no_answer.jsonl:1", "missing field 'answer'"),
        _eval_run,
    ),
    Case(
        "task-answer-out-of-range",
        lambda f: _eval(f, task=f["tasks"] / "answer_5.jsonl"),
        ("answer_5.jsonl:1", "must be a choice index in 0..1, got 5"),
        _eval_run,
    ),
    Case(
        "task-answer-negative",
        lambda f: _eval(f, task=f["tasks"] / "answer_minus_1.jsonl"),
        ("must be a choice index in 0..1, got -1",),
        _eval_run,
    ),
    Case(
        "task-line-not-json",
        lambda f: _eval(f, task=f["tasks"] / "not_json.jsonl"),
        ("not_json.jsonl:2: not valid JSON",),
        _eval_run,
    ),
    Case("task-empty-file", lambda f: _eval(f, task=f["tasks"] / "empty.jsonl"), ("gave no items",), _eval_run),
    Case(
        "eval-unknown-mode",
        lambda f: _eval(f, "--modes", "receiver,bogus"),
        ("modes: 'bogus' not allowed", "'receiver', 'sharer', 't2t', 'self', 'c2c'"),
        _eval_run,
    ),
    Case("eval-limit-0", lambda f: _eval(f, "--limit", "0"), ("limit: got 0, expected a positive integer",), _eval_run),
    Case(
        "eval-recipe-typo-key",
        lambda f: ["eval", "--config", str(f["recipes"] / "eval_typo.yaml"), "--output_dir", str(_eval_run(f))],
        ("batch_sise: unknown key", "did you mean 'batch_size'"),
        _eval_run,
    ),
    # ---- training recipes
    Case(
        "recipe-typo-key",
        lambda f: _train(f, "typo_key"),
        ("training.learning_rat: unknown key", "did you mean 'learning_rate'"),
        _train_run,
    ),
    Case(
        "recipe-wrong-type",
        lambda f: _train(f, "wrong_type"),
        ("training.per_device_batch_size: got 'eight' (str), expected an integer",),
        _train_run,
    ),
    Case(
        "recipe-no-data",
        lambda f: _train(f, "no_data"),
        ("data.train: no training sources", "add at least one"),
        _train_run,
    ),
    Case(
        "recipe-data-file-missing",
        lambda f: _train(f, "missing_data_file"),
        ("missing.jsonl' does not exist", "fix the path"),
        _train_run,
    ),
    Case(
        "recipe-data-bad-utf8",
        lambda f: _train(f, "bad_utf8_data"),
        ("bad_utf8.jsonl:1: not UTF-8", "save the file as UTF-8"),
        _train_run,
    ),
    Case(
        "recipe-data-without-messages",
        lambda f: _train(f, "no_messages_data"),
        ("no_messages.jsonl: no usable conversation", "needs a 'messages' list"),
        _train_run,
    ),
    Case(
        "recipe-bad-yaml", lambda f: _train(f, "bad_yaml"), ("not valid YAML at line", "fix the file there"), _train_run
    ),
    Case("recipe-top-level-list", lambda f: _train(f, "list_yaml"), ("the top level must be a mapping",), _train_run),
    Case(
        "override-typo-flag",
        lambda f: _train(f, "ok", "--learning_rat", "3"),
        ("unrecognized arguments: --learning_rat",),
        _train_run,
    ),
    Case(
        "override-negative-learning-rate",
        lambda f: _train(f, "ok", "--learning_rate", "-1"),
        ("training.learning_rate: got -1.0, expected > 0",),
        _train_run,
    ),
    # ---- --resume with nothing to resume
    Case(
        "train-resume-nothing",
        lambda f: _train(f, "ok", "--resume"),
        ("--resume:", "holds no checkpoint-<step> to continue", "drop --resume"),
        _train_run,
    ),
    Case(
        "train-resume-missing-checkpoint",
        lambda f: _train(f, "ok", "--resume", str(f["root"] / "checkpoint-9")),
        ("is not a training checkpoint", "give a checkpoint-<step> folder"),
        _train_run,
    ),
    Case(
        "eval-resume-nothing",
        lambda f: _eval(f, "--resume"),
        ("--resume:", "holds no run to continue", "drop --resume"),
        _eval_run,
    ),
    # ---- output folders that are files or read-only
    Case(
        "train-output-is-a-file",
        lambda f: _train(f, "ok", "--output_dir", str(f["a_file"])),
        ("is a file, not a folder", "choose another output_dir"),
        lambda f: f["a_file"],
    ),
    Case(
        "train-output-inside-a-file",
        lambda f: _train(f, "ok", "--output_dir", str(f["a_file"] / "run")),
        ("which is a file", "choose another output_dir"),
        lambda f: f["a_file"],
    ),
    Case(
        "train-output-read-only",
        lambda f: _train(f, "ok", "--output_dir", str(f["readonly"] / "run")),
        ("cannot be written", "choose another output_dir"),
        lambda f: f["readonly"] / "run",
        needs="readonly",
    ),
    Case(
        "eval-output-is-a-file",
        lambda f: _eval(f, out=f["a_file"]),
        ("is a file, not a folder", "choose another --output_dir"),
        lambda f: f["a_file"],
    ),
    Case(
        "eval-output-read-only",
        lambda f: _eval(f, out=f["readonly"] / "run"),
        ("cannot be written", "choose another --output_dir"),
        lambda f: f["readonly"] / "run",
        needs="readonly",
    ),
    Case(
        "eval-output-holds-a-run",
        lambda f: _eval(f, out=f["finished_eval"]),
        ("already holds a run", "--resume", "--overwrite"),
        lambda f: f["finished_eval"],
    ),
    Case(
        "demo-output-inside-a-file",
        lambda f: ["demo", "--output_dir", str(f["a_file"] / "demo")],
        ("which is a file", "pass another output_dir"),
        lambda f: f["a_file"],
    ),
    Case(
        "demo-output-read-only",
        lambda f: ["demo", "--output_dir", str(f["readonly"] / "demo")],
        ("cannot be written", "pass another output_dir"),
        lambda f: f["readonly"] / "demo",
        needs="readonly",
    ),
    Case(
        "demo-threads-0",
        lambda f: ["demo", "--threads", "0", "--output_dir", str(f["root"] / "demo")],
        ("num_threads must be at least 1",),
        lambda f: f["root"] / "demo",
    ),
]


def _snapshot(path: Path | None) -> object:
    """What a watched path holds: None if absent, a file's hash, or a folder's files and their hashes."""
    if path is None or not path.exists():
        return None
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return sorted(
        (str(p.relative_to(path)), hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in path.rglob("*")
    )


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse refuses a flag
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(verb: str, code: object, out: str, err: str, needles: tuple[str, ...]) -> str:
    """Non-zero exit, no traceback, and the error as the single last line of stderr; returns it."""
    assert code not in (0, None), f"exit status {code!r}\nstderr: {err}"
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    message = lines[-1]
    assert message.startswith(f"c2c {verb}: error: "), f"the last line of stderr is not the error:\n{err}"
    assert sum(line.startswith(f"c2c {verb}: error:") for line in lines) == 1
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cli_bad_input(case: Case, f: dict, capsys: pytest.CaptureFixture[str]) -> None:
    if case.needs == "readonly" and f["readonly"] is None:
        pytest.skip("no folder here refuses writes to this user")
    if case.needs == "no_cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    argv = case.argv(f)
    watched = case.watch(f) if case.watch else None
    before = _snapshot(watched)
    code, out, err = _run_cli(argv, capsys)
    assert_one_line_error(argv[0], code, out, err, case.needles)
    if argv[0] != "demo":  # the demo prints its banner before it starts
        assert out == "", f"half an answer on stdout: {out!r}"
    assert _snapshot(watched) == before, f"{watched} changed"
    assert not f["marker"].exists(), "a pickle payload ran"


# ------------------------------------------------------------------------------------- subprocess


SUBPROCESS_CASES = ["published-pickle-payload", "config-string-hidden-dim", "task-bad-utf8"]


def test_no_traceback_in_a_real_process(f: dict) -> None:
    """Three cases as a user runs them, `python -m cache2cache.cli.main ...`, started together."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }
    cases = {c.id: c for c in CASES}
    running = [
        (cases[name], subprocess.Popen([sys.executable, "-m", "cache2cache.cli.main", *cases[name].argv(f)], env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for name in SUBPROCESS_CASES
    ]  # fmt: skip
    for case, process in running:
        out, err = process.communicate(timeout=180)
        assert_one_line_error(case.argv(f)[0], process.returncode, out, err, case.needles)
        assert out == ""
    assert not f["marker"].exists(), "a pickle payload ran"


# ------------------------------------------------------------------------------------- Python API


@pytest.fixture(scope="module")
def model(f: dict) -> C2CModel:
    return C2CModel.from_pretrained(f["ckpt"])


API_CASES: list[tuple[str, Callable[[C2CModel, dict], object], type[BaseException], str]] = [
    (
        "api-generate-an-int",
        lambda m, f: m.generate(42),
        ValueError,
        r"messages must be a string, a conversation .* got int",
    ),
    (
        "api-unknown-role",
        lambda m, f: m.generate([{"role": "wizard", "content": "hi"}]),
        ValueError,
        r"role 'wizard' is not one of system, user, assistant",
    ),
    (
        "api-message-without-content",
        lambda m, f: m.generate([{"role": "user"}]),
        ValueError,
        r"message 0: expected a dict with a string 'content'",
    ),
    ("api-empty-conversation-batch", lambda m, f: m.generate([[]]), ValueError, r"conversation 0 has no messages"),
    ("api-empty-prompt", lambda m, f: m.generate(""), ValueError, r"the user message is empty"),
    (
        "api-top-p-2",
        lambda m, f: m.generate("hi", do_sample=True, top_p=2.0),
        ValueError,
        r"top_p=2.0: expected a probability mass in \(0, 1\]",
    ),
    (
        "api-top-k-negative",
        lambda m, f: m.generate("hi", do_sample=True, top_k=-1),
        ValueError,
        r"top_k=-1: expected an integer >= 0",
    ),
    (
        "api-max-new-tokens-string",
        lambda m, f: m.generate("hi", max_new_tokens="5"),
        ValueError,
        r"max_new_tokens='5': expected a positive integer",
    ),
    (
        "api-100k-prompt",
        lambda m, f: m.generate("word " * 20_000, max_new_tokens=2),
        ValueError,
        r"reads at most 512 positions .* shorten the prompt",
    ),
    (
        "api-save-onto-a-file",
        lambda m, f: m.save_pretrained(f["a_file"]),
        ValueError,
        r"is a file, not a folder; give a folder path",
    ),
    (
        "api-receiver-an-int",
        lambda m, f: C2CModel.from_pretrained(f["ckpt"], receiver=42),
        TypeError,
        r"receiver= must be a loaded PreTrainedModel .* got int",
    ),
    (
        "api-device-bogus",
        lambda m, f: C2CModel.from_pretrained(f["ckpt"], device="bogus"),
        ValueError,
        r"device 'bogus' is not a torch device",
    ),
    (
        "api-dtype-bogus",
        lambda m, f: C2CModel.from_pretrained(f["ckpt"], dtype="int3"),
        ValueError,
        r"dtype='int3' is not supported",
    ),
    (
        "api-config-from-a-list",
        lambda m, f: C2CConfig.from_dict([]),
        ValueError,
        r"the top level is a list, expected a JSON object",
    ),
    (
        "api-config-folder-without-config",
        lambda m, f: C2CConfig.load(f["recv"]),
        FileNotFoundError,
        r"c2c_config.json does not exist; give a folder written by save_pretrained",
    ),
    (
        "api-pickle-payload",
        lambda m, f: C2CModel.from_pretrained(f["pickled"], receiver=m.receiver, sharer=m.sharer),
        ValueError,
        r"pickled objects or code\) and was refused",
    ),
    (
        "api-load-task-bad-utf8",
        lambda m, f: load_task(str(f["tasks"] / "bad_utf8.jsonl")),
        TaskError,
        r"bad_utf8.jsonl:2: not UTF-8",
    ),
    (
        "api-train-config-typo",
        lambda m, f: load_train_config(f["recipes"] / "typo_key.yaml"),
        ConfigError,
        r"did you mean 'learning_rate'",
    ),
]


@pytest.mark.parametrize(("name", "call", "error", "match"), API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(
    name: str, call: Callable, error: type[BaseException], match: str, model: C2CModel, f: dict
) -> None:
    with pytest.raises(error, match=match) as info:
        call(model, f)
    assert "\n" not in str(info.value), "the message is not one line"
    assert not f["marker"].exists(), "a pickle payload ran"


def test_a_pickle_payload_would_run_without_weights_only(f: dict) -> None:
    """The control: the crafted file really does run code when unpickled naively (here, in a
    scratch copy with its own marker), so the refusals above are refusals of a live payload."""
    scratch = f["root"] / "control"
    scratch.mkdir()
    marker = scratch / MARKER
    with open(scratch / "payload.pkl", "wb") as handle:
        pickle.dump(Payload(marker), handle)
    with open(scratch / "payload.pkl", "rb") as handle:
        pickle.load(handle)
    assert marker.exists()
    assert not f["marker"].exists()


# ------------------------------------------------------------------------------------- the catalogue


def test_the_catalogue_lists_every_case() -> None:
    """docs/reliability.md names each case id once and states the count."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    ids = [c.id for c in CASES] + [c[0] for c in API_CASES]
    assert len(ids) == len(set(ids))
    missing = [i for i in ids if f"`{i}`" not in text]
    assert not missing, f"not in docs/reliability.md: {missing}"
    assert f"{len(ids)} bad inputs" in text
    assert len(ids) >= 40


# ------------------------------------------------------------------------------------- nothing lost at the end


def test_eval_without_matplotlib_writes_everything_but_the_chart(
    f: dict, tmp_path: Path, capsys, caplog, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    out_dir = tmp_path / "run"
    (out_dir).mkdir()
    (out_dir / "results.png").write_bytes(b"a stale chart of an earlier run")
    code = main(_eval(f, "--limit", "2", "--overwrite", out=out_dir))
    out = capsys.readouterr().out
    assert code == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.yaml", "items.jsonl", "results.md", "summary.json"]
    assert "skipped the chart" in caplog.text and "pip install 'cache2cache[demo]'" in caplog.text
    assert "items.jsonl, summary.json, results.md" in out and "results.png" not in out


def test_demo_report_without_matplotlib_writes_everything_but_the_chart(tmp_path: Path, caplog, monkeypatch) -> None:
    from cache2cache.demo.report import DemoResult, ModeResult, write_demo_report
    from cache2cache.demo.world import make_world

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    world = make_world(0, n_fuser_train=4, n_held_out=2, n_receiver_known=2, n_reading=2)
    questions = [p.question("city") for p in world.held_out]
    gold = [p.value("city") for p in world.held_out]
    modes = {m: ModeResult(m, list(gold), len(gold), [1.0, 2.0]) for m in ("receiver", "sharer", "t2t", "c2c")}
    result = DemoResult(
        tmp_path,
        questions,
        gold,
        modes,
        {"evaluation": 1.0},
        [],
        {p.name for p in world.fuser_train},
        {p.name for p in world.held_out},
    )
    write_demo_report(result, world)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heldout.jsonl", "report.md", "results.json"]
    assert "skipped the chart" in caplog.text and "cache2cache[demo]" in caplog.text


def test_fetch_names_the_gguf_extra_before_downloading(tmp_path: Path, monkeypatch) -> None:
    from cache2cache import asset_fetch

    monkeypatch.setitem(sys.modules, "gguf", None)

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded before checking the gguf extra")

    monkeypatch.setattr(asset_fetch, "_download_verified", no_download)
    with pytest.raises(ImportError, match=r"pip install 'cache2cache\[gguf\]'"):
        asset_fetch.fetch(["smollm2-135m-instruct"], cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())
