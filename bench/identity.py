"""Identity resolution accuracy and speed on a generated population with known truth.

Run ``.venv/bin/python -m bench.identity [--quick] [--people N] [--batch N] [--no-per-signal] [--no-splink]``.

The population has several devices, emails and phones per person, typos,
households sharing a phone, family laptops, library computers, junk values,
guest checkouts and marketplace buyers. Every signal (page view, popup,
checkout, order, login, WhatsApp reply, email change, marketplace order)
is resolved in time order through ``app.services.resolution.resolve_many`` in
batches (what an ingest worker does), and again one signal at a time through
``resolve``; the history backfill (``identity_backfill.resolve_history``, what
an install-time import runs) resolves the same raw signals into a fresh
shop's database; the same rules also run as one in-memory partition of all links.

Scored at the level of signals whose identifiers name one person (a page
view on a library computer names nobody): pairwise precision, recall and
F1 of "same profile", after automatic resolution and after accepting every
merge candidate; the share of automatic merges that joined two people; and
signals resolved per second. Splink (probabilistic record linkage on
DuckDB) runs on the same records in the same run as the peer.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

from bench.identity_population import World, attributable, generate, linkable_truth, pairwise

KINDS = ("shopify_customer", "email", "phone", "amazon_buyer", "web_client")
# Splink links a pair (and clusters transitively) at match weight >= -4, i.e. match probability >= 0.06;
# see run_splink for why not 0.5.
SPLINK_THRESHOLD_WEIGHT = -4.0
# Splink's m probabilities (exact match, both present but different) set from what we know of shoppers:
# people keep one Shopify and one Amazon account, so a different one is strong evidence against; they use
# several emails, devices and sometimes phones, so a different one is only mild evidence against.
SPLINK_M = {
    "shopify_customer": (0.99, 0.01),
    "email": (0.7, 0.3),
    "phone": (0.8, 0.2),
    "amazon_buyer": (0.99, 0.01),
    "web_client": (0.3, 0.7),
}


# --------------------------------------------------------------------------- ours


@contextlib.contextmanager
def _fresh_shop():
    """A new app on an empty database (SQLite, or ``BENCH_DATABASE_URL``) and one shop, in its context."""
    tmp = tempfile.mkdtemp(prefix="c360-bench-")
    os.environ["C360_INSTANCE_PATH"] = tmp
    from app import create_app
    from app.extensions import db

    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{tmp}/bench.sqlite"
    app = create_app({"TESTING": True, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        db.drop_all()
        db.create_all()
        from app.services import accounts

        shop = accounts.create_shop("bench.myshopify.com", secret="bench", plan="enterprise", country="GB")  # noqa: S106
        db.session.commit()
        yield shop
        db.session.remove()
        db.engine.dispose()


def run_ours(world: World, records: list[int], *, batch: int | None = None, review: bool = True) -> dict:
    """Resolve every signal through the app; score after auto-merge and after accepting candidates.

    With ``batch``, signals go through ``resolve_many`` in time-ordered batches of that
    many with a commit after each, as an ingest worker does; without it, through
    ``resolve`` one at a time (a commit every 500).
    """
    from app.extensions import db

    with _fresh_shop() as shop:
        from app.models import Merge
        from app.services import planner_stats
        from app.services.identifiers import normalise
        from app.services.resolution import Signal, resolve, resolve_many

        queries = _count_queries(db.engine)
        started, cpu_started = time.perf_counter(), time.process_time()
        if batch:
            for start in range(0, len(world.signals), batch):
                chunk = []
                for n, s in enumerate(world.signals[start : start + batch], start):
                    idents = tuple(i for i in (normalise(k, v, "GB") for k, v in s.idents.items()) if i)
                    chunk.append(Signal(idents, s.source, s.at, {"event_ref": f"s{n}"}))
                resolve_many(shop, chunk)
                db.session.commit()
                planner_stats.refresh_stale_now_and_then()  # as the ingest drain does between batches
        else:
            for n, s in enumerate(world.signals):
                idents = [normalise(k, v, "GB") for k, v in s.idents.items()]
                resolve(
                    shop,
                    [i for i in idents if i],
                    source=s.source,
                    seen_at=s.at,
                    evidence={"event_ref": f"s{n}"},
                )
                if n % 500 == 499:
                    db.session.commit()
        db.session.commit()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        statements = queries[0]
        auto = _labels(shop, world, records)
        merges = list(db.session.scalars(db.select(Merge).where(Merge.automatic.is_(True))))
        wrong = sum(1 for m in merges if _wrong_merge(m, world))
        out = {"elapsed": elapsed, "cpu": cpu, "statements": statements, "auto": auto}
        out.update(auto_merges=len(merges), wrong_auto_merges=wrong)
        if review:
            out["reviewed"] = _review(shop, world, oracle=True)
            out["reviewer"] = _labels(shop, world, records)
            out["candidates"] = _review(shop, world, oracle=False)
            out["after"] = _labels(shop, world, records)
    return out


def run_backfill(world: World, records: list[int]) -> dict:
    """The history backfill on a fresh shop: raw values in, profiles and candidates written to the database.

    Timed from raw signals (as an import reads them) to the commit: normalising each
    distinct value, the partition, the replay of shared parts, and the bulk inserts.
    """
    from app.extensions import db

    with _fresh_shop() as shop:
        from app.services.identity_backfill import resolve_history

        signals = _signals(world)
        queries = _count_queries(db.engine)
        steps: dict = {}
        started, cpu_started = time.perf_counter(), time.process_time()
        resolve_history(shop, signals, timings=steps)
        db.session.commit()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        out = {
            "elapsed": elapsed,
            "cpu": cpu,
            "statements": queries[0],
            "auto": _labels(shop, world, records),
        }
        out["steps"] = steps
        out["candidates"] = _review(shop, world, oracle=False)
        out["after"] = _labels(shop, world, records)
    return out


def _count_queries(engine) -> list[int]:
    """A counter of the statements the engine runs, read as ``counter[0]``."""
    import sqlalchemy as sa

    counter = [0]

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _count(*_args):
        counter[0] += 1

    return counter


def _labels(shop, world: World, records: list[int]) -> list[int]:
    """The profile each record lands in: the owner of its most trusted identifier."""
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import Identifier
    from app.services.identifiers import TRUST, normalise

    owner = {
        (k, v): p
        for k, v, p in db.session.execute(
            sa.select(Identifier.kind, Identifier.value, Identifier.profile_id).where(
                Identifier.shop_id == shop.id
            )
        )
    }
    labels = []
    for i in records:
        idents = [normalise(k, v, "GB") for k, v in world.signals[i].idents.items()]
        keys = sorted(
            ((x.kind, x.value) for x in idents if x and (x.kind, x.value) in owner), key=lambda k: TRUST[k[0]]
        )
        labels.append(owner[keys[0]] if keys else -i - 1)
    return labels


def _wrong_merge(merge, world: World) -> bool:
    anchors = (merge.snapshot or {}).get("anchors", {})
    owners = set()
    for key in anchors.values():
        if key and tuple(key) not in world.shared:
            owners.add(world.owner.get(tuple(key)))
    return len(owners) > 1


def _review(shop, world: World, *, oracle: bool) -> int:
    """Accept open candidates: all of them, or (``oracle``) only those that are one person."""
    from app.errors import Conflict
    from app.extensions import db
    from app.models import Profile
    from app.services import merge_candidates, merges
    from app.services.identifiers import live_profile

    accepted = 0
    for cand in merge_candidates.list_candidates(shop, "open", limit=10**7):
        if oracle:
            sides = [
                live_profile(db.session.get(Profile, pid)) for pid in (cand.profile_a_id, cand.profile_b_id)
            ]
            owners = set()
            for side in sides:
                best = merges.anchor(side)
                owners.add(world.owner.get((best.kind, best.value)) if best else None)
            if len(owners) != 1 or None in owners:
                continue
        try:
            merge_candidates.accept(shop, cand.id, actor="bench")
            accepted += 1
        except Conflict:
            pass
        if accepted % 200 == 0:
            db.session.commit()
    db.session.commit()
    return accepted


def run_batch(world: World, records: list[int], *, ready: bool = False) -> dict:
    """The backfill's reading of the history and one partition of all its links, in memory.

    The same rules as every path: ``identity_history.read_history`` normalises and judges
    each distinct value once and notes the links in time order (what the backfill's first
    step runs), then ``identity_graph.partition`` splits the whole graph at once (the
    backfill also replays, signal by signal, the parts where history matters). Timed in
    two parts: the reading and the partition itself.

    With ``ready``, every value is normalised and judged before the clock starts, as
    Splink's rows are cleaned (junk removed) before its clock starts: the like-for-like
    figure, linking ready values on both sides.
    """
    from types import SimpleNamespace

    from app import gc_tuning
    from app.services.identity_graph import partition
    from app.services.identity_history import Normaliser, read_history

    # The Normaliser needs the shop's country (the default region of phones); the blocklist is given.
    judge = Normaliser(SimpleNamespace(id=None, country="GB"), set())
    signals = _signals(world)
    if ready:
        for signal in signals:
            for ident in signal.idents:
                judge(ident.kind, ident.value)
    with gc_tuning.paused():  # as the backfill runs it: millions of acyclic objects
        started, cpu_started = time.perf_counter(), time.process_time()
        history = read_history(judge, signals)
        nodes = {k: t for k, t in history.first.items() if k[0] != "raw_phone"}
        prepared, cpu_prepared = time.perf_counter(), time.process_time()
        result = partition(nodes, history.links.values())
        done, cpu_done = time.perf_counter(), time.process_time()
    keys_of = history.keys
    labels = [result.root_of[keys_of[i][0]] if keys_of[i] else ("none", str(i)) for i in records]
    return {
        "elapsed": done - started,
        "cpu": cpu_done - cpu_started,
        "partition": done - prepared,
        "partition_cpu": cpu_done - cpu_prepared,
        "labels": labels,
        "candidates": len(result.candidates),
    }


def _forget_parsed_phones() -> None:
    """Empty the phone parser's memory, so that a timed pass parses every phone as a new shop's would."""
    from app.services import identifiers

    identifiers._parse_phone.cache_clear()


def _signals(world: World) -> list:
    """The population's signals as raw values (as an import reads them), each named for the evidence."""
    from app.services.identifiers import Ident
    from app.services.resolution import Signal

    return [
        Signal(tuple(Ident(k, v) for k, v in s.idents.items()), s.source, s.at, {"event_ref": f"s{n}"})
        for n, s in enumerate(world.signals)
    ]


