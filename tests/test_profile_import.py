"""``c360 import-profiles``: a Klaviyo-style CSV never lifts a later opt-out."""

import datetime as dt

from app.extensions import db
from app.models.base import utcnow
from app.services.consent import channel_states, unsubscribe_all
from app.services.identifiers import find_profile_by_identifier

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
