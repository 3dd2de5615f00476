"""A NUL character in a path, a query argument or a console form is a 400 with the reason.

PostgreSQL text cannot hold NUL, so such a request used to reach the database as a 500
(a webhook path naming a shop, a customer search, an identifier lookup, the login form).
"""

import pytest

SHOP_PATHS = ("/webhooks/sendgrid/a%00b.myshopify.com", "/webhooks/twilio/a%00b.myshopify.com")


@pytest.mark.parametrize("path", SHOP_PATHS)
def test_a_provider_path_naming_a_shop_with_nul_is_a_json_400(client, path):
    answer = client.post(path, data=b"[]")
    assert answer.status_code == 400
    assert answer.get_json()["error"]["message"].startswith("the path holds a NUL character")


@pytest.mark.parametrize("query", ["identifier=email:a%00b@x.co", "q=a%00b", "q%00=a"])
def test_an_api_query_argument_with_nul_is_a_json_400(client, shop, query):
    answer = client.get(f"/api/v1/profiles?{query}", headers=shop.auth)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["message"].startswith("the query string holds a NUL character")


def test_a_console_search_or_form_with_nul_is_a_400(client, auth, shop):
    auth.login_as(shop)
    search = client.get("/customers/?q=a%00b")
    assert search.status_code == 400 and "NUL character" in search.get_data(as_text=True)
    auth.logout()
    login = auth.login("a\x00b@x.co")
    assert login.status_code == 400 and "a form field holds a NUL character" in login.get_data(as_text=True)


def test_a_search_without_nul_still_answers(client, auth, shop):
    auth.login_as(shop)
    assert client.get("/customers/?q=ab").status_code == 200
    assert client.get("/api/v1/profiles?q=ab", headers=shop.auth).status_code == 200
