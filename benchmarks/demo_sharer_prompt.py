"""Different prompts for the two models on the demo world: only the sharer's prompt holds the fact.

Two question sets (docs/demo.md describes the world):
    R                 people known to neither model, with their true fact
    B counterfactual  people only the sharer knows, with a fact stating another value than the true
                      one, so an answer that follows the fact cannot come from the sharer's memory

For every question, answered greedily; right when the first word is the value the fact states:

    receiver alone            the receiver reads the question
    C2C, same prompt          both read the question (plain C2C, the demo's fuser)
    C2C, fact for the sharer  the sharer reads the fact, then the question (`sharer_messages=`); the
                              receiver reads the question, with filler where the fact is
    receiver alone, filler    the receiver over that same filler layout, nothing fused (fuse=False)
    sharer alone, fact        the sharer answers from the fact and the question (can it read context?)
    receiver reads the fact   the fact in the receiver's own prompt (a system turn), for reference

The fuser is the demo's, trained on plain questions about set A. A second fuser, same recipe, is
then trained here on sharer prompts (`sharer_messages` in its data): questions about set A whose
sharer prompt states a random value, the answer being that value, and the C2C row is measured again
with it. Neither fuser sees sets R or B.

    python benchmarks/demo_sharer_prompt.py --demo_dir runs/demo-ci --write docs/demo.md

trains the ci demo in --demo_dir first if it is not there (`run_demo(size="ci")`, about 2 minutes),
writes `sharer_prompt.json` there, prints the table, and with --write replaces the block between the
sharer-prompt markers of that file (`--from_json` reports a saved `sharer_prompt.json` without measuring).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

import torch

from cache2cache import C2CModel
from cache2cache.demo.run import SIZES, _load, fuser_recipe, run_demo
from cache2cache.demo.world import ATTRIBUTES, CITIES, COLOURS, JOBS, Person, make_world
from cache2cache.evaluation.modes import reply_texts
from cache2cache.training import train_fusers
from cache2cache.training.records import TwoPromptConversation
from docblock import publish

ROWS = (
    ("receiver", "receiver alone (question)"),
    ("c2c", "C2C, both read the question"),
    ("c2c_fact_for_sharer", "**C2C, only the sharer reads the fact** (`sharer_messages`)"),
    ("receiver_filler", "receiver alone over the same filler layout (fuse=False)"),
    ("sharer_fact", "sharer alone, reading the fact"),
    ("receiver_fact", "receiver reading the fact itself"),
    ("trained_c2c_fact_for_sharer", "C2C, only the sharer reads the fact, fuser trained on sharer prompts"),
)
VALUES = {"city": CITIES, "job": JOBS, "colour": COLOURS}


def first_words(texts: list[str]) -> list[str]:
    return [(t.split() or [""])[0] for t in texts]


Item = tuple[Person, str, Person]
"""(person, attribute, the person as the fact states them): the question is about `person`, the fact
and the gold answer come from the stated one."""


def items(people: tuple[Person, ...], *, counterfactual_seed: int | None = None) -> list[Item]:
    """Every (person, attribute) of `people`, with the true fact, or with a seeded value other than
    the true one when `counterfactual_seed` is given."""
    rng = random.Random(counterfactual_seed)
    out = []
    for person in people:
        for attribute in ATTRIBUTES:
            shown = person
            if counterfactual_seed is not None:
                other = rng.choice([v for v in VALUES[attribute] if v != person.value(attribute)])
                shown = dataclasses.replace(person, **{attribute: other})
            out.append((person, attribute, shown))
    return out


def measure(model: C2CModel, questions: list[Item], batch: int = 64) -> dict[str, float]:
    """Accuracy of every row of `ROWS` (but the trained fuser's) against the stated values."""
    convs = [[{"role": "user", "content": p.question(a)}] for p, a, _ in questions]
    with_fact = [[{"role": "system", "content": shown.fact(a)}, *q] for q, (_, a, shown) in zip(convs, questions)]
    gold = [shown.value(a) for _, a, shown in questions]
    greedy = {"max_new_tokens": 2, "do_sample": False}
    answer = {
        "receiver": lambda q, f: model.generate(q, fuse=False, **greedy),
        "c2c": lambda q, f: model.generate(q, **greedy),
        "c2c_fact_for_sharer": lambda q, f: model.generate(q, sharer_messages=f, **greedy),
        "receiver_filler": lambda q, f: model.generate(q, sharer_messages=f, fuse=False, **greedy),
        "sharer_fact": lambda q, f: reply_texts(model, "sharer", f, **greedy),
        "receiver_fact": lambda q, f: model.generate(f, fuse=False, **greedy),
    }
    accuracy = {}
    for name, fn in answer.items():
        answers = [
            w
            for s in range(0, len(convs), batch)
            for w in first_words(fn(convs[s : s + batch], with_fact[s : s + batch]))
        ]
        accuracy[name] = sum(x == g for x, g in zip(answers, gold, strict=True)) / len(gold)
    return accuracy | {"n": len(gold)}


def context_conversations(people: tuple[Person, ...], seed: int) -> list[TwoPromptConversation]:
    """Training data for a fuser that carries context: per person and attribute, the sharer's prompt
    states a random value (`fact`, then the question), the receiver's holds the question, and the
    answer is the stated value."""
    rng = random.Random(seed)
    out = []
    for person in people:
        for attribute in ATTRIBUTES:
            shown = dataclasses.replace(person, **{attribute: rng.choice(VALUES[attribute])})
            question = [{"role": "user", "content": person.question(attribute)}]
            answer = {"role": "assistant", "content": shown.value(attribute)}
            sharer = [{"role": "system", "content": shown.fact(attribute)}, *question]
            out.append(TwoPromptConversation([*question, answer], sharer))
    return out


def train_context_fuser(model: C2CModel, world, seed: int, output_dir: Path) -> C2CModel:
    """A fresh fuser (the demo's recipe) for `model`'s pair, trained on `context_conversations` of set A."""
    fuser, config = fuser_recipe(SIZES["ci"], seed, output_dir)
    fresh = C2CModel.from_models(model.receiver, model.sharer, fuser=fuser, receiver_tokenizer=model.receiver_tokenizer,
                                 sharer_tokenizer=model.sharer_tokenizer, seed=seed)  # fmt: skip
    train_fusers(fresh, context_conversations(world.fuser_train, seed), None, config, progress=False)
    return fresh.eval()


SETS = (("R", "set R, true facts"), ("B_counterfactual", "set B, counterfactual facts"))


def table(result: dict, command: str) -> str:
    """The markdown block for docs/demo.md."""
    n = {key: result[key]["n"] for key, _ in SETS}
    intro = (
        f"`{command}` (ci world, seed {result['seed']}; accuracy against the value the fact states: "
        f"{n['R']} questions about set R, whom neither model knows, with true facts, and {n['B_counterfactual']} "
        "about set B, whom only the sharer knows, with facts that state another value than the true one; "
        f"{result['seconds']:.0f} s to measure, {result['train_seconds']:.0f} s to train the second fuser):"
    )
    lines = [intro, "", "| mode | " + " | ".join(label for _, label in SETS) + " |", "|---|" + "---:|" * len(SETS)]
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(f"{100 * result[s][key]:.1f} %" for s, _ in SETS) + " |")
    return "\n".join(lines)


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
    sets = {"R": items(world.reading), "B_counterfactual": items(world.held_out, counterfactual_seed=args.seed + 1)}
    start = time.perf_counter()
    result = {key: measure(model, questions) for key, questions in sets.items()}
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    trained = train_context_fuser(model, world, args.seed, out / "context_fuser")
    train_seconds = time.perf_counter() - start
    for key, questions in sets.items():
        result[key]["trained_c2c_fact_for_sharer"] = measure(trained, questions)["c2c_fact_for_sharer"]
    result |= {"seed": args.seed, "size": "ci", "seconds": seconds, "train_seconds": train_seconds}
    (out / "sharer_prompt.json").write_text(json.dumps(result, indent=2) + "\n")
    report(result, command, args.write)


def report(result: dict, command: str, write: Path | None) -> None:
    """Print the table; with `write`, put it between the sharer-prompt markers of that file."""
    block = table(result, command)
    publish(block, "sharer-prompt", write)


if __name__ == "__main__":
    main()
