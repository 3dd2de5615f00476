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


def test_ten_failed_sign_ins_in_a_minute_make_the_account_wait(client, auth, db, monkeypatch):
    """Password guessing is slowed to ten tries a minute per account; other accounts are untouched."""
    import time
    import uuid

    from app.blueprints.webhooks import ratelimit

    held = time.time()
    monkeypatch.setattr(ratelimit, "_clock", lambda: held)  # one minute's window, however long the test

    from tests.helpers import make_shop

    run = uuid.uuid4().hex[:8]  # Redis keeps the counts a minute or two, across test runs too
    target, bystander = make_shop(f"guessed-{run}.myshopify.com"), make_shop(f"bystander-{run}.myshopify.com")
    for _ in range(10):
        assert auth.login(target.owner_email, "guess").status_code == 401
    refused = auth.login(target.owner_email, PASSWORD)
    assert refused.status_code == 429 and b"Too many failed sign-ins" in refused.data
    assert client.get("/customers/").status_code == 302  # not signed in
    assert auth.login(bystander.owner_email, PASSWORD).status_code == 302


def test_the_sign_in_wait_holds_across_processes_without_redis(client, auth, db, monkeypatch):
    """Without Redis the failures were counted in each gunicorn process: with two, the eleventh try
    (the right password) signed in. They are counted on the account, in the database."""
    import time

    from app.blueprints.webhooks import ratelimit
    from tests.helpers import make_shop

    held = time.time()
    monkeypatch.setattr(ratelimit, "_clock", lambda: held)
    target = make_shop("guessed-twice.myshopify.com")
    for _ in range(10):
        assert auth.login(target.owner_email, "guess").status_code == 401
        ratelimit._local.clear()  # the next try lands in the other process, which counted nothing
    assert auth.login(target.owner_email, PASSWORD).status_code == 429
    monkeypatch.setattr(ratelimit, "_clock", lambda: held + 60)  # the next minute
    assert auth.login(target.owner_email, PASSWORD).status_code == 302
