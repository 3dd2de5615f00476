"""``c360 import-profiles``: a Klaviyo-style CSV never lifts a later opt-out."""

import datetime as dt

import pytest

from app.extensions import db
from app.models.base import utcnow
from app.services.consent import channel_states, unsubscribe_all
from app.services.identifiers import Ident, find_profile_by_identifier
from app.services.ingest.two_pass import CompactSignals
from app.services.resolution import Signal, event_ref

CSV = """Email,Phone Number,First Name,Last Name,Email Marketing Consent,SMS Consent
ana@shop-customers.net,+44 7700 900555,Ana,Lopez,SUBSCRIBED,NEVER_SUBSCRIBED
ben@shop-customers.net,,Ben,Ng,UNSUBSCRIBED,
,,No,Contact,SUBSCRIBED,
cy@shop-customers.net,,Cy,Ray,MAYBE,
"""


def _write(tmp_path, text=CSV):
    path = tmp_path / "profiles.csv"
    path.write_text(text)
    return str(path)


def test_import_creates_profiles_with_names_and_imported_consent(runner, shop, tmp_path):
    result = runner.invoke(args=["import-profiles", "--shop", shop.domain, "--csv", _write(tmp_path)])
    assert "2 profiles imported, 2 rows skipped." in result.output
    assert "row 4: no usable Email or Phone Number" in result.output and "row 5:" in result.output
    assert result.exit_code == 1
    ana = find_profile_by_identifier(shop.model, "phone", "07700 900555")
    assert (ana.first_name, ana.last_name) == ("Ana", "Lopez")
    assert channel_states(ana)["email"] == "opted_in" and channel_states(ana)["sms"] is None
    ben = find_profile_by_identifier(shop.model, "email", "ben@shop-customers.net")
    assert channel_states(ben)["email"] == "opted_out"


def test_an_sms_opt_in_without_a_readable_phone_is_not_kept_for_a_number_given_later(runner, shop, tmp_path):
    """The row's phone could not be read: its SMS opt-in belonged to that number, not to whichever
    phone the customer's next order brings, so it is not recorded (the email opt-in is)."""
    text = (
        "Email,Phone Number,Email Marketing Consent,SMS Consent\nnat@ex.com,notaphone,SUBSCRIBED,SUBSCRIBED\n"
    )
    result = runner.invoke(args=["import-profiles", "--shop", shop.domain, "--csv", _write(tmp_path, text)])
    assert "1 profile imported" in result.output
    nat = find_profile_by_identifier(shop.model, "email", "nat@ex.com")
    assert channel_states(nat)["email"] == "opted_in" and channel_states(nat)["sms"] is None


def test_an_import_never_lifts_an_earlier_unsubscribe(runner, shop, tmp_path):
    runner.invoke(args=["import-profiles", "--shop", shop.domain, "--csv", _write(tmp_path)])
    ana = find_profile_by_identifier(shop.model, "email", "ana@shop-customers.net")
    unsubscribe_all(ana, source="api", captured_at=utcnow() - dt.timedelta(seconds=1))
    db.session.commit()
    runner.invoke(args=["import-profiles", "--shop", shop.domain, "--csv", _write(tmp_path)])
    db.session.expire_all()
    ana = find_profile_by_identifier(shop.model, "email", "ana@shop-customers.net")
    assert ana.globally_unsubscribed and channel_states(ana)["email"] == "opted_out"


def test_a_csv_without_email_or_phone_columns_is_refused_clearly(runner, shop, tmp_path):
    result = runner.invoke(
        args=["import-profiles", "--shop", shop.domain, "--csv", _write(tmp_path, "Name\nAna\n")]
    )
    assert result.exit_code != 0 and "Email or a Phone Number column" in result.output


# --------------------------------------------------------------------------- the two-pass import


def people_csv(rows: int = 40) -> list[str]:
    """Rows of a profile export: email only, phone only, both; a person on two rows (email alone,
    then with the phone); a household phone on two emails; consents; a row with no contact, an
    unknown consent value and a row whose only email is junk."""
    lines = ["Email,Phone Number,First Name,Last Name,Email Marketing Consent,SMS Consent"]
    consent = ["SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED", ""]
    for n in range(rows):
        email = f"p{n % 15}@mail.uk" if n % 5 != 4 else ""
        phone = f"+44 7700 9{n % 15:05d}" if n % 3 == 0 or n % 5 == 4 else ""
        if n % 15 == 7:
            phone = "+44 7700 900777"  # the household's
        lines.append(
            f"{email},{phone},F{n % 15},L{n % 15},{consent[n % 4]},{consent[(n + 1) % 4] if phone else ''}"
        )
    lines += [",,No,Contact,SUBSCRIBED,", "p1@mail.uk,,P,One,MAYBE,", "test@test.com,,Junk,Row,SUBSCRIBED,"]
    lines.append("p8@mail.uk,+44 7700 900777,F8,L8,,SUBSCRIBED")  # the household's other email
    return [line + "\n" for line in lines]


def _known_people(shop, at) -> None:
    """A shop that already holds some of the export's people (the import then resolves incrementally)."""
    from app.services.identifiers import Ident
    from app.services.resolution import resolve

    for n in (2, 3, 9):
        resolve(shop, [Ident("email", f"p{n}@mail.uk")], source="shopify", seen_at=at - dt.timedelta(days=1))
    db.session.commit()


