"""Benchmark: whole-shop enrichment and the customer page on PostgreSQL.

Full size (the issue's target): 1,000,000 profiles, 5,000,000 orders and
20,000,000 engagement events, generated server-side with
``generate_series``. ``--quick`` uses 20,000 profiles (same ratios).

Prints seconds per enrichment stage, the floor (a plain scan of the same
rows in the database), the p95 render time of the customer page for a
heavy profile (10,000 events, 200 orders) with the plain ``SELECT`` of
the rows it shows as its floor, and the ratios. Targets: ≤ 120 s full
enrichment, ≤ 150 ms p95 page.

    .venv/bin/python -m bench.enrichment --quick
    .venv/bin/python -m bench.enrichment            # full size, ~20 min of data generation
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import sqlalchemy as sa

from bench.scratch import scratch_database

BASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
EVENT_TYPES = (
    "page_viewed",
    "product_viewed",
    "email.sent",
    "email.delivered",
    "email.opened",
    "email.clicked",
    "sms.sent",
    "sms.delivered",
    "sms.clicked",
    "product_added_to_cart",
    "checkout_started",
    "push.opened",
)
EVENT_CHANNELS = (None, None, "email", "email", "email", "email", "sms", "sms", "sms", None, None, "push")
SECONDARY_INDEXES = {
    "events": [
        "CREATE UNIQUE INDEX uq_events_shop_id ON events (shop_id, source, external_id)",
        "CREATE INDEX ix_events_profile_time ON events (profile_id, occurred_at)",
        "CREATE INDEX ix_events_shop_type_time ON events (shop_id, type, occurred_at)",
    ],
    "orders": [
        "CREATE UNIQUE INDEX uq_orders_shop_id ON orders (shop_id, source, external_id)",
        "CREATE INDEX ix_orders_profile_placed ON orders (profile_id, placed_at)",
        "CREATE INDEX ix_orders_shop_number ON orders (shop_id, number)",
    ],
}


def _timed(label: str, fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    elapsed = time.perf_counter() - started
    print(f"  {label:<44} {elapsed:8.2f} s", flush=True)
    return out, elapsed


def create_database() -> tuple[str, callable]:
    """A fresh database for this run and a function that drops it."""
    return scratch_database(BASE_URL)


def _drop_secondary_indexes(conn, table: str) -> None:
    rows = conn.execute(
        sa.text("SELECT indexname FROM pg_indexes WHERE tablename = :t AND indexname NOT LIKE 'pk_%'"),
        {"t": table},
    ).scalars()
    for index in list(rows):
        constraint = conn.execute(
            sa.text("SELECT 1 FROM pg_constraint WHERE conname = :n"), {"n": index}
        ).scalar()
        if constraint:
            conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{index}"'))
        else:
            conn.execute(sa.text(f'DROP INDEX "{index}"'))


def generate(conn, shop_id: int, profiles: int, orders: int, events: int) -> None:
    """Fill one shop with synthetic people, orders and events, in SQL."""
    days = 730
    conn.execute(sa.text("SET synchronous_commit = off"))
    # Skip per-row foreign-key triggers while generating (ids are consistent by construction).
    conn.execute(sa.text("SET session_replication_role = replica"))
    conn.execute(
        sa.text(
            """
            INSERT INTO profiles (shop_id, first_name, last_name, search_text, order_count, lifetime_spend,
                online_count, online_spend, pos_count, pos_spend, marketplace_count, marketplace_spend,
                globally_unsubscribed, lifecycle_stage, first_seen_at, last_seen_at, created_at, updated_at)
            SELECT :shop, 'First' || g, 'Last' || g, 'first' || g || ' last' || g, 0, 0, 0, 0, 0, 0, 0, 0,
                   false, 'new', now() - (random() * :days) * interval '1 day', NULL, now(), now()
            FROM generate_series(1, :n) g
            """
        ),
        {"shop": shop_id, "n": profiles, "days": days},
    )
    low, high = conn.execute(
        sa.text("SELECT min(id), max(id) FROM profiles WHERE shop_id = :s"), {"s": shop_id}
    ).one()
    for table in ("orders", "events"):
        _drop_secondary_indexes(conn, table)
    # Skewed buyers: a third of profiles buy, the lower ids more often.
    conn.execute(
        sa.text(
            """
            INSERT INTO orders (shop_id, profile_id, source, external_id, number, channel, source_name,
                location_id, placed_at, currency, total, refunded, cancelled_at, discount_codes, created_at)
            SELECT :shop, :low + floor(power(random(), 2) * (:span / 3))::bigint, 'shopify', g::text,
                   '#' || g, ch, CASE ch WHEN 'pos' THEN 'pos' ELSE 'web' END,
                   CASE ch WHEN 'pos' THEN (3000 + g % 4)::text END,
                   now() - (random() * :days) * interval '1 day', 'GBP',
                   round((10 + random() * 190)::numeric, 2),
                   CASE WHEN g % 20 = 0 THEN 5 ELSE 0 END,
                   CASE WHEN g % 50 = 0 THEN now() END, '[]'::jsonb, now()
            FROM (SELECT g, (ARRAY['online','online','online','pos','marketplace'])[1 + g % 5] AS ch
                  FROM generate_series(1, :n) g) s
            """
        ),
        {"shop": shop_id, "low": low, "span": high - low + 1, "n": orders, "days": days},
    )
    types = "ARRAY[" + ",".join(f"'{t}'" for t in EVENT_TYPES) + "]"
    channels = "ARRAY[" + ",".join("NULL" if c is None else f"'{c}'" for c in EVENT_CHANNELS) + "]::text[]"
    conn.execute(
        sa.text(
            f"""
            INSERT INTO events (shop_id, profile_id, type, channel, source, external_id, identifiers,
                properties, occurred_at, received_at)
            SELECT :shop, :low + floor(power(random(), 1.5) * :span)::bigint, ({types})[k], ({channels})[k],
                   'bench', g::text, '{{}}'::jsonb, '{{}}'::jsonb,
                   now() - (power(random(), 2) * 365) * interval '1 day', now()
            FROM (SELECT g, 1 + (g::bigint * 7919) % {len(EVENT_TYPES)} AS k FROM generate_series(1, :n) g) s
            """
        ),
        {"shop": shop_id, "low": low, "span": high - low + 1, "n": events},
    )
    conn.execute(sa.text("SET session_replication_role = origin"))
    for statements in SECONDARY_INDEXES.values():
        for statement in statements:
            conn.execute(sa.text(statement))
    conn.execute(
        sa.text(
            """
            UPDATE profiles p SET order_count = s.n, lifetime_spend = s.spend, first_order_at = s.first,
                   last_order_at = s.last, online_count = s.n
            FROM (SELECT profile_id, count(*) n, sum(total - refunded) spend, min(placed_at) first,
                         max(placed_at) last
                  FROM orders WHERE cancelled_at IS NULL GROUP BY profile_id) s
            WHERE p.id = s.profile_id
            """
        )
    )


def heavy_profile(conn, shop_id: int) -> int:
    """One profile with 10,000 events and 200 orders (the page's worst case)."""
    pid = conn.execute(
        sa.text(
            "INSERT INTO profiles (shop_id, first_name, last_name, order_count, lifetime_spend, "
            "online_count, online_spend, pos_count, pos_spend, marketplace_count, marketplace_spend, "
            "globally_unsubscribed, lifecycle_stage, first_seen_at, last_seen_at, timezone, created_at, "
            "updated_at) VALUES (:s, 'Heavy', 'Shopper', 200, 10000, 200, 10000, 0, 0, 0, 0, false, 'loyal', "
            "now() - interval '400 days', now(), 'Europe/London', now(), now()) RETURNING id"
        ),
        {"s": shop_id},
    ).scalar()
    conn.execute(
        sa.text(
            "INSERT INTO events (shop_id, profile_id, type, channel, source, external_id, identifiers, "
            "properties, occurred_at, received_at) SELECT :s, :p, 'email.opened', 'email', 'heavy', "
            "'h' || g, '{}'::jsonb, '{}'::jsonb, now() - (g * interval '1 hour'), now() "
            "FROM generate_series(1, 10000) g"
        ),
        {"s": shop_id, "p": pid},
    )
    conn.execute(
        sa.text(
            "INSERT INTO orders (shop_id, profile_id, source, external_id, number, channel, placed_at, "
            "currency, total, refunded, discount_codes, created_at) SELECT :s, :p, 'shopify', 'heavy' || g, "
            "'#H' || g, "
            "'online', now() - (g * interval '2 days'), 'GBP', 50, 0, '[]'::jsonb, now() "
            "FROM generate_series(1, 200) g"
        ),
        {"s": shop_id, "p": pid},
    )
    return pid


def reset_scores(shop_id: int) -> None:
    """Put a kept database back to its never-enriched state (for --reuse), compacted."""
    from app.extensions import db

    db.session.execute(sa.text("UPDATE shops SET first_enrichment_at = NULL"))
    db.session.execute(
        sa.text(
            "UPDATE profiles SET lifecycle_stage = 'new', lifecycle_changed_at = NULL, "
            "engagement_score = NULL, rfm_r = NULL, rfm_f = NULL, rfm_m = NULL, churn_risk = NULL, "
            "predicted_ltv_90d = NULL, predicted_next_order_at = NULL, enriched_at = NULL WHERE shop_id = :s"
        ),
        {"s": shop_id},
    )
    db.session.execute(sa.text("DELETE FROM job_runs"))
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM FULL ANALYZE profiles"))


def run_once(shop, title: str) -> float:
    """Run one enrichment of ``shop`` and print its stages; return the total seconds."""
    from app.services import enrichment

    print(title)
    run, _ = enrichment.create_run(shop)
    started = time.perf_counter()
    run = enrichment.run_enrichment(shop.id, run.id)
    total = time.perf_counter() - started
    timings = run.result["timings"]
    for stage in (
        "load_profiles_orders",
        "load_events",
        "compute",
        "write_profiles",
        "write_events_snapshot",
    ):
        print(f"  {stage:<44} {timings[stage]:8.2f} s")
    print(f"  {'total (job, incl. progress commits)':<44} {total:8.2f} s   target ≤ 120 s full size")
    print(f"  stages: {run.result['stages']}")
    return total


def update_floor(conn, shop_id: int) -> float:
    """A plain UPDATE of every profile of the shop (rolled back): what writing alone costs."""
    started = time.perf_counter()
    conn.rollback()
    conn.execute(sa.text("UPDATE profiles SET churn_risk = churn_risk WHERE shop_id = :s"), {"s": shop_id})
    conn.rollback()
    return time.perf_counter() - started


def scan_floor(conn, shop_id: int) -> float:
    """A plain scan of the rows enrichment reads (profiles, orders, events of the shop)."""
    started = time.perf_counter()
    for table, column in (("profiles", "id"), ("orders", "placed_at"), ("events", "occurred_at")):
        conn.execute(
            sa.text(f"SELECT count(*), max({column}) FROM {table} WHERE shop_id = :s"), {"s": shop_id}
        )
    return time.perf_counter() - started


def page_floor(conn, shop_id: int, pid: int) -> float:
    """A plain SELECT of the rows the page shows: the profile, a page of events and one of orders."""
    started = time.perf_counter()
    conn.execute(sa.text("SELECT * FROM profiles WHERE id = :p"), {"p": pid}).all()
    conn.execute(
        sa.text("SELECT * FROM identifiers WHERE shop_id = :s AND profile_id = :p"), {"s": shop_id, "p": pid}
    ).all()
    conn.execute(
        sa.text(
            "SELECT * FROM events WHERE shop_id = :s AND profile_id = :p ORDER BY occurred_at DESC LIMIT 21"
        ),
        {"s": shop_id, "p": pid},
    ).all()
    conn.execute(
        sa.text(
            "SELECT * FROM orders WHERE shop_id = :s AND profile_id = :p ORDER BY placed_at DESC LIMIT 26"
        ),
        {"s": shop_id, "p": pid},
    ).all()
    return time.perf_counter() - started


def p95(samples: list[float]) -> float:
    """The 95th percentile of ``samples``."""
    return statistics.quantiles(samples, n=20)[-1] if len(samples) >= 2 else samples[0]


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 profiles instead of 1,000,000")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (prints its URL)")
    parser.add_argument(
        "--reuse", metavar="URL", help="enrich a database kept by --keep instead of generating"
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else 1_000_000
    sizes = {"profiles": n, "orders": 5 * n, "events": 20 * n}
    url, drop = (args.reuse, lambda: None) if args.reuse else create_database()
    if args.keep:
        print(f"database kept at {url}")
    os.environ["C360_INSTANCE_PATH"] = tempfile.mkdtemp(prefix="c360-bench-")
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services import accounts

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False, "REDIS_URL": None}
    )
    try:
        with app.app_context():
            if args.reuse:
                shop = accounts.require_shop("bench.myshopify.com")
                pid = db.session.scalar(sa.text("SELECT id FROM profiles WHERE first_name = 'Heavy'"))
                reset_scores(shop.id)
            else:
                upgrade()
                shop = accounts.create_shop(
                    "bench.myshopify.com", plan="pro", timezone="Europe/London", currency="GBP"
                )
                accounts.create_user("owner@bench.test", "bench password 1", shop, "owner")
                db.session.commit()
            print(
                f"Enrichment benchmark: {sizes['profiles']:,} profiles, {sizes['orders']:,} orders, "
                f"{sizes['events']:,} events (PostgreSQL)"
            )
            if not args.reuse:
                print("Generating data (not timed against the target):")
                with db.engine.begin() as conn:
                    _timed("generate_series load + indexes", generate, conn, shop.id, *sizes.values())
                    pid = heavy_profile(conn, shop.id)
                    conn.execute(sa.text("ANALYZE"))
            first = run_once(shop, "Enrichment stages, first full run (every profile changes):")
            with db.engine.connect() as conn:
                floor = min(scan_floor(conn, shop.id) for _ in range(2))
                write_floor = update_floor(conn, shop.id)
            print(f"  {'floor: plain scan of the same rows':<44} {floor:8.2f} s")
            print(f"  {'floor: plain UPDATE of the same profiles':<44} {write_floor:8.2f} s")
            print(f"  {'ratio total / scan floor':<44} {first / floor:8.1f} ×")
            print(f"  {'ratio total / (scan + update floors)':<44} {first / (floor + write_floor):8.1f} ×")
            run_once(shop, "Nightly re-run (only changed profiles are written):")
            page_bench(app, shop.id, pid)
    finally:
        if not (args.keep or args.reuse):
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
            drop()


