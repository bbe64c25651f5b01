"""The offline demo: a reduced run on the same code path, its held-out gain, and determinism."""

from __future__ import annotations

import json
import shutil

import pytest

from cache2cache.demo.run import DemoSize, run_demo
from cache2cache.demo.world import make_world
from cache2cache.evaluation.report import wilson_interval

pytestmark = pytest.mark.trains  # .ci/run reruns these at every CPU kernel level


def test_world_sets_are_disjoint_and_seeded():
    world = make_world(3)
    sets = [world.fuser_train, world.held_out, world.receiver_known, world.reading]
    names = [{p.name for p in s} for s in sets]
    assert sum(map(len, names)) == len(set().union(*names)) == 750
    assert make_world(3) == world and make_world(4) != world


@pytest.fixture(scope="module")
def ci_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, size="ci", seed=0, progress=False, num_threads=1)


def test_reduced_demo_carries_knowledge_through_the_cache(ci_demo):
    assert not ci_demo.fuser_train_names & ci_demo.held_out_names  # the fuser never saw a held-out person
    modes = ci_demo.modes
    n = len(ci_demo.questions)
    assert modes["sharer"].accuracy > 0.8  # the sharer knows the held-out facts...
    assert modes["receiver"].accuracy < 0.2  # ...the receiver alone does not...
    # ...and reads them from the fused cache: C2C's 95% interval lies wholly above the receiver's
    c2c_low, _ = wilson_interval(modes["c2c"].correct, n)
    _, receiver_high = wilson_interval(modes["receiver"].correct, n)
    assert c2c_low > receiver_high, {m: r.accuracy for m, r in modes.items()}
    assert modes["c2c"].accuracy >= modes["receiver"].accuracy + 0.25
    for name in ("report.md", "report.png", "results.json", "heldout.jsonl"):
        assert (ci_demo.output_dir / name).stat().st_size > 0
    results = json.loads((ci_demo.output_dir / "results.json").read_text())
    by_mode = {s["mode"]: s for s in results["summaries"]}
    assert by_mode["c2c"]["correct"] == sum(item["c2c"] == item["gold"] for item in results["items"])


def test_rerun_reuses_the_trained_artifacts(ci_demo):
    again = run_demo(ci_demo.output_dir, size="ci", seed=0, progress=False, num_threads=1)
    assert again.reused == ["sharer", "receiver", "fuser"]
    assert {m: r.answers for m, r in again.modes.items()} == {m: r.answers for m, r in ci_demo.modes.items()}


def test_a_damaged_saved_model_is_reported_with_the_fix(ci_demo, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(ci_demo.output_dir, copy)
    (copy / "sharer" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"cannot load the demo's trained sharer .*rerun with --fresh"):
        run_demo(copy, size="ci", seed=0, progress=False)


def test_trained_pair_loads_from_its_checkpoint_alone(ci_demo):
    from cache2cache import C2CModel

    model = C2CModel.from_pretrained(ci_demo.output_dir / "fuser" / "final")  # models and tokenizers as recorded
    question = ci_demo.questions[0]
    assert model.generate(question, max_new_tokens=2, do_sample=False).split()[0] == ci_demo.modes["c2c"].answers[0]


def test_same_seed_gives_identical_reports(tmp_path):
    tiny = DemoSize(40, 10, 10, 10, sharer_steps=30, receiver_steps=30, fuser_steps=10, latency_items=1)
    first, second = (
        run_demo(tmp_path / name, size=tiny, seed=5, progress=False, num_threads=1, parallel=p)
        for name, p in (("a", True), ("b", False))
    )
    items = [json.loads((r.output_dir / "results.json").read_text())["items"] for r in (first, second)]
    assert items[0] == items[1]
    assert {m: r.correct for m, r in first.modes.items()} == {m: r.correct for m, r in second.modes.items()}


def test_unknown_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown demo size 'huge'"):
        run_demo(tmp_path, size="huge")


def test_bad_threads_and_a_file_as_output_folder_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="num_threads must be at least 1"):
        run_demo(tmp_path / "out", num_threads=0)
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me")
    with pytest.raises(ValueError, match="is a file, not a folder; pass another output_dir"):
        run_demo(a_file)
    assert a_file.read_text() == "keep me" and not (tmp_path / "out").exists()


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from cache2cache.cli.main import main

    (tmp_path / "f").write_text("")
    assert main(["demo", "--output_dir", str(tmp_path / "f")]) == 1
    assert capsys.readouterr().err.strip().startswith("c2c demo: error: the demo's output folder")
