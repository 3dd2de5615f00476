"""Any JSON body or query to the admin API: answered with a status below 500 and, for an error, a reason."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import _truncate_all
from tests.helpers import make_shop
from tests.test_ingest_fuzz import VALUE

CALLS = [
    ("POST", "/api/v1/consents"),
    ("POST", "/api/v1/unsubscribe"),
    ("POST", "/api/v1/gate/check"),
    ("POST", "/api/v1/messages"),
    ("POST", "/api/v1/profiles/{id}/merge"),
    ("GET", "/api/v1/profiles/{id}"),
    ("GET", "/api/v1/profiles/{id}/export"),
    ("POST", "/api/v1/merge-candidates/{id}/accept"),
    ("POST", "/api/v1/merges/{id}/undo"),
    ("PUT", "/api/v1/settings"),
    ("POST", "/api/v1/segments"),
    ("POST", "/api/v1/enrichment/run"),
    ("POST", "/api/v1/profiles/{id}/erase"),
]
# Ids a client may send: one that exists, none, and numbers past what a BIGINT holds.
IDS = st.sampled_from([1, 2, 0, -1, 2**63, -(2**63) - 1, 10**30])
GOOD = {
    "identifier": "email:sarah@example.org",
    "channel": "email",
    "status": "opted_in",
    "consent_text": "Yes please",
    "source": "api",
    "captured_at": "2026-10-01T10:00:00Z",
    "profile_id": 1,
    "other_id": 2,
    "at": "2026-10-01T10:00:00Z",
}
BODY = st.one_of(
    VALUE,
    st.fixed_dictionaries(
        {}, optional={k: st.one_of(st.just(v), IDS if k.endswith("_id") else VALUE) for k, v in GOOD.items()}
    ),
)
QUERY = st.sampled_from(
    [
        "identifier=email:x@y.z",
        "identifier=",
        "identifier=bogus",
        "identifier=phone:%00",
        "q=%FF",
        "cursor=!!",
        "q=a&cursor=zz",
    ]
)


@settings(
    max_examples=int(os.environ.get("C360_FUZZ_EXAMPLES", 60)),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=st.sampled_from(CALLS), row_id=IDS, body=BODY, query=QUERY)
def test_any_body_or_query_gets_an_answer_below_500_with_a_reason(client, call, row_id, body, query):
    _truncate_all()
    shop = make_shop()
    client.post("/api/v1/consents", json={**GOOD, "identifier": "email:sarah@example.org"}, headers=shop.auth)
    method, path = call[0], call[1].format(id=row_id)
    answer = client.open(path, method=method, json=body, headers=shop.auth)
    assert answer.status_code < 500, (path, answer.get_data(as_text=True)[:300])
    if answer.status_code >= 400:
        assert answer.get_json()["error"]["message"]
    listing = client.get(f"/api/v1/profiles?{query}", headers=shop.auth)
    assert listing.status_code < 500, (query, listing.get_data(as_text=True)[:300])


def test_a_number_past_bigint_in_a_console_link_is_a_404_or_an_empty_page(client, auth, shop):
    auth.login_as(shop)
    big = 2**63
    assert client.get(f"/customers/{big}").status_code == 404
    # 405: the undo's GET preview has the same path, and Werkzeug reports the method first.
    assert client.post(f"/duplicates/merges/{big}/undo").status_code in (404, 405)
    answer = client.post("/api/v1/consents", json=GOOD, headers=shop.auth)
    profile_id = answer.get_json()["profile_id"] if answer.status_code < 300 else 1
    for section in ("timeline", "orders"):
        page = client.get(f"/customers/{profile_id}/{section}?page={10**30}")
        assert page.status_code in (200, 404), (section, page.status_code)
