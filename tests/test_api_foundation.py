"""API basics: errors, settings, OpenAPI."""

import pytest

from app.blueprints.api.openapi import OPERATIONS, api_routes


def test_openapi_document_is_public_and_lists_the_settings_calls(client, db):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert {"get", "put"} <= set(doc["paths"]["/settings"])


def test_openapi_describes_what_the_calls_answer(client, db):
    """The document said /openapi.json needs a token, left out the manual merge's other_id, and did not
    mention the 403 a plan-gated setting answers or the 400 of a cursor it did not hand out."""
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    itself = paths["/openapi.json"]["get"]
    assert itself["security"] == [] and "401" not in itself["responses"]
    merge = paths["/profiles/{id}/merge"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert merge["required"] == ["other_id"]
    assert "plan_required" in paths["/settings"]["put"]["responses"]["403"]["description"]
    for path in ("/merges", "/merge-candidates"):
        assert "bad_cursor" in paths[path]["get"]["responses"]["400"]["description"]


def test_every_api_route_is_described_in_openapi(app):
    with app.app_context():
        missing = api_routes() - set(OPERATIONS)
    assert missing == set(), f"describe these routes in app/blueprints/api/openapi.py: {missing}"


def test_errors_use_the_contract_shape(client, shop):
    body = client.get("/api/v1/profiles/999999", headers=shop.auth).get_json()
    assert body == {"error": {"code": "not_found", "message": "profile 999999 not found"}}


def test_get_settings_returns_the_defaults(client, shop):
    settings = client.get("/api/v1/settings", headers=shop.auth).get_json()
    assert settings["caps"] == {"global_daily": 3, "email": 5, "sms": 1, "whatsapp": 2, "push": 3}
    assert settings["quiet_hours"]["start"] == "21:00" and settings["timezone"] == "Europe/London"


def test_put_settings_merges_only_the_given_keys(client, shop):
    response = client.put("/api/v1/settings", headers=shop.auth, json={"caps": {"sms": 2}})
    assert response.status_code == 200
    settings = client.get("/api/v1/settings", headers=shop.auth).get_json()
    assert settings["caps"]["sms"] == 2 and settings["caps"]["email"] == 5


def test_put_settings_merges_quiet_hours_regions_and_null_removes_one(client, shop):
    def regions(patch: dict) -> dict:
        response = client.put("/api/v1/settings", headers=shop.auth, json={"quiet_hours": {"regions": patch}})
        assert response.status_code == 200, response.get_json()
        return client.get("/api/v1/settings", headers=shop.auth).get_json()["quiet_hours"]["regions"]

    regions({"AU": {"start": "20:00", "end": "08:00"}})
    assert set(regions({"NZ": {"start": "22:00", "end": "07:00"}})) == {"AU", "NZ"}
    assert regions({"AU": {"end": "07:30"}})["AU"] == {"start": "20:00", "end": "07:30"}
    assert set(regions({"AU": None})) == {"NZ"}


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"caps": {"sms": -1}}, "caps.sms"),
        # Beyond any policy: a typo that would be stored and computed with.
        ({"caps": {"sms": 10**30}}, "caps.sms"),
        ({"lifecycle": {"at_risk_days": 10**20, "churned_days": 10**21}}, "lifecycle.at_risk_days"),
        ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "quiet_hours"),
        ({"quiet_hours": {"start": "25:00"}}, "quiet_hours.start"),
        ({"lifecycle": {"at_risk_days": 90, "churned_days": 90}}, "lifecycle"),
        ({"fatigue_threshold": 1.5}, "fatigue_threshold"),
        ({"timezone": "Nowhere/Else"}, "time zone"),
        ({"timezone": "Europe/" + "x" * 300}, "time zone"),
        ({"timezone": "localtime"}, "time zone"),
        ({"timezone": "posixrules"}, "time zone"),
        ({"colour": "blue"}, "unknown settings"),
        ({"identity": {"max_people_per_identifier": 1}}, "identity.max_people_per_identifier"),
        ({"identity": {"max_identifiers_per_kind": "ten"}}, "identity.max_identifiers_per_kind"),
        ({"identity": {"blocked_values": ["x"] * 1001}}, "identity.blocked_values holds at most 1,000"),
        ({"identity": {"blocked_values": ["x" * 321]}}, "identity.blocked_values holds at most 1,000"),
        ({"caps": None}, "caps must be an object"),
        ({"caps": []}, "caps must be an object"),
        ({"identity": None}, "identity must be an object"),
        ({"lifecycle": None}, "lifecycle must be an object"),
        ({"quiet_hours": {"regions": []}}, "quiet_hours.regions"),
        ({"quiet_hours": {"regions": None}}, "quiet_hours.regions"),
        ({"quiet_hours": {"regions": {"ZZ": {"start": "20:00", "end": "08:00"}}}}, "no country's code"),
    ],
)
def test_put_settings_rejects_bad_values_with_a_422_reason(client, shop, patch, field):
    response = client.put("/api/v1/settings", headers=shop.auth, json=patch)
    assert response.status_code == 422
    body = response.get_json()["error"]
    assert body["code"] == "invalid" and field.split(".")[0] in body["message"]


