"""Ingest benchmark: mixed events through the real HTTP endpoints and RQ workers on PostgreSQL + Redis.

Mix: 70% pixel, 15% engagement (SendGrid), 10% Shopify orders, 5% Shopify consents.
Prints accepted requests/s, fully processed events/s, p50/p99 accept-to-profile-updated
latency at a fixed offered rate, and a raw ``COPY`` of the same events into a scratch table
as the physical baseline (with the ratio).

    .venv/bin/python -m bench.ingest --quick      # ~3,000 events, < 2 minutes
    .venv/bin/python -m bench.ingest              # 100,000 events, 2 workers
    .venv/bin/python -m bench.ingest --shops 2    # the same people spread over two shops

One shop's inbox is worked by one drain at a time (its batches take a per-shop lock), so
with a single shop a second worker mostly waits; shops are drained side by side.

Needs PostgreSQL and Redis (``DATABASE_URL``/``REDIS_URL``, default the local servers).
A scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from bench.scratch import scratch_database

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "bench.myshopify.com"
SECRET = "bench-secret"  # noqa: S105 - a throwaway shop in a scratch database
PIXEL_BATCH = 5  # events per /collect request (a pixel may batch)
SENDGRID_BATCH = 10  # events per SendGrid post, as SendGrid batches them


def shop_domain(index: int) -> str:
    """The bench's shops: the first is ``DOMAIN``."""
    return DOMAIN if index == 0 else f"bench{index}.myshopify.com"


