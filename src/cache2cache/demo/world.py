"""The demo's synthetic world: made-up people with a city, a job and a favourite colour.

Everything is generated from one seed. People fall into four disjoint sets:

- **A** (`fuser_train`): the fuser learns to read the sharer's cache on questions about these;
- **B** (`held_out`): evaluation only; the fuser never sees them, only the sharer knows their facts;
- **C** (`receiver_known`): the receiver learns these facts, so it has a working question circuit;
- **R** (`reading`): fresh names for the receiver's reading practice (context, then a question),
  which the text-to-text (T2T) baseline relies on.

The sharer learns the facts of A, B and C and answers questions about A and C; it generalises to B.
The receiver's vocabulary is built from its own corpus only, so the names of A, B and R are unknown
tokens to it: whatever it knows about B must come through the fused cache (or, for T2T, the text).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CITIES = ("paris", "tokyo", "lima", "oslo", "cairo", "delhi", "quito", "dakar", "hanoi", "sofia", "perth", "accra")
JOBS = (
    "baker",
    "doctor",
    "pilot",
    "farmer",
    "painter",
    "teacher",
    "miner",
    "sailor",
    "singer",
    "tailor",
    "judge",
    "chef",
)
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown")
ATTRIBUTES = ("city", "job", "colour")

_QUESTION = {
    "city": "where does {name} live ?",
    "job": "what is the job of {name} ?",
    "colour": "which colour does {name} like ?",
}
_FACT = {
    "city": "{name} lives in {value} .",
    "job": "{name} works as a {value} .",
    "colour": "{name} likes the colour {value} .",
}
BACKGROUND_REQUEST = "background : {question}"

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class Person:
    """One entity of the world."""

    name: str
    city: str
    job: str
    colour: str

    def value(self, attribute: str) -> str:
        """The person's value for `attribute` ("city", "job" or "colour")."""
        return getattr(self, attribute)

    def fact(self, attribute: str) -> str:
        """One fact sentence, e.g. `"zorbo lives in paris ."`."""
        return _FACT[attribute].format(name=self.name, value=self.value(attribute))

    def bio(self) -> str:
        """All three facts, in a fixed order."""
        return " ".join(self.fact(a) for a in ATTRIBUTES)

    def background(self, attribute: str) -> str:
        """The fact a question asks about, as the sharer writes it for T2T: `"this person lives in paris ."`.

        The name is left out: a model this small copies a fresh name badly, and the receiver could
        not read it anyway (names the receiver never learned are `<unk>` to it).
        """
        return _FACT[attribute].format(name="this person", value=self.value(attribute))

    def question(self, attribute: str) -> str:
        """The question about `attribute`, e.g. `"where does zorbo live ?"`."""
        return _QUESTION[attribute].format(name=self.name)


@dataclass(frozen=True)
class World:
    """The four disjoint sets of people (see the module docstring)."""

    fuser_train: tuple[Person, ...]
    held_out: tuple[Person, ...]
    receiver_known: tuple[Person, ...]
    reading: tuple[Person, ...]

    @property
    def everyone(self) -> tuple[Person, ...]:
        """All people of all sets."""
        return self.fuser_train + self.held_out + self.receiver_known + self.reading


def make_world(
    seed: int, *, n_fuser_train: int = 400, n_held_out: int = 100, n_receiver_known: int = 100, n_reading: int = 150
) -> World:
    """Generate a world from `seed`: unique two-or-three-syllable names, uniformly random attributes."""
    rng = random.Random(seed)
    total = n_fuser_train + n_held_out + n_receiver_known + n_reading
    vocabulary = set(CITIES + JOBS + COLOURS)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < total:
        name = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.choice((2, 3))))
        if name not in seen and name not in vocabulary:
            seen.add(name)
            names.append(name)
    people = [Person(n, rng.choice(CITIES), rng.choice(JOBS), rng.choice(COLOURS)) for n in names]
    cuts = [0, n_fuser_train, n_fuser_train + n_held_out, n_fuser_train + n_held_out + n_receiver_known, total]
    a, b, c, r = (tuple(people[cuts[i] : cuts[i + 1]]) for i in range(4))
    return World(a, b, c, r)


def qa_conversation(person: Person, attribute: str) -> list[dict[str, str]]:
    """A question and its one-word answer, as chat messages."""
    return [
        {"role": "user", "content": person.question(attribute)},
        {"role": "assistant", "content": person.value(attribute)},
    ]


def background_conversation(person: Person, attribute: str) -> list[dict[str, str]]:
    """T2T stage 1: the sharer is asked for background on a question and answers with the fact it asks about."""
    request = BACKGROUND_REQUEST.format(question=person.question(attribute))
    return [{"role": "user", "content": request}, {"role": "assistant", "content": person.background(attribute)}]


def reading_conversation(person: Person, attribute: str, background: str | None = None) -> list[dict[str, str]]:
    """T2T stage 2: background text as a system turn, then the question (and, for training, the answer)."""
    return [
        {"role": "system", "content": person.background(attribute) if background is None else background},
        {"role": "user", "content": person.question(attribute)},
        {"role": "assistant", "content": person.value(attribute)},
    ]