def test_a_mistyped_setting_name_is_refused_and_not_stored(client, shop):
    for patch, name in (
        ({"identity": {"max_identifers_per_kind": 5}}, "identity.max_identifers_per_kind"),
        ({"caps": {"fax": 1}}, "caps.fax"),
    ):
        response = client.put("/api/v1/settings", headers=shop.auth, json=patch)
        assert response.status_code == 422
        assert response.get_json()["error"]["message"] == f"unknown settings [{name!r}]"
    stored = client.get("/api/v1/settings", headers=shop.auth).get_json()
    assert "max_identifers_per_kind" not in stored["identity"] and "fax" not in stored["caps"]


def test_put_settings_needs_a_json_object(client, shop):
    response = client.put("/api/v1/settings", headers=shop.auth, data="nope", content_type="application/json")
    assert response.status_code == 400


def test_free_plan_cannot_set_custom_lifecycle_windows(client, db):
    from tests.helpers import make_shop

    free = make_shop("free.myshopify.com", plan="free")
    response = client.put(
        "/api/v1/settings", headers=free.auth, json={"lifecycle": {"at_risk_days": 20, "churned_days": 60}}
    )
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "plan_required"


def test_a_free_shop_may_put_back_the_settings_it_was_given(client, db):
    """GET, change the caps, PUT the whole body: the unchanged default windows were refused with a 403."""
    from tests.helpers import make_shop

    free = make_shop("free.myshopify.com", plan="free")
    body = client.get("/api/v1/settings", headers=free.auth).get_json()
    body["caps"]["global_daily"] = 2
    response = client.put("/api/v1/settings", headers=free.auth, json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["caps"]["global_daily"] == 2
    same = {"lifecycle": {"at_risk_days": 30, "churned_days": 90}}
    assert client.put("/api/v1/settings", headers=free.auth, json=same).status_code == 200


def test_the_smallest_fatigue_threshold_blocks_after_one_send_and_never_fails_a_check(client, shop):
    from tests.gate_helpers import make_profile

    profile = make_profile(shop.id)
    assert (
        client.put("/api/v1/settings", headers=shop.auth, json={"fatigue_threshold": 1e-12}).status_code
        == 200
    )
    check = {"profile_id": profile.id, "channel": "email"}
    first = client.post("/api/v1/gate/check", headers=shop.auth, json=check)
    assert first.status_code == 200 and first.get_json()["allowed"] is True


def test_openapi_describes_an_events_fields_and_the_types_the_api_acts_on(client):
    """The contract names the sources but not their type names: a client learns them here."""
    event = client.get("/api/v1/openapi.json").get_json()["paths"]["/events"]["post"]
    schema = event["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["type", "occurred_at", "identifiers"]
    assert set(schema["properties"]["identifiers"]["properties"]) == {
        "email",
        "phone",
        "shopify_customer_id",
        "web_client_id",
        "amazon_buyer_id",
        "ebay_user",
    }
    for named in ("push.<", "order.placed", "order.refunded"):
        assert named in schema["properties"]["type"]["description"]
    assert {"202", "400"} <= set(event["responses"])


def test_openapi_names_every_status_a_merge_candidate_list_takes(client, db):
    from app.blueprints.api.identity import STATUSES

    doc = client.get("/api/v1/openapi.json").get_json()
    [status] = [p for p in doc["paths"]["/merge-candidates"]["get"]["parameters"] if p["name"] == "status"]
    assert status["schema"]["enum"] == list(STATUSES) and "superseded" in STATUSES


def test_openapi_gives_the_merge_calls_the_statuses_they_answer(client, shop):
    """A manual merge answers 201; every merge and undo call may refuse with 409 (already merged,
    window closed, a later merge first); a merged-away profile answers 301."""
    from tests.gate_helpers import make_profile

    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    keep, lose = (make_profile(shop.id, f"{n}@shopper.test", None).id for n in ("keep", "lose"))
    merged = client.post(f"/api/v1/profiles/{keep}/merge", json={"other_id": lose}, headers=shop.auth)
    assert str(merged.status_code) in paths["/profiles/{id}/merge"]["post"]["responses"]
    for path in ("/merge-candidates/{id}/accept", "/merge-candidates/{id}/reject", "/profiles/{id}/merge"):
        assert "409" in paths[path]["post"]["responses"], path
    assert "409" in paths["/merges/{id}/undo"]["post"]["responses"]
    gone = client.get(f"/api/v1/profiles/{lose}", headers=shop.auth)
    moved = paths["/profiles/{id}"]["get"]["responses"]["301"]["content"]["application/json"]["schema"]
    assert gone.status_code == 301 and sorted(moved["required"]) == sorted(gone.get_json())
