"""Benchmark the send-time gate: batched check+reserve, single checks, unsubscribe propagation.

    .venv/bin/python -m bench.gate --quick      # 5,000 profiles
    .venv/bin/python -m bench.gate              # 100,000 profiles (the issue's size)

Runs on PostgreSQL (``DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``)
in a throw-away database it creates and drops; ``--sqlite`` uses a temporary
SQLite file instead. The floor is a bare ``SELECT 1`` round trip measured in
the same run; every latency is also printed as a multiple of it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import tempfile
import threading
import time
import uuid

import sqlalchemy as sa

TARGET_BATCH, TARGET_CHECK_P99_MS, TARGET_PROPAGATION_P99_MS = 20_000, 2.0, 1000.0
ZONES = [
    ("Europe/London", None, None),
    ("Australia/Sydney", None, None),
    (None, "US", None),
    (None, "AU", "NSW"),
]


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def make_database(use_sqlite: bool) -> tuple[str, callable]:
    if use_sqlite:
        return f"sqlite:///{tempfile.mkdtemp(prefix='c360-bench-')}/bench.sqlite", lambda: None
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    url = sa.engine.make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"c360_gatebench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return url.set(database=name).render_as_string(hide_password=False), drop


def seed(db, shop, n: int, now: dt.datetime) -> list[int]:
    """N profiles with an email, 90 % opted in to email and SMS, 3 % unsubscribed, 5 % capped today."""
    from app.models import ConsentState, Identifier, Message, Profile
    from app.services.bulk_sql import insert_rows

    rng = random.Random(7)
    profile_rows = []
    for i in range(n):
        tz, country, province = ZONES[i % len(ZONES)]
        profile_rows.append(
            {
                "shop_id": shop.id,
                "timezone": tz,
                "country": country,
                "province": province,
                "globally_unsubscribed": rng.random() < 0.03,
                "created_at": now,
                "updated_at": now,
            }
        )
    ids = []
    for start in range(0, n, 10_000):
        ids += [
            row.id for row in insert_rows(Profile.__table__, profile_rows[start : start + 10_000], ("id",))
        ]
    ids.sort()
    insert_rows(
        Identifier.__table__,
        [
            {
                "shop_id": shop.id,
                "profile_id": pid,
                "kind": "email",
                "value": f"p{pid}@bench.test",
                "source": "bench",
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for pid in ids
        ],
    )
    states = [
        {"shop_id": shop.id, "profile_id": pid, "channel": channel, "status": "opted_in", "updated_at": now}
        for pid in ids
        if rng.random() < 0.9
        for channel in ("email", "sms")
    ]
    insert_rows(ConsentState.__table__, states)
    earlier = now - dt.timedelta(minutes=30)
    capped = [pid for pid in ids if rng.random() < 0.05]
    insert_rows(
        Message.__table__,
        [
            {
                "shop_id": shop.id,
                "profile_id": pid,
                "channel": "email",
                "source": "campaign",
                "status": "sent",
                "created_at": earlier,
                "sent_at": earlier,
            }
            for pid in capped
            for _ in range(3)
        ],
    )
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(sa.text("ANALYZE"))  # fresh bulk data: give the planner its statistics
        db.session.commit()
    return ids


def floor_ms(db, rounds: int = 2000) -> list[float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        db.session.execute(sa.text("SELECT 1")).scalar()
        samples.append((time.perf_counter() - t0) * 1000)
    db.session.rollback()
    return samples


def single_checks(db, gate, shop, ids, now, rounds) -> list[float]:
    rng = random.Random(11)
    samples = []
    for _ in range(rounds):
        pid = rng.choice(ids)
        t0 = time.perf_counter()
        gate.check(shop, pid, "sms", now)
        samples.append((time.perf_counter() - t0) * 1000)
    db.session.rollback()
    return samples


def propagation(app, shop_id: int, ids: list[int], trials: int, load_threads: int) -> tuple[list[float], int]:
    """Unsubscribe while senders hammer other profiles; time until a separate checker sees the refusal."""
    from app.extensions import db
    from app.models import Profile, Shop
    from app.models.base import utcnow
    from app.services import gate
    from app.services.consent import unsubscribe_all
    from app.services.messaging import send_message

    stop = threading.Event()
    load_done = [0]
    targets, others = ids[:trials], ids[trials:]

    def sender(seed_: int):
        rng = random.Random(seed_)
        with app.app_context():
            model = db.session.get(Shop, shop_id)
            while not stop.is_set():
                send_message(model, rng.choice(others), "email", "manual", now=utcnow())
                load_done[0] += 1

    workers = [threading.Thread(target=sender, args=(i,)) for i in range(load_threads)]
    for w in workers:
        w.start()
    samples = []
    with app.app_context():
        model = db.session.get(Shop, shop_id)
        for pid in targets:
            seen = threading.Event()
            t0 = time.perf_counter()

            def checker(pid=pid, seen=seen):
                with app.app_context():
                    checker_shop = db.session.get(Shop, shop_id)
                    while not seen.is_set():
                        if gate.check(checker_shop, pid, "email", utcnow()).reason == "global_unsubscribe":
                            seen.set()
                        db.session.rollback()

            watcher = threading.Thread(target=checker)
            watcher.start()
            profile = db.session.get(Profile, pid)
            unsubscribe_all(profile, source="bench", captured_at=utcnow())
            db.session.commit()  # the API answers 200 here
            seen.wait(10)
            samples.append((time.perf_counter() - t0) * 1000)
            seen.set()
            watcher.join()
        del model
    stop.set()
    for w in workers:
        w.join()
    return samples, load_done[0]


_WORKER_APP = None


def _init_worker(database_url: str) -> None:
    """Build the app once per worker process, before the clock starts."""
    global _WORKER_APP
    from app import create_app

    _WORKER_APP = create_app(
        {"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "bench", "REDIS_URL": None}
    )


def _ready(_: int) -> bool:
    time.sleep(0.2)  # each worker takes one of these, so all have finished starting
    return _WORKER_APP is not None


def send_slice(shop_id: int, ids: list[int], now_iso: str) -> int:
    """One worker process of the parallel campaign send: gate and reserve its slice of the audience."""
    from app.extensions import db
    from app.models import Shop
    from app.services.messaging_bulk import send_many

    with _WORKER_APP.app_context():
        shop = db.session.get(Shop, shop_id)
        now = dt.datetime.fromisoformat(now_iso)
        return send_many(shop, ids, "email", campaign_id="bench-parallel", now=now).decisions


def parallel_send(url: str, shop_id: int, ids: list[int], now: dt.datetime, workers: int) -> float:
    """Decisions/s of a second campaign sent by ``workers`` processes, each on its own slice."""
    import multiprocessing

    slices = [ids[i::workers] for i in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (url,)) as pool:
        assert all(pool.map(_ready, range(workers), chunksize=1))
        t0 = time.perf_counter()
        done = sum(pool.starmap(send_slice, [(shop_id, s, now.isoformat()) for s in slices], chunksize=1))
        return done / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 profiles instead of 100,000")
    parser.add_argument("--profiles", type=int, help="audience size (overrides --quick)")
    parser.add_argument("--sqlite", action="store_true", help="use a temporary SQLite file")
    parser.add_argument("--workers", type=int, default=1, help="processes for the parallel campaign send")
    args = parser.parse_args()
    n = args.profiles or (5_000 if args.quick else 100_000)
    url, drop = make_database(args.sqlite)
    os.environ.setdefault("C360_INSTANCE_PATH", tempfile.mkdtemp(prefix="c360-bench-"))
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.models import Shop
    from app.services import accounts, gate
    from app.services.messaging_bulk import send_many

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "REDIS_URL": None})
    try:
        with app.app_context():
            upgrade()
            shop = accounts.create_shop(
                "bench.myshopify.com",
                secret="bench-secret",  # noqa: S106
                plan="pro",
                timezone="Europe/London",
                currency="GBP",
                country="GB",
            )
            db.session.commit()
            shop_id = shop.id
            now = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
            t0 = time.perf_counter()
            ids = seed(db, shop, n, now)
            print(
                f"backend {db.engine.dialect.name}; seeded {n:,} profiles in {time.perf_counter() - t0:.1f} s"
            )
            floor = floor_ms(db)
            f50 = statistics.median(floor)
            print(f"floor: SELECT 1 round trip p50 {f50:.3f} ms, p99 {pct(floor, 99):.3f} ms")

            t0 = time.perf_counter()
            decisions = gate.gate_many(db.session.get(Shop, shop.id), ids, "email", now)
            elapsed = time.perf_counter() - t0
            db.session.rollback()
            rate = len(decisions) / elapsed
            print(
                f"gate_many (read-only, batched): {rate:,.0f} decisions/s "
                f"({elapsed * 1000 / len(decisions) / f50:.2f} x SELECT 1 per decision)"
            )

            t0 = time.perf_counter()
            result = send_many(db.session.get(Shop, shop.id), ids, "email", campaign_id="bench", now=now)
            elapsed = time.perf_counter() - t0
            rate = result.decisions / elapsed
            if db.engine.dialect.name == "postgresql":
                db.session.execute(sa.text("ANALYZE messages"))  # as autovacuum would after a big send
                db.session.commit()
            verdict = "meets" if rate >= TARGET_BATCH else "BELOW"
            print(
                f"send_many (check + reserve, batched): {rate:,.0f} decisions/s; {verdict} target "
                f"{TARGET_BATCH:,} ({rate / TARGET_BATCH:.2f} x); "
                f"sent {result.sent:,}, blocked {result.blocked:,}; "
                f"top reasons {dict(result.reasons.most_common(4))}"
            )

            if args.workers > 1:
                rate = parallel_send(url, shop_id, ids, now + dt.timedelta(minutes=1), args.workers)
                verdict = "meets" if rate >= TARGET_BATCH else "BELOW"
                print(
                    f"send_many x {args.workers} processes (check + reserve, a second campaign): "
                    f"{rate:,.0f} decisions/s; {verdict} target {TARGET_BATCH:,} "
                    f"({rate / TARGET_BATCH:.2f} x)"
                )
            checks = single_checks(
                db, gate, db.session.get(Shop, shop.id), ids, now, 2000 if n > 5000 else 1000
            )
            p50, p99 = statistics.median(checks), pct(checks, 99)
            verdict = "meets" if p99 <= TARGET_CHECK_P99_MS else "ABOVE"
            print(
                f"single check: p50 {p50:.3f} ms ({p50 / f50:.1f} x SELECT 1), p99 {p99:.3f} ms "
                f"({p99 / f50:.1f} x SELECT 1); {verdict} target p99 <= {TARGET_CHECK_P99_MS} ms"
            )
        trials = 100 if n > 5000 else 40
        samples, load = propagation(app, shop_id, ids, trials, load_threads=4)
        p50, p99 = statistics.median(samples), pct(samples, 99)
        verdict = "meets" if p99 <= TARGET_PROPAGATION_P99_MS else "ABOVE"
        print(
            f"unsubscribe propagation under load (4 sender threads, {load:,} sends meanwhile): "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({p99 / f50:.0f} x SELECT 1); {verdict} target p99 <= "
            f"{TARGET_PROPAGATION_P99_MS:.0f} ms"
        )
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        drop()


if __name__ == "__main__":
    main()