def page_bench(app, shop_id: int, pid: int, rounds: int = 40) -> None:
    """Time the heavy profile's page (full page, and full page plus its six lazy sections)."""
    from app.extensions import db

    client = app.test_client()
    client.post("/login", data={"email": "owner@bench.test", "password": "bench password 1"})
    sections = ("identities", "orders", "timeline", "consents", "messages", "predictions")
    header, whole = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        assert client.get(f"/customers/{pid}").status_code == 200
        first = time.perf_counter() - started
        for name in sections:
            assert client.get(f"/customers/{pid}/{name}", headers={"HX-Request": "true"}).status_code == 200
        header.append(first)
        whole.append(time.perf_counter() - started)
    with db.engine.connect() as conn:
        floor = min(page_floor(conn, shop_id, pid) for _ in range(10))
    print("Customer page, heavy profile (10,000 events, 200 orders):")
    print(f"  {'p95 full page (header, sections lazy)':<44} {p95(header) * 1000:8.1f} ms   target ≤ 150 ms")
    print(f"  {'p95 page + all six sections':<44} {p95(whole) * 1000:8.1f} ms")
    print(f"  {'floor: plain SELECT of the shown rows':<44} {floor * 1000:8.1f} ms")
    print(f"  {'ratio p95 page / floor':<44} {p95(header) / floor:8.1f} ×")


if __name__ == "__main__":
    main()
