"""The generated population of the identity benchmark: people, the signals they send, the truth.

See ``bench/identity.py`` for what is measured. Everything here is
deterministic for a given seed, so two runs score the same population.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Signal:
    """One generated signal: identifiers seen together, when, and who really sent it."""

    person: int
    at: dt.datetime
    source: str
    idents: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    signals: list[Signal]
    shared: set[tuple[str, str]]  # identifiers that name no single person
    owner: dict[tuple[str, str], int]


def _typo(email: str, rng: random.Random) -> str:
    """A doubled letter in the domain, as a hurried customer types (never another person's address)."""
    local, domain = email.split("@")
    i = rng.randrange(len(domain) - 4)
    return f"{local}@{domain[:i]}{domain[i]}{domain[i:]}"


class _Population:
    """Builds the people one by one, with the households, family laptops and libraries they share."""

    def __init__(self, people: int, seed: int):
        self.rng = random.Random(seed)
        self.signals: list[Signal] = []
        self.shared: set[tuple[str, str]] = {("email", "test@test.com"), ("phone", "1234567890")}
        self.libraries = [f"lib-{n}" for n in range(max(1, people // 400))]
        self.shared.update(("web_client", lib) for lib in self.libraries)
        self.household_phone: dict[int, str] = {}
        self.family_laptop: dict[int, str] = {}
        for p in range(0, people - 1, 2):
            if self.rng.random() < 0.10:
                phone = f"+44208{p:07d}"
                self.household_phone[p] = self.household_phone[p + 1] = phone
                self.shared.add(("phone", phone))
            if self.rng.random() < 0.04:
                laptop = f"family-{p}"
                self.family_laptop[p] = self.family_laptop[p + 1] = laptop
                self.shared.add(("web_client", laptop))

    def emit(self, p: int, source: str, idents: dict) -> None:
        at = T0 + dt.timedelta(minutes=self.rng.randrange(180 * 24 * 60))
        self.signals.append(Signal(p, at, source, {k: v for k, v in idents.items() if v is not None}))

    def junky(self, kind: str, value: str | None) -> str | None:
        """Now and then a form gets test@test.com or 1234567890 instead of the real value."""
        if value is None or self.rng.random() >= 0.03:
            return value
        return "test@test.com" if kind == "email" else "1234567890"

    def person(self, p: int) -> None:
        rng = self.rng
        devices = [f"w{p}-{k}" for k in range(rng.choice((1, 1, 2, 2, 3)))]
        if p in self.family_laptop:
            devices.append(self.family_laptop[p])
        email = f"u{p}@mail{p % 7}.com"
        emails = [email] + ([f"u{p}.work@corp{p % 13}.com"] if rng.random() < 0.3 else [])
        phone = f"+447{p:09d}" if rng.random() < 0.75 else None
        contact = self.household_phone.get(p, phone) if rng.random() < 0.5 else phone
        account = str(100000 + p) if rng.random() < 0.55 else None
        for device in devices:
            for _ in range(rng.randint(1, 3)):
                self.emit(p, "pixel", {"web_client": device})
        if rng.random() < 0.4:
            self.emit(
                p,
                "pixel",
                {"web_client": rng.choice(devices), "email": self.junky("email", rng.choice(emails))},
            )
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            self.order(
                p, _typo(email, rng) if rng.random() < 0.03 else email, contact, account, rng.choice(devices)
            )
        self.extras(p, phone, account, emails)

    def order(self, p: int, email: str, phone: str | None, account: str | None, device: str) -> None:
        """A logged-in order, or a guest checkout followed by its order."""
        if account:
            if self.rng.random() < 0.5:
                self.emit(p, "pixel", {"web_client": device, "shopify_customer": account})
            self.emit(
                p,
                "shopify",
                {"shopify_customer": account, "email": email, "phone": self.junky("phone", phone)},
            )
            return
        guest = {
            "web_client": device,
            "email": self.junky("email", email),
            "phone": self.junky("phone", phone),
        }
        self.emit(p, "pixel", guest)
        self.emit(p, "shopify", {"email": email, "phone": phone})

    def extras(self, p: int, phone: str | None, account: str | None, emails: list[str]) -> None:
        """WhatsApp replies, email changes, marketplace orders and library computers."""
        rng = self.rng
        if phone and rng.random() < 0.2:
            self.emit(p, "whatsapp", {"phone": phone})
        if account and rng.random() < 0.05:
            self.emit(p, "shopify", {"shopify_customer": account, "email": f"u{p}.new@mail.com"})
        if rng.random() < 0.08:
            relay = {"amazon_buyer": f"AMZ{p}", "email": f"{p:x}x@marketplace.amazon.co.uk"}
            if phone and rng.random() < 0.3:
                relay["phone"] = phone
            for _ in range(rng.randint(1, 2)):
                self.emit(p, "amazon", relay)
        if rng.random() < 0.1:
            lib = rng.choice(self.libraries)
            self.emit(p, "pixel", {"web_client": lib})
            if rng.random() < 0.2:
                self.emit(p, "pixel", {"web_client": lib, "email": rng.choice(emails)})


def generate(people: int, seed: int = 7) -> World:
    """A population with known truth; see the module docstring for what it contains."""
    population = _Population(people, seed)
    for p in range(people):
        population.person(p)
    signals = sorted(population.signals, key=lambda s: s.at)
    owner: dict[tuple[str, str], int] = {}
    for s in signals:
        for key in s.idents.items():
            if key not in population.shared:
                owner[key] = s.person
    return World(signals, population.shared, owner)


def attributable(world: World) -> list[int]:
    """Indexes of signals that name one person (at least one identifier only they use)."""
    return [i for i, s in enumerate(world.signals) if any(k not in world.shared for k in s.idents.items())]


def linkable_truth(world: World, records: list[int]) -> list[tuple[int, int]]:
    """Each record's person, split where no signal of theirs connects the pieces.

    A device that never logged in, gave an email or met another of the
    person's identifiers cannot be known to be theirs by anyone; recall is
    measured against what the evidence allows.
    """
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    own = {}
    for i in records:
        keys = [k for k in world.signals[i].idents.items() if k not in world.shared]
        own[i] = keys
        for other in keys[1:]:
            parent[find(other)] = find(keys[0])
    return [(world.signals[i].person, hash(find(own[i][0]))) for i in records]


def pairwise(truth: list, predicted: list) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 of two labelings of the same records."""

    def pairs(counter: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in counter.values())

    both = pairs(Counter(zip(truth, predicted, strict=True)))
    pred_pairs, true_pairs = pairs(Counter(predicted)), pairs(Counter(truth))
    precision = both / pred_pairs if pred_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
