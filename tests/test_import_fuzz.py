"""Broken lines in an order history or cells in a profile export: the line is skipped with its
reason, the command does not crash, and every good line is imported."""

from __future__ import annotations

import csv
import io
import json
import os

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.models import Identifier, Order
from tests.conftest import _truncate_all
from tests.helpers import make_shop
from tests.ingest_support import fixture
from tests.test_ingest_fuzz import MUTATION, mutate

ORDERS = [
    "shopify/orders_create_web.json",
    "shopify/orders_create_pos.json",
    "shopify/orders_create_guest.json",
]
COLUMNS = ["Email", "Phone Number", "First Name", "Last Name", "Email Marketing Consent", "SMS Consent"]
CELL = st.one_of(
    st.sampled_from(
        ["", "subscribed", "UNSUBSCRIBED", "maybe", "\x00", "=cmd()", "x" * 400, "+44 7700 900123"]
    ),
    st.text(max_size=15),
)
SETTINGS = settings(
    max_examples=int(os.environ.get("C360_FUZZ_EXAMPLES", 25)),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(
    source=st.sampled_from(ORDERS),
    mutations=st.lists(MUTATION, min_size=1, max_size=3),
    junk=st.binary(max_size=20),
)
def test_a_broken_order_line_is_skipped_and_the_good_one_imported(runner, tmp_path, source, mutations, junk):
    _truncate_all()
    shop = make_shop()
    good = fixture("shopify/orders_create_web.json")
    good.update(id=777, name="#777", order_number=777)
    broken = json.dumps(mutate(fixture(source), mutations)).encode(errors="surrogatepass")
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"\n".join([broken, junk.replace(b"\n", b" "), json.dumps(good).encode()]) + b"\n")
    result = runner.invoke(args=["backfill", "--shop", shop.domain, "--orders", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0 or " skipped." in result.output, result.output
    assert db.session.scalar(sa.select(Order.id).where(Order.external_id == "777")) is not None


@SETTINGS
@given(rows=st.lists(st.fixed_dictionaries({}, optional=dict.fromkeys(COLUMNS, CELL)), max_size=4))
def test_broken_cells_in_a_profile_export_skip_their_row_and_spare_the_good_one(runner, tmp_path, rows):
    _truncate_all()
    shop = make_shop()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    writer.writerow(
        {"Email": "good@example.org", "First Name": "Good", "Email Marketing Consent": "subscribed"}
    )
    path = tmp_path / "profiles.csv"
    path.write_text(out.getvalue(), encoding="utf-8", errors="surrogatepass")
    result = runner.invoke(args=["import-profiles", "--shop", shop.domain, "--csv", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0 or " skipped." in result.output, result.output
    found = sa.select(Identifier.id).where(Identifier.kind == "email", Identifier.value == "good@example.org")
    assert db.session.scalar(found) is not None


def test_a_row_with_bytes_that_are_not_utf8_or_a_nul_is_skipped_and_the_file_goes_on(runner, db, tmp_path):
    """A UTF-8 file ("Zoë" is UTF-8) with one stray Latin-1 byte stays UTF-8: only that row is refused."""
    shop = make_shop()
    path = tmp_path / "profiles.csv"
    path.write_bytes(
        b"Email,First Name\nzoe@example.org,Zo\xc3\xab\nlatin1@example.org,Jos\xe9\n"
        b"nul@example.org,A\x00B\ngood@example.org,Good\n"
    )
    result = runner.invoke(args=["import-profiles", "--shop", shop.domain, "--csv", str(path)])
    assert result.exit_code == 1 and "2 profiles imported, 2 rows skipped" in result.output
    assert "Some bytes of the file are not UTF-8" in result.output
    assert result.output.count("not UTF-8 text") == 2
    emails = set(db.session.scalars(sa.select(Identifier.value).where(Identifier.kind == "email")))
    assert emails == {"zoe@example.org", "good@example.org"}


def test_an_order_line_with_a_byte_that_is_not_utf8_is_skipped(runner, db, tmp_path):
    shop = make_shop()
    good = fixture("shopify/orders_create_web.json")
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b'{"id": 1, "note": "caf\xe9"}\n' + json.dumps(good).encode() + b"\n")
    result = runner.invoke(args=["backfill", "--shop", shop.domain, "--orders", str(path)])
    assert "1 order imported, 1 line skipped" in result.output
    assert "line 1: the line is not valid JSON (UnicodeDecodeError)" in result.output