def build_events(n: int, seed: int = 7, shops: int = 1) -> list[tuple[str, dict]]:
    """``n`` events in the issue's mix as ``(kind, body)``; kinds: pixel, sendgrid, order, consent.

    With ``shops`` > 1, person ``p`` shops at ``shop_domain(p % shops)`` (``requests_for`` sends
    each event to its person's shop).
    """
    rng = random.Random(seed)
    people = max(50, n // 20)
    events: list[tuple[str, dict]] = []
    for i in range(n):
        p = rng.randrange(people)
        email = f"person{p}@bench-mail.net"
        roll = rng.random()
        at = f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z"
        if roll < 0.70:
            domain = shop_domain(p % shops)
            body = {
                "shop": domain,
                "id": f"px-{i}",
                "clientId": f"c-{p}",
                "name": "page_viewed",
                "seq": i,
                "timestamp": at,
                "type": "standard",
                "context": {"document": {"location": {"href": f"https://{domain}/p/{i % 40}"}}},
                "data": {},
            }
            if rng.random() < 0.1:
                body["name"] = "form_submitted"
                body["data"] = {"element": {"id": "popup", "elements": [{"name": "email", "value": email}]}}
            events.append(("pixel", body))
        elif roll < 0.85:
            kind = rng.choice(["delivered", "open", "click"])
            events.append(
                (
                    "sendgrid",
                    {
                        "email": email,
                        "event": kind,
                        "timestamp": 1791100000 + i,
                        "sg_event_id": f"sg-{i}",
                        "sg_message_id": f"m{i}.filter",
                    },
                )
            )
        elif roll < 0.95:
            events.append(("order", order_body(i, p, email, at)))
        else:
            events.append(
                (
                    "consent",
                    {
                        "customer_id": 900000 + p,
                        "email_address": email,
                        "email_marketing_consent": {
                            "state": rng.choice(["subscribed", "unsubscribed"]),
                            "opt_in_level": "single_opt_in",
                            "consent_updated_at": at,
                        },
                    },
                )
            )
    return events


def order_body(i: int, p: int, email: str, at: str) -> dict:
    """Order ``i`` of person ``p`` in Shopify's REST shape (every fifth at the till); tests use it too."""
    price = f"{10 + i % 90}.00"
    return {
        "id": 100000 + i,
        "name": f"#{5000 + i}",
        "email": email,
        "created_at": at,
        "updated_at": at,
        "currency": "GBP",
        "total_price": price,
        "subtotal_price": price,
        "total_price_set": {"shop_money": {"amount": price, "currency_code": "GBP"}},
        "financial_status": "paid",
        "source_name": "pos" if i % 5 == 0 else "web",
        "location_id": 3001 if i % 5 == 0 else None,
        "landing_site": "/?utm_source=instagram",
        "line_items": [
            {
                "id": i,
                "product_id": 4,
                "variant_id": 41,
                "sku": "LS-M",
                "title": "Linen shirt",
                "quantity": 1,
                "price": price,
            }
        ],
        "customer": {"id": 900000 + p, "email": email, "first_name": "Bench", "last_name": f"P{p}"},
        "billing_address": {"country_code": "GB"},
    }


def _renumber(body: dict, offset: int) -> dict:
    """The same event under fresh ids, so a second phase is not deduplicated away."""
    body = json.loads(json.dumps(body))
    for key in ("id", "sg_event_id"):
        if isinstance(body.get(key), str):
            body[key] = f"{body[key]}-{offset}"
    if isinstance(body.get("id"), int):
        body["id"] += offset * 10
    return body


def _person_shop(kind: str, body: dict, shops: int) -> str:
    """The shop of an event's person (see ``build_events``)."""
    if kind == "pixel":
        return body["shop"]
    email = {"sendgrid": body.get("email"), "consent": body.get("email_address")}.get(kind) or body["email"]
    return shop_domain(int(email.split("@")[0].removeprefix("person")) % shops)


def requests_for(events: list[tuple[str, dict]], shops: int = 1) -> list[tuple[str, bytes, dict, int]]:
    """HTTP requests ``(path, body, headers, events carried)`` for the events, batched as providers do."""
    out: list[tuple[str, bytes, dict, int]] = []
    pixel: dict[str, list[dict]] = {}
    sendgrid: dict[str, list[dict]] = {}

    def flush_pixel(domain: str):
        if pixel.get(domain):
            batch = pixel.pop(domain)
            out.append(("/collect", json.dumps(batch).encode(), {"Content-Type": "text/plain"}, len(batch)))

    def flush_sendgrid(domain: str):
        if sendgrid.get(domain):
            batch = sendgrid.pop(domain)
            out.append(
                (
                    f"/webhooks/sendgrid/{domain}",
                    json.dumps(batch).encode(),
                    {"Content-Type": "application/json", "X-Bench-Sign": "sendgrid"},
                    len(batch),
                )
            )

    for kind, body in events:
        domain = _person_shop(kind, body, shops)
        if kind == "pixel":
            pixel.setdefault(domain, []).append(body)
            if len(pixel[domain]) == PIXEL_BATCH:
                flush_pixel(domain)
        elif kind == "sendgrid":
            sendgrid.setdefault(domain, []).append(body)
            if len(sendgrid[domain]) == SENDGRID_BATCH:
                flush_sendgrid(domain)
        else:
            topic = "orders/create" if kind == "order" else "customers/email_marketing_consent_update"
            raw = json.dumps(body).encode()
            sig = base64.b64encode(hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()).decode()
            out.append(
                (
                    "/webhooks/shopify",
                    raw,
                    {
                        "Content-Type": "application/json",
                        "X-Shopify-Topic": topic,
                        "X-Shopify-Shop-Domain": domain,
                        "X-Shopify-Webhook-Id": uuid.uuid4().hex,
                        "X-Shopify-Hmac-Sha256": sig,
                        "X-Shopify-API-Version": "2025-10",
                    },
                    1,
                )
            )
    for domain in list(pixel):
        flush_pixel(domain)
    for domain in list(sendgrid):
        flush_sendgrid(domain)
    return out


class Sender:
    """Posts requests over keep-alive connections from several threads, optionally at a fixed rate."""

    def __init__(self, port: int, key, threads: int = 8):
        self.port, self.key, self.threads = port, key, threads
        self.errors: list[str] = []

    def _sign_sendgrid(self, raw: bytes) -> dict:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        ts = str(int(time.time()))
        sig = base64.b64encode(self.key.sign(ts.encode() + raw, ec.ECDSA(hashes.SHA256()))).decode()
        return {"X-Twilio-Email-Event-Webhook-Signature": sig, "X-Twilio-Email-Event-Webhook-Timestamp": ts}

    def run(self, requests: list, rate_events_per_s: float | None = None) -> float:
        """Send everything; return the elapsed seconds."""
        chunks = [requests[i :: self.threads] for i in range(self.threads)]
        start = time.perf_counter()
        per_thread_rate = rate_events_per_s / self.threads if rate_events_per_s else None

        def work(chunk):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            sent_events, t0 = 0, time.perf_counter()
            for path, raw, headers, carried in chunk:
                if per_thread_rate:
                    delay = t0 + sent_events / per_thread_rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                headers = dict(headers)
                if headers.pop("X-Bench-Sign", None):
                    headers.update(self._sign_sendgrid(raw))
                for attempt in range(3):
                    try:
                        conn.request("POST", path, body=raw, headers=headers)
                        response = conn.getresponse()
                        response.read()
                        if response.status != 200:
                            self.errors.append(f"{path} {response.status}")
                        break
                    except (ConnectionError, http.client.HTTPException):
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                        if attempt == 2:
                            self.errors.append(f"{path} connection failed")
                sent_events += carried

        threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes, their live children and the children they reaped.

    Linux ``/proc``: a reaped child's time moves to its parent's ``cutime``/``cstime``.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total, seen, todo = 0.0, set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15]) / ticks
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on this machine (other users' work included)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return cpu_seconds(pids)


def wait_processed(engine, total: int, timeout: float) -> float:
    """Block until ``total`` deliveries are processed (or dead); return when that happened."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with engine.connect() as conn:
            done = conn.execute(
                sa.text("SELECT count(*) FROM webhook_deliveries WHERE status IN ('processed', 'dead')")
            ).scalar()
        if done >= total:
            return time.perf_counter()
        time.sleep(0.1)
    raise SystemExit(f"timed out: {done}/{total} deliveries processed")


def latencies(engine, since_id: int) -> list[float]:
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.text(
                    "SELECT EXTRACT(EPOCH FROM processed_at - received_at) FROM webhook_deliveries "
                    "WHERE id > :since AND processed_at IS NOT NULL"
                ),
                {"since": since_id},
            )
            .scalars()
            .all()
        )
    return sorted(float(r) for r in rows)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def copy_baseline(engine, events: list[tuple[str, dict]]) -> float:
    """Seconds to COPY the same events (kind, id, JSON body) into an unindexed scratch table."""
    buf = io.StringIO()
    for i, (kind, body) in enumerate(events):
        buf.write(f"{kind}\t{i}\t{json.dumps(body).replace(chr(92), chr(92) * 2)}\n")
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("CREATE TABLE bench_copy (provider text, external_id text, body jsonb)")
        start = time.perf_counter()
        with cur.copy("COPY bench_copy FROM STDIN") as copy:
            copy.write(buf.getvalue())
        raw.commit()
        return time.perf_counter() - start
    finally:
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few thousand events")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="RQ worker processes")
    parser.add_argument("--web", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--rate", type=float, default=500, help="offered events/s for the latency phase")
    parser.add_argument(
        "--shops",
        type=int,
        default=1,
        help="spread the people over this many shops (each drained on its own)",
    )
    args = parser.parse_args()
    n = args.events or (2000 if args.quick else 100_000)
    latency_n = min(n // 3, 1000 if args.quick else 15_000)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    db_url, drop = scratch_database(
        os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    instance = tempfile.mkdtemp(prefix="c360-bench-")
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "C360_INSTANCE_PATH": instance,
        "C360_QUEUE_PREFIX": f"c360bench-{uuid.uuid4().hex[:6]}",
        "SECRET_KEY": "bench",
        "C360_PIXEL_RATE_PER_MINUTE": "1000000000",
        "C360_LOG_JSON": "0",
        "C360_DAILY_ENRICHMENT": "0",  # the workers process the inbox only, as in a measured hour
    }
    c360 = str(ROOT / ".venv" / "bin" / "c360")
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run([c360, "db", "upgrade"], env=env, check=True, capture_output=True)
        for index in range(args.shops):
            subprocess.run(
                [
                    c360,
                    "shop",
                    "create",
                    "--domain",
                    shop_domain(index),
                    "--secret",
                    SECRET,
                    "--currency",
                    "GBP",
                    "--country",
                    "GB",
                    "--sendgrid-public-key",
                    public,
                ],
                env=env,
                check=True,
                capture_output=True,
            )
        port = 18000 + random.randrange(1000)
        gunicorn = str(ROOT / ".venv" / "bin" / "gunicorn")
        procs.append(
            subprocess.Popen(
                [
                    gunicorn,
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(args.web),
                    "--threads",
                    "4",
                    "--log-level",
                    "warning",
                    "wsgi:app",
                ],
                cwd=ROOT,
                env=env,
            )
        )
        _wait_port(port)
        engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
        bulk = build_events(n, shops=args.shops)
        sender = Sender(port, key)

        print(
            f"ingest bench: {n} events (70% pixel, 15% engagement, 10% orders, 5% consents), "
            f"{args.shops} shop(s), {args.web} web + {args.workers} RQ workers, PostgreSQL + Redis, "
            f"{os.cpu_count()} CPUs "
            f"(load average before start: {os.getloadavg()[0]:.1f})"
        )
        reqs = requests_for(bulk, args.shops)
        # Phase 1 alone (no worker running): the web tier's accept rate.
        web_cpu = cpu_seconds([procs[0].pid])
        accept_s = sender.run(reqs)
        web_cpu = cpu_seconds([procs[0].pid]) - web_cpu
        deliveries = _count(engine)
        print(
            f"  accepted: {len(reqs)} requests in {accept_s:.1f}s = {len(reqs) / accept_s:,.0f} requests/s "
            f"({n / accept_s:,.0f} events/s), committed to the inbox before each 200; "
            f"web CPU {web_cpu / n * 1000:.2f} ms/event"
        )
        # Phase 2: start the workers on the full inbox: the processing rate.
        t0, pg_cpu = time.perf_counter(), postgres_cpu()
        for _ in range(args.workers):
            procs.append(
                subprocess.Popen(
                    [c360, "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        done_at = wait_processed(engine, deliveries, timeout=3600)
        process_s = done_at - t0
        worker_cpu = cpu_seconds([p.pid for p in procs[1:]])
        pg_cpu = postgres_cpu() - pg_cpu
        print(
            f"  processed: {deliveries} deliveries in {process_s:.1f}s = {deliveries / process_s:,.0f} "
            f"events/s with {args.workers} workers (profiles, orders, consents and counters updated)"
        )
        print(
            f"  CPU per processed event: workers {worker_cpu / deliveries * 1000:.2f} ms, PostgreSQL "
            f"{pg_cpu / deliveries * 1000:.2f} ms (all backends on the machine: includes others' load)"
        )

        throughput = deliveries / process_s
        offsets = n
        for rate in (args.rate, round(throughput * 0.5)):
            count = min(latency_n, max(100, int(rate * 8)))  # about 8 seconds of traffic
            paced = [
                (k, _renumber(b, offsets)) for k, b in build_events(count, seed=int(rate), shops=args.shops)
            ]
            offsets += count
            since, before = _max_id(engine), _count(engine)
            paced_reqs = requests_for(paced, args.shops)
            sender.run(paced_reqs, rate_events_per_s=rate)
            wait_processed(engine, before + len(paced), timeout=3600)
            lat = latencies(engine, since)
            print(
                f"  at {rate:,.0f} events/s offered ({len(paced)} events): accept-to-profile-updated "
                f"p50 {pct(lat, 0.5) * 1000:,.0f} ms, p99 {pct(lat, 0.99) * 1000:,.0f} ms"
            )
        copy_s = copy_baseline(engine, bulk)
        copy_rate = n / copy_s
        print(
            f"  baseline: raw COPY of the same {n} events into a scratch table: {copy_s:.2f}s = "
            f"{copy_rate:,.0f} rows/s"
        )
        print(
            f"  ratio: processed/COPY = {deliveries / process_s / copy_rate:.3f} "
            f"(COPY is {copy_rate / (deliveries / process_s):,.0f}x faster: no parsing, identity, indexes)"
        )
        with engine.connect() as conn:
            dead = conn.execute(
                sa.text("SELECT count(*) FROM webhook_deliveries WHERE status='dead'")
            ).scalar()
        if sender.errors or dead:
            print(
                f"  errors: {len(sender.errors)} refused requests {sender.errors[:3]}, {dead} dead deliveries"
            )
        engine.dispose()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop()


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM webhook_deliveries")).scalar()


def _max_id(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM webhook_deliveries")).scalar()


def _wait_port(port: int) -> None:
    for _ in range(100):
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("gunicorn did not start")


if __name__ == "__main__":
    main()