# --------------------------------------------------------------------------- Splink


def run_splink(world: World, records: list[int]) -> dict | None:
    """Splink on the same records (junk removed, as our side also drops it); None if unavailable."""
    try:
        import pandas as pd
        import splink.comparison_library as cl
        from splink import Linker, SettingsCreator, block_on
        from splink.backends.duckdb import DuckDBAPI
    except ImportError as exc:
        print(f"splink: not installed ({exc}); pip install -e '.[bench]'", file=sys.stderr)
        return None
    junk = {("email", "test@test.com"), ("phone", "1234567890")}
    rows = []
    for n, i in enumerate(records):
        s = world.signals[i]
        row = {"unique_id": n}
        for kind in KINDS:
            value = s.idents.get(kind)
            row[kind] = None if value is None or (kind, value) in junk else value
        rows.append(row)
    frame = pd.DataFrame(rows)
    started, cpu_started = time.perf_counter(), time.process_time()
    db_api = DuckDBAPI()
    rules = [block_on(kind) for kind in KINDS]
    settings = SettingsCreator(
        link_type="dedupe_only",
        # One exact-match comparison per identifier (null, exact, else), m from the priors above. Making
        # "else" neutral for email, phone and web_client was tried: a household phone or library computer
        # seen with two different emails then scores like one person, and F1 falls to 0.96.
        # Term frequency adjustments: a match on a value seen in many records (a household phone, a
        # family or library computer) is weaker evidence than a match on a rare one.
        comparisons=[
            cl.ExactMatch(kind).configure(
                m_probabilities=list(SPLINK_M[kind]), term_frequency_adjustments=True
            )
            for kind in KINDS
        ],
        # A pair is compared when it shares any one identifier.
        blocking_rules_to_generate_predictions=rules,
    )
    linker = Linker(db_api.register(frame), settings, log_level=None)
    # The prior: pairs sharing any identifier (the same five rules, not only account and email: most of a
    # person's pairs share a device or phone), assumed to be 80% of true pairs.
    linker.training.estimate_probability_two_random_records_match(rules, recall=0.8)
    # u from Splink's default 1e6 random pairs, seeded so that two runs score the same. Splink warns that
    # 1e6 may be too few and suggests 1e7 or more: here 1e7 gave the same clusters in 2.3 s instead of
    # 1.3-1.5 s, so the peer keeps its faster setting.
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    # No EM: trained on pairs blocked by email then by web_client, it drove m(different account) to ~0,
    # left phone and amazon_buyer untrained, doubled the time and gave no better clusters.
    #
    # Threshold: every identifier value here belongs to one person, so random pairs agree on it almost
    # only when they are that person's records; u (and the term frequencies) estimated from them is about
    # P(same person) * m, so a lone exact match cannot reach match probability 0.5 (at 0.5 only pairs
    # agreeing on two identifiers link: recall 0.16). The match weight histogram has a valley at -4:
    # below it, exact matches contradicted by a different email or account (households, library
    # computers, -6 to -4.5); above it, lone exact matches, or with only a device differing (-3.5 up).
    predictions = linker.inference.predict(threshold_match_weight=SPLINK_THRESHOLD_WEIGHT)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_weight=SPLINK_THRESHOLD_WEIGHT
    )
    table = clusters.as_pandas_dataframe()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    cluster_of = dict(zip(table["unique_id"], table["cluster_id"], strict=True))
    # DuckDB works on several threads: its CPU time can exceed the wall time.
    return {"elapsed": elapsed, "cpu": cpu, "labels": [cluster_of[n] for n in range(len(records))]}


