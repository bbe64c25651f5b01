"""Different prompts for the two models on the demo world: only the sharer's prompt holds the fact.

The people of set R are known to neither model (docs/demo.md). For every question about them:

    receiver alone            the receiver reads the question
    C2C, same prompt          both read the question (plain C2C, the demo's fuser)
    C2C, fact for the sharer  the sharer reads the fact, then the question (`sharer_messages=`); the
                              receiver reads the question, with filler where the fact is
    receiver alone, filler    the receiver over that same filler layout, nothing fused (fuse=False)
    sharer alone, fact        the sharer answers from the fact and the question (can it read context?)
    receiver reads the fact   the fact in the receiver's own prompt (a system turn), for reference

An answer is right when its first word is the person's value. The fuser is the demo's, trained on
plain questions about set A; nothing here trains on sharer prompts.

    python benchmarks/demo_sharer_prompt.py --demo_dir runs/demo-ci --write docs/demo.md

trains the ci demo in --demo_dir first if it is not there (`run_demo(size="ci")`, about 2 minutes),
writes `sharer_prompt.json` there, prints the table, and with --write replaces the block between the
sharer-prompt markers of that file (`--from_json` reports a saved `sharer_prompt.json` without measuring).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cache2cache import C2CModel
from cache2cache.demo.run import SIZES, _load, _sharer_generate, run_demo
from cache2cache.demo.world import ATTRIBUTES, make_world

BEGIN, END = "<!-- sharer-prompt:begin -->", "<!-- sharer-prompt:end -->"
ROWS = (
    ("receiver", "receiver alone (question)"),
    ("c2c", "C2C, both read the question"),
    ("c2c_fact_for_sharer", "**C2C, only the sharer reads the fact** (`sharer_messages`)"),
    ("receiver_filler", "receiver alone over the same filler layout (fuse=False)"),
    ("sharer_fact", "sharer alone, reading the fact"),
    ("receiver_fact", "receiver reading the fact itself"),
)


def first_words(texts: list[str]) -> list[str]:
    return [(t.split() or [""])[0] for t in texts]


def measure(model: C2CModel, people: tuple, batch: int = 64) -> dict[str, float]:
    """Accuracy of every row of `ROWS` on all questions about `people`."""
    questions = [[{"role": "user", "content": p.question(a)}] for p in people for a in ATTRIBUTES]
    with_fact = [[{"role": "system", "content": p.fact(a)}, *q] for q, (p, a) in zip(questions, _pairs(people))]
    gold = [p.value(a) for p, a in _pairs(people)]
    greedy = {"max_new_tokens": 2, "do_sample": False}
    answer = {
        "receiver": lambda q, f: model.generate(q, fuse=False, **greedy),
        "c2c": lambda q, f: model.generate(q, **greedy),
        "c2c_fact_for_sharer": lambda q, f: model.generate(q, sharer_messages=f, **greedy),
        "receiver_filler": lambda q, f: model.generate(q, sharer_messages=f, fuse=False, **greedy),
        "sharer_fact": lambda q, f: _sharer_generate(model, f, 2),
        "receiver_fact": lambda q, f: model.generate(f, fuse=False, **greedy),
    }
    accuracy = {}
    for name, fn in answer.items():
        answers = [
            w
            for s in range(0, len(questions), batch)
            for w in first_words(fn(questions[s : s + batch], with_fact[s : s + batch]))
        ]
        accuracy[name] = sum(a == g for a, g in zip(answers, gold, strict=True)) / len(gold)
    return accuracy | {"n": len(gold)}


def _pairs(people: tuple) -> list[tuple]:
    return [(p, a) for p in people for a in ATTRIBUTES]


def table(result: dict, command: str) -> str:
    """The markdown block for docs/demo.md."""
    n = result["accuracy"]["n"]
    intro = (
        f"`{command}` (ci world, seed {result['seed']}, {n} questions about the {n // len(ATTRIBUTES)} people of "
        f"set R, whom neither model knows; {result['seconds']:.0f} s for the measurement):"
    )
    lines = [
        intro,
        "",
        "| mode | accuracy |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {100 * result['accuracy'][key]:.1f} % |" for key, label in ROWS]
    return "\n".join(lines)


def write_block(path: Path, block: str) -> None:
    """Replace the text between the sharer-prompt markers of `path` (append them if absent)."""
    text = path.read_text()
    wrapped = f"{BEGIN}\n{block}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + wrapped + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + wrapped + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo_dir", default="runs/demo-ci", help="a ci demo folder (trained here if absent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", type=Path, help="a markdown file whose sharer-prompt block gets the table")
    parser.add_argument("--from_json", action="store_true", help="report the saved sharer_prompt.json, measure nothing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.demo_dir)
    command = f"python benchmarks/demo_sharer_prompt.py --demo_dir {args.demo_dir} --seed {args.seed}"
    if args.from_json:
        report(json.loads((out / "sharer_prompt.json").read_text()), command, args.write)
        return
    run_demo(out, seed=args.seed, size="ci", progress=False)  # reuses a finished run with these settings
    spec = SIZES["ci"]
    world = make_world(args.seed, n_fuser_train=spec.n_fuser_train, n_held_out=spec.n_held_out,
                       n_receiver_known=spec.n_receiver_known, n_reading=spec.n_reading)  # fmt: skip
    (receiver, receiver_tok), (sharer, sharer_tok) = _load(out / "receiver"), _load(out / "sharer")
    model = C2CModel.from_pretrained(out / "fuser" / "final", receiver=receiver, sharer=sharer,
                                     receiver_tokenizer=receiver_tok, sharer_tokenizer=sharer_tok).eval()  # fmt: skip
    start = time.perf_counter()
    accuracy = measure(model, world.reading)
    result = {"seed": args.seed, "size": "ci", "accuracy": accuracy, "seconds": time.perf_counter() - start}
    (out / "sharer_prompt.json").write_text(json.dumps(result, indent=2) + "\n")
    report(result, command, args.write)


def report(result: dict, command: str, write: Path | None) -> None:
    """Print the table; with `write`, put it between the sharer-prompt markers of that file."""
    block = table(result, command)
    print(block)
    if write:
        write_block(write, block)


if __name__ == "__main__":
    main()
