"""Memory of an order history backfill (``c360 backfill``) per order, against the history file's own size.

Run ``.venv/bin/python -m bench.backfill_memory [--orders N] [--orders-per-customer K]``.

The first pass holds something for every order until the whole file is resolved
(``two_pass``); an install-time import of a store with millions of orders must fit
in a worker. Python's allocations are traced (``tracemalloc``, which slows the run
several times over: the time printed is not the backfill's speed) and their peak is
printed per order and as a ratio to the bytes per order of the JSON-lines file read,
the baseline measured in the same run. The second pass works a batch at a time, so
its peak does not grow with the file. SQLite, or ``BENCH_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tracemalloc

from bench.ingest import order_body


def write_history(path: str, orders: int, customers: int) -> int:
    """A JSON-lines history of ``orders`` orders by ``customers`` customers; returns its size in bytes."""
    with open(path, "w") as f:
        for i in range(orders):
            p = (i * 7919) % customers
            at = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"
            body = order_body(i, p, f"person{p}@bench-mail.net", at)
            body["phone"] = f"+4477009{p % 100000:05d}"
            f.write(json.dumps(body) + "\n")
    return os.path.getsize(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--orders-per-customer", type=float, default=3.0)
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="c360-bench-")
    os.environ["C360_INSTANCE_PATH"] = tmp
    if os.environ.get("BENCH_DATABASE_URL"):
        os.environ["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    customers = max(1, round(args.orders / args.orders_per_customer))
    path = os.path.join(tmp, "orders.jsonl")
    size = write_history(path, args.orders, customers)

    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services import accounts
    from app.services.ingest import two_pass
    from app.services.ingest.backfill import backfill_orders

    app = create_app()
    with app.app_context():
        upgrade()
        shop = accounts.create_shop(
            "bench-memory.myshopify.com",
            secret="bench",  # noqa: S106 - a throwaway shop in a scratch database
            country="GB",
            currency="GBP",
        )
        db.session.commit()
        first_pass: dict[str, int] = {}
        resolve_history = two_pass.resolve_history

        def noting_the_peak(*a, **kw):
            out = resolve_history(*a, **kw)
            first_pass["peak"] = tracemalloc.get_traced_memory()[1]
            return out

        two_pass.resolve_history = noting_the_peak
        tracemalloc.start()
        started = time.perf_counter()
        try:
            result = backfill_orders(shop, lambda: open(path))
        finally:
            two_pass.resolve_history = resolve_history
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        elapsed = time.perf_counter() - started
    n = args.orders
    print(
        f"backfill memory: {n} orders by {customers} customers "
        f"({'PostgreSQL' if os.environ.get('BENCH_DATABASE_URL') else 'SQLite'}), "
        f"{result.applied} applied, {len(result.failed)} skipped, {elapsed:.0f} s under tracemalloc"
    )
    print(f"  history file: {size / n:,.0f} bytes per order (the baseline)")
    print(
        f"  peak Python memory, first pass: {first_pass['peak'] / n:,.0f} bytes per order "
        f"= {first_pass['peak'] / size:.2f}x the file"
    )
    print(
        f"  peak Python memory, whole backfill: {peak / n:,.0f} bytes per order = {peak / size:.2f}x the file"
    )


if __name__ == "__main__":
    main()