def _rate(n: int, run: dict) -> str:
    return (
        f"{n} signals in {run['elapsed']:.1f} s = {n / run['elapsed']:,.0f} signals/s "
        f"({run['cpu']:.1f} s of CPU = {n / run['cpu']:,.0f} signals per CPU second)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,500 people instead of 20,000")
    parser.add_argument("--people", type=int, help="population size (overrides --quick)")
    parser.add_argument("--batch", type=int, default=1000, help="signals per resolve_many call (1000)")
    parser.add_argument("--no-per-signal", action="store_true", help="skip the one-resolve-per-signal run")
    parser.add_argument("--no-splink", action="store_true", help="skip the Splink peer")
    args = parser.parse_args(argv)
    people = args.people or (1_500 if args.quick else 20_000)
    world = generate(people)
    records = attributable(world)
    truth = linkable_truth(world, records)
    people_truth = [world.signals[i].person for i in records]
    n = len(world.signals)
    print(f"population: {people} people, {n} signals, {len(records)} naming one person")
    ours = run_ours(world, records, batch=args.batch)
    print(
        f"ours batched (resolve_many, {args.batch} per call, commit per batch): {_rate(n, ours)}, "
        f"{ours['statements'] / n:.2f} statements per signal"
    )
    single = None if args.no_per_signal else run_ours(world, records, review=False)
    if single is not None:
        agree = pairwise(single["auto"], ours["auto"])[2]
        print(
            f"ours per signal (resolve, the same database work one call at a time): {_rate(n, single)}, "
            f"{single['statements'] / n:.2f} statements per signal; "
            f"agreement with batched (pairwise F1) {agree:.4f}"
        )
    rows = (
        ("auto-merge", ours["auto"]),
        (f"+ reviewer accepts true ({ours['reviewed']})", ours["reviewer"]),
        (f"+ accepting all ({ours['candidates']} more)", ours["after"]),
    )
    for label, labels in rows:
        p, r, f = pairwise(truth, labels)
        r_people = pairwise(people_truth, labels)[1]
        print(
            f"ours {label:<32} precision {p:.4f}  recall {r:.4f}  F1 {f:.4f}  "
            f"(recall vs whole person {r_people:.4f})"
        )
    share = ours["wrong_auto_merges"] / ours["auto_merges"] if ours["auto_merges"] else 0.0
    print(
        f"ours automatic merges: {ours['auto_merges']}, wrong: {ours['wrong_auto_merges']} ({share:.2%}); "
        f"candidates: {ours['reviewed'] + ours['candidates']}"
    )
    backfill = run_backfill(world, records)
    steps = backfill["steps"]
    print(
        f"ours backfill (resolve_history: raw values in, rows written and committed, "
        f"{'PostgreSQL' if os.environ.get('BENCH_DATABASE_URL') else 'SQLite'}): {_rate(n, backfill)}, "
        f"{backfill['statements']} statements; CPU by step: normalise and link {steps['read']:.2f} s, "
        f"partition and replay {steps['settle']:.2f} s, write {steps['write']:.2f} s"
    )
    p, r, f = pairwise(truth, backfill["auto"])
    print(f"ours backfill {'auto-merge':<27} precision {p:.4f}  recall {r:.4f}  F1 {f:.4f}")
    p, r, f = pairwise(truth, backfill["after"])
    print(
        f"ours backfill {'+ accepting all (' + str(backfill['candidates']) + ')':<27} "
        f"precision {p:.4f}  recall {r:.4f}  F1 {f:.4f}"
    )
    print(
        "agreement of backfill and batched database partitions (pairwise F1): "
        f"{pairwise(backfill['auto'], ours['auto'])[2]:.4f}"
    )
    _forget_parsed_phones()  # the runs above parsed them: this pass starts from raw values as a backfill does
    batch = run_batch(world, records)
    ready = run_batch(world, records, ready=True)
    p, r, f = pairwise(truth, batch["labels"])
    same = pairwise(batch["labels"], ours["auto"])
    print(
        f"ours in-memory pass (the backfill's reading, then one partition of every link): "
        f"{_rate(n, batch)}; the partition alone {batch['partition']:.2f} s "
        f"({batch['partition_cpu']:.2f} s of CPU), the rest normalising and linking"
    )
    print(
        f"ours in-memory pass on ready values (normalised and judged before the clock, as Splink's rows "
        f"are cleaned before its clock): {_rate(n, ready)}"
    )
    print(f"ours in-memory pass              precision {p:.4f}  recall {r:.4f}  F1 {f:.4f}")
    print(f"agreement of in-memory and database partitions (pairwise F1): {same[2]:.4f}")
    if ready["labels"] != batch["labels"]:
        print("ERROR: the pass on ready values partitioned differently", file=sys.stderr)
    peer = None if args.no_splink else run_splink(world, records)
    if peer is None:
        print("splink: skipped")
        return
    p, r, f = pairwise(truth, peer["labels"])
    r_people = pairwise(people_truth, peer["labels"])[1]
    print(
        f"splink (DuckDB, clusters at match weight {SPLINK_THRESHOLD_WEIGHT:g})  "
        f"precision {p:.4f}  recall {r:.4f}  F1 {f:.4f}  "
        f"(recall vs whole person {r_people:.4f})"
    )
    print(
        f"splink: {len(records)} records linked in {peer['elapsed']:.1f} s = "
        f"{len(records) / peer['elapsed']:,.0f} records/s ({peer['cpu']:.1f} s of CPU, several threads)"
    )
    _, _, ours_f1 = pairwise(truth, ours["auto"])
    print(
        f"ratio ours/splink: F1 {ours_f1 / f if f else float('inf'):.2f}x; wall time (lower is faster): "
        f"backfill {backfill['elapsed'] / peer['elapsed']:.2f}x, "
        f"batched database path {ours['elapsed'] / peer['elapsed']:.2f}x, "
        f"in-memory pass {batch['elapsed'] / peer['elapsed']:.2f}x, "
        f"in-memory pass on ready values (like for like) {ready['elapsed'] / peer['elapsed']:.2f}x, "
        f"partition alone {batch['partition'] / peer['elapsed']:.2f}x"
        + (f", per signal {single['elapsed'] / peer['elapsed']:.1f}x" if single else "")
    )
    print(
        f"ratio ours/splink, CPU time: backfill {backfill['cpu'] / peer['cpu']:.2f}x, "
        f"in-memory pass {batch['cpu'] / peer['cpu']:.2f}x, "
        f"on ready values {ready['cpu'] / peer['cpu']:.2f}x. "
        f"Like for like only on ready values: Splink is given clean rows (no normalising, junk removed), "
        f"{len(records)} records where ours reads all {n} signals, and writes nothing; the backfill "
        "normalises raw values and writes every profile, identifier, link and candidate to the database"
    )


if __name__ == "__main__":
    main()
