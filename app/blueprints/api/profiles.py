"""API: profile lookup by identifier, search, and one profile."""

from flask import g, jsonify, request, url_for

from app.blueprints.api import api_error, bp
from app.models import Profile
from app.services.identifiers import KINDS, find_profile_by_identifier, live_profile, lookup_kind
from app.services.profile_search import search_profiles
from app.services.profile_view import profile_document
from app.tenancy import get_scoped_or_raise


@bp.get("/profiles")
def list_profiles():
    """``?identifier=KIND:VALUE`` finds one profile; ``?q=`` searches, newest first, by keyset.

    ``?cursor=`` is the previous page's ``next_cursor``; one it did not hand out is a
    400 ``bad_cursor`` (read as the start, a client would loop for ever).
    """
    identifier = request.args.get("identifier")
    if identifier is not None:  # given empty, it is a malformed lookup, not a listing
        kind, sep, value = identifier.partition(":")
        if not sep or not value:
            return api_error(400, "bad_identifier", "identifier must look like KIND:VALUE")
        if lookup_kind(kind) is None:  # a typo ("emial:…") is the client's mistake, not "nobody"
            return api_error(400, "bad_identifier", f"unknown identifier kind; one of {', '.join(KINDS)}")
        profile = find_profile_by_identifier(g.api_shop, kind, value)
        if profile is None:
            return api_error(404, "not_found", "no profile holds that identifier")
        return jsonify(profile_document(g.api_shop, profile))
    page = search_profiles(
        g.api_shop.id, request.args.get("q", ""), cursor=request.args.get("cursor"), region=g.api_shop.country
    )
    return jsonify(
        {
            "profiles": [profile_document(g.api_shop, p) for p in page.items],
            "next_cursor": page.next_cursor,
        }
    )


@bp.get("/profiles/<int:profile_id>")
def get_profile(profile_id: int):
    """One profile; a merged-away id answers 301 pointing at the profile it survives as today.

    The survivor at the end of the chain (a profile merged into one merged since is
    pointed at the last), and never cached: an undo makes the id answer for itself again.
    """
    profile = get_scoped_or_raise(Profile, g.api_shop.id, profile_id, "profile")
    if profile.merged_into_id:
        survivor = live_profile(profile)
        response = jsonify({"id": profile.id, "merged_into": survivor.id})
        response.status_code = 301
        response.headers["Location"] = url_for("api.get_profile", profile_id=survivor.id)
        response.headers["Cache-Control"] = "no-store"
        return response
    return jsonify(profile_document(g.api_shop, profile))
