"""Login, logout, CSRF and the customers list."""

from tests.helpers import PASSWORD


def test_login_with_right_password_reaches_customers(client, auth, shop):
    response = auth.login_as(shop)
    assert response.status_code == 302
    assert client.get("/customers/").status_code == 200


def test_wrong_password_shows_a_clear_error(client, auth, shop):
    response = auth.login(shop.owner_email, "wrong password")
    assert response.status_code == 401
    assert b"Wrong email or password." in response.data


def test_unknown_email_gets_the_same_error(client, auth, shop):
    response = auth.login("nobody@example.com", PASSWORD)
    assert b"Wrong email or password." in response.data


def test_login_without_csrf_token_is_rejected(client, shop):
    response = client.post("/login", data={"email": shop.owner_email, "password": PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert client.get("/customers/").status_code == 302
