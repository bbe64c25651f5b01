"""benchmarks/reference_compare.py: without a reference checkout it says how to get one and exits 2;
its arguments are checked; with a stand-in for the reference (the API it calls, nothing more) the
two sides run interleaved through the driver process and the table comes out."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "reference_compare.py"


def _module():
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))  # as when the script runs: its folder holds docblock.py
    spec = importlib.util.spec_from_file_location("reference_compare", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_reference_it_says_how_to_get_one_and_exits_2():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    for step in ("git clone https://github.com/thu-nics/C2C", "python -m venv", "transformers==4.52.4", "--reference_python"):  # fmt: skip
        assert step in done.stderr
    assert done.stdout == ""


def test_arguments_are_parsed_and_checked(tmp_path, capsys):
    rc = _module()
    args = rc.parse_args(["--reference", str(tmp_path), "--batches", "1,4", "--dtypes", "float32", "--repeats", "2"])
    assert (args.batches, args.dtypes, args.repeats, args.pair) == ([1, 4], ["float32"], 2, "qwen")
    for bad, message in ((["--dtypes", "fp16"], "unknown dtypes"), (["--batches", "1,x"], "comma-separated integers"),
                         (["--batches", "0"], "batch size >= 1"), (["--prompt_tokens", "1"], "--prompt_tokens must be >= 2")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            rc.parse_args(bad)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert rc.main(["--reference", str(tmp_path)]) == 2
    assert "no rosetta/model/wrapper.py there" in capsys.readouterr().err
    (tmp_path / "rosetta" / "model").mkdir(parents=True)
    (tmp_path / "rosetta" / "model" / "wrapper.py").write_text("")
    assert rc.main(["--reference", str(tmp_path)]) == 2
    assert "--reference_python is missing" in capsys.readouterr().err


STAND_IN = {
    "rosetta/__init__.py": "",
    "rosetta/model/__init__.py": "",
    # The calls reference_driver.py makes, as the reference's docs and SPEC.md describe them.
    "rosetta/model/projector.py": """
        import torch

        class C2CProjector(torch.nn.Module):
            def __init__(self, source_dim, target_dim, source_num_heads, target_num_heads, hidden_dim,
                         intermediate_dim, num_layers, dropout, dtype):
                super().__init__()
                self.key_gate_logit = torch.nn.Parameter(torch.zeros(()))
                self.value_gate_logit = torch.nn.Parameter(torch.zeros(()))

            def forward(self, source_kv, target_kv):
                return target_kv
    """,
    "rosetta/model/wrapper.py": """
        import torch

        class RosettaModel(torch.nn.Module):
            def __init__(self, model_list, base_model_idx=0, projector_list=()):
                super().__init__()
                self.model_list = torch.nn.ModuleList(model_list)
                self.projector_list = torch.nn.ModuleList(projector_list)
                self.pairs = []

            def set_projector_config(self, source_model_idx, source_model_layer_idx, target_model_idx,
                                     target_model_layer_idx, projector_idx):
                self.pairs.append((source_model_layer_idx, target_model_layer_idx, projector_idx))

            def generate(self, kv_cache_index, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, do_sample):
                assert sum(s.shape[1] for s in kv_cache_index) == input_ids.shape[1] and eos_token_id == -1
                assert int(kv_cache_index[0][0, 0, 0]) == 1 and int(kv_cache_index[-1][0, 0, 0]) == -1
                for projector in self.projector_list:
                    projector((None, None), (None, None))
                return self.model_list[0].generate(input_ids=input_ids, attention_mask=attention_mask,
                    max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0)
    """,
}


def test_both_sides_run_interleaved_through_the_driver(tmp_path, capsys):
    for name, text in STAND_IN.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    out = tmp_path / "perf.md"
    out.write_text("# Perf\n\nprose stays\n")
    rc = _module()
    code = rc.main(["--reference", str(tmp_path), "--reference_python", sys.executable, "--pair", "tiny",
                    "--dtypes", "float32", "--batches", "1,2", "--repeats", "1", "--prompt_tokens", "20",
                    "--new_tokens", "3", "--threads", "1", "--write", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = out.read_text()
    assert (
        text.startswith("# Perf\n\nprose stays\n")
        and "<!-- reference-compare:begin -->" in text
        and "<!-- reference-compare:end -->" in text
    )
    for measure in ("receiver alone, batch 1", "C2C, batch 1", "C2C / receiver alone, batch 1",
                    "fusion stage, batch 1", "C2C generated tokens/s, batch 2 / batch 1"):  # fmt: skip
        assert f"| float32 | {measure} |" in text
    # interleaved: each reference run is followed by the same run of ours
    sides = [line.split()[1] for line in captured.err.splitlines() if line.startswith("  float32 ")]
    assert sides == ["reference", "cache2cache"] * 4