def _one_by_one(shop, lines: list[str], at) -> list[int]:
    """The reference: each row resolved and written on its own savepoint, as the import did before."""
    import csv

    from app.services.ingest import profile_import

    failed = []
    for number, row in enumerate(csv.DictReader(lines), start=2):
        try:
            with db.session.begin_nested():
                profile_import.import_row(shop, profile_import.check_row(shop, row, at, f"ref-{number}"))
        except ValueError:
            failed.append(number)
    db.session.commit()
    return failed


@pytest.mark.parametrize(("batch", "known"), [(7, False), (200, False), (7, True)])
def test_an_import_ends_as_its_rows_imported_one_by_one(app, db, monkeypatch, batch, known):
    """The whole file's people resolved at once, then names and consent a batch at a time, leave
    the profiles, names, search texts, consent records and states that row by row leaves."""
    from app.models import Shop
    from app.services.ingest import profile_import, two_pass
    from tests.helpers import make_shop
    from tests.test_ingest_batch import snapshot

    at = utcnow()
    monkeypatch.setattr(profile_import, "utcnow", lambda: at)
    monkeypatch.setattr(two_pass.TwoPassImport, "batch", batch)
    lines = people_csv()
    reference = db.session.get(Shop, make_shop(f"ref{batch}{known}.myshopify.com").id)
    shop = db.session.get(Shop, make_shop(f"imp{batch}{known}.myshopify.com").id)
    if known:
        _known_people(reference, at)
        _known_people(shop, at)
    skipped = _one_by_one(reference, lines, at)
    told = []
    result = profile_import.import_profiles(shop, lambda: iter(lines), progress=told.append)
    assert [n for n, _ in result.failed] == skipped
    assert result.applied == len(lines) - 1 - len(skipped)
    assert sum(told) == len(lines) - 1
    assert snapshot(shop.id) == snapshot(reference.id)


def test_a_row_whose_only_contact_is_junk_is_reported_and_the_rest_imported(app, db):
    """``test@test.com`` names nobody: the row is skipped with its reason, the rest are imported."""
    from app.models import Shop
    from app.services.ingest import profile_import
    from tests.helpers import make_shop

    shop = db.session.get(Shop, make_shop("junk-import.myshopify.com").id)
    lines = [
        "Email,Phone Number,First Name,Last Name,Email Marketing Consent,SMS Consent\n",
        "test@test.com,,Junk,Row,SUBSCRIBED,\n",
        "real@mail.uk,,Real,Person,SUBSCRIBED,\n",
    ]
    result = profile_import.import_profiles(shop, lambda: iter(lines))
    assert result.failed == [(2, "no usable Email or Phone Number")] and result.applied == 1
    assert find_profile_by_identifier(shop, "email", "real@mail.uk").first_name == "Real"


def test_an_import_resolves_its_people_in_a_few_statements_not_a_round_of_queries_per_row(app, db):
    """The identity statements of an import do not grow with its rows."""
    from app.models import Shop
    from app.services.ingest import profile_import
    from tests.helpers import make_shop, statements

    def resolving(rows: int, name: str) -> int:
        shop = db.session.get(Shop, make_shop(name).id)
        lines = people_csv(rows)
        with statements() as sent:
            profile_import.import_profiles(shop, lambda: iter(lines))
        return sum(1 for s in sent if "identifier" in s.split("(")[0].split(" WHERE ")[0])

    assert resolving(45, "many-rows.myshopify.com") == resolving(15, "few-rows.myshopify.com")


def test_a_batch_the_database_refuses_is_redone_row_by_row(app, db, monkeypatch):
    """One batch that fails is rolled back and redone a row at a time: nothing is lost."""
    from app.models import Shop
    from app.services.ingest import profile_import
    from tests.helpers import make_shop
    from tests.test_ingest_batch import snapshot

    at = utcnow()
    monkeypatch.setattr(profile_import, "utcnow", lambda: at)
    lines = people_csv()
    reference = db.session.get(Shop, make_shop("redo-ref.myshopify.com").id)
    skipped = _one_by_one(reference, lines, at)

    def refusing(shop, rows):
        raise RuntimeError("lock timeout")

    monkeypatch.setattr(profile_import, "_import_batch", refusing)
    shop = db.session.get(Shop, make_shop("redo-imp.myshopify.com").id)
    result = profile_import.import_profiles(shop, lambda: iter(lines))
    assert [n for n, _ in result.failed] == skipped
    assert snapshot(shop.id) == snapshot(reference.id)


def test_the_first_pass_holds_each_identifier_once_and_the_evidence_as_its_name():
    compact = CompactSignals()
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    idents = lambda: (Ident("email", "ann@shopper.test"), Ident("phone", "+447700900123"))  # noqa: E731
    first = compact(Signal(idents(), "shopify", at, {"order": "5001", "delivery": None}))
    again = compact(Signal(idents(), "shopify", at, {"order": "5002", "delivery": None}))
    assert first.idents is again.idents  # one tuple, one pair of Idents for every order of the customer
    assert (first.evidence, again.evidence) == ("order: 5001", "order: 5002")
    assert event_ref(first.evidence) == event_ref({"order": "5001", "delivery": None})
