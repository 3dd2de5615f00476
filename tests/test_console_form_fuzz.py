"""Any text typed into the console's forms: a page with the reason, never a 500, and nothing saved
that the next page cannot show."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import _truncate_all
from tests.helpers import AuthActions, make_shop

TYPED = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1e400",
            "nan",
            "inf",
            "-inf",
            "99999999999999999999",
            "25:99",
            "7",
            "0.5",
            "Europe/London",
            "Mars/Olympus",
            "\x00",
            "AU 20:00-08:00",
            "AU",
            "xx 1-2-3",
            "12:00",
        ]
    ),
    st.text(max_size=20),
)
VALID = {
    "timezone": "Europe/London",
    "cap_global_daily": "3",
    "cap_email": "2",
    "cap_sms": "1",
    "cap_whatsapp": "1",
    "cap_push": "2",
    "fatigue_threshold": "0.5",
    "quiet_start": "21:00",
    "quiet_end": "08:00",
    "blocked_values": "test@test.com",
    "max_identifiers_per_kind": "10",
    "max_people_per_identifier": "3",
    "at_risk_days": "90",
    "churned_days": "180",
    "regions": "AU 20:00-08:00",
}


@settings(
    max_examples=int(os.environ.get("C360_FUZZ_EXAMPLES", 40)),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.dictionaries(st.sampled_from(sorted(VALID)), TYPED, min_size=1, max_size=2), zone=TYPED)
def test_any_text_in_the_settings_and_time_zone_forms_is_answered_without_a_500(client, changes, zone):
    _truncate_all()
    shop = make_shop(plan="agency")
    AuthActions(client).login_as(shop)
    saved = client.post("/settings/", data={**VALID, **changes})
    assert saved.status_code < 500
    assert client.get("/settings/").status_code == 200
    answer = client.post(
        "/api/v1/consents",
        json={
            "identifier": "email:a@b.co",
            "channel": "email",
            "status": "opted_in",
            "consent_text": "x",
            "source": "api",
            "captured_at": "2026-10-01T10:00:00Z",
        },
        headers=shop.auth,
    )
    profile_id = answer.get_json()["profile_id"]
    assert client.post(f"/customers/{profile_id}/timezone", data={"timezone": zone}).status_code < 500
    assert client.get(f"/customers/{profile_id}").status_code == 200
    assert client.get("/dashboard").status_code == 200
    check = client.post(
        "/api/v1/gate/check", json={"profile_id": profile_id, "channel": "sms"}, headers=shop.auth
    )
    assert check.status_code == 200
