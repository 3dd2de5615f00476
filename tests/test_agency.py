"""The agency roll-up: every managed shop, and nothing of any other shop."""

from app.extensions import db
from app.models import Profile
from app.services import accounts
from tests.helpers import PASSWORD, make_shop


def _agency_user_with_two_shops():
    one = make_shop("one.myshopify.com", plan="agency", role="agency")
    two = make_shop("two.myshopify.com", plan="agency")
    accounts.create_user(one.owner_email, PASSWORD, two.model, "agency")
    db.session.add_all(
        [
            Profile(shop_id=one.id, lifecycle_stage="loyal"),
            Profile(shop_id=two.id, lifecycle_stage="churned"),
            Profile(shop_id=two.id, lifecycle_stage="churned"),
        ]
    )
    db.session.commit()
    return one, two


def test_agency_user_sees_every_managed_shop_with_its_own_totals(client, auth, db):
    one, _ = _agency_user_with_two_shops()
    stranger = make_shop("stranger.myshopify.com", plan="agency")
    db.session.add(Profile(shop_id=stranger.id))
    db.session.commit()
    auth.login(one.owner_email)
    page = client.get("/agency/").data.decode()
    assert "one.myshopify.com" in page and "two.myshopify.com" in page
    assert "stranger.myshopify.com" not in page
    fragment = client.get("/agency/", headers={"HX-Request": "true"}).data.decode()
    assert "<html" not in fragment and 'id="rollup"' in fragment


def test_agency_appears_in_the_navigation_only_for_agency_plans(client, auth, db):
    one, _ = _agency_user_with_two_shops()
    auth.login(one.owner_email)
    assert b'href="/agency/"' in client.get("/dashboard").data
    client.post("/logout")
    small = make_shop("small.myshopify.com", plan="starter")
    auth.login(small.owner_email)
    assert b'href="/agency/"' not in client.get("/dashboard").data
    assert client.get("/agency/").status_code == 403


def test_each_shops_revenue_is_labelled_with_its_own_currency(client, auth, db):
    london = make_shop("london.myshopify.com", plan="agency", role="agency", currency="GBP")
    boston = make_shop("boston.myshopify.com", plan="agency", currency="USD")
    accounts.create_user(london.owner_email, PASSWORD, boston.model, "agency")
    db.session.commit()
    auth.login(london.owner_email)
    page = client.get("/agency/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "0.00 GBP" in page and "0.00 USD" in page
