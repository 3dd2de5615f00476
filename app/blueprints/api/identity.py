"""API: merge candidates, manual merges, the merge history and undo (CONTRACT.md §3)."""

from flask import g, jsonify, request

from app.blueprints.api import bp, json_body
from app.digits import whole_number
from app.errors import ValidationFailed
from app.extensions import db
from app.services import merge_candidates, merges
from app.services.search_cursor import CURSOR_MESSAGE, BadCursor
from app.tenancy import could_be_row_id

STATUSES = ("open", "accepted", "rejected", "merged", "superseded", "all")
PAGE = 100  # candidates or merges per page


def _actor() -> str:
    return f"api-token:shop-{g.api_shop.id}"


@bp.get("/merge-candidates")
def list_merge_candidates():
    """The shop's merge candidates (``?status=open`` by default), newest first, a page at a time."""
    status = request.args.get("status", "open")
    if status not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}", field="status")
    rows, cursor = _page(
        merge_candidates.list_candidates(g.api_shop, status, PAGE + 1, before=_whole_arg("cursor"))
    )
    return jsonify(
        {"merge_candidates": merge_candidates.candidates_json(g.api_shop, rows), "next_cursor": cursor}
    )


@bp.post("/merge-candidates/<int:candidate_id>/accept")
def accept_merge_candidate(candidate_id: int):
    """Same person: merge the two profiles."""
    row = merge_candidates.accept(g.api_shop, candidate_id, _actor())
    db.session.commit()
    return jsonify({"merge": merge_candidates.merge_json(row)})


@bp.post("/merge-candidates/<int:candidate_id>/reject")
def reject_merge_candidate(candidate_id: int):
    """Not the same person: close the candidate and remember the decision."""
    cand = merge_candidates.reject(g.api_shop, candidate_id, _actor())
    db.session.commit()
    return jsonify({"merge_candidate": merge_candidates.candidate_json(g.api_shop, cand)})


@bp.post("/profiles/<int:profile_id>/merge")
def merge_profile(profile_id: int):
    """Merge ``other_id`` and this profile; the survivor follows the trust rule."""
    other = json_body().get("other_id")
    if isinstance(other, bool) or not isinstance(other, int):
        raise ValidationFailed("other_id must be a profile id (an integer)", field="other_id")
    row = merges.merge_profiles(g.api_shop, profile_id, other, reason="manual", actor=_actor())
    db.session.commit()
    return jsonify({"merge": merge_candidates.merge_json(row)}), 201


@bp.get("/merges")
def list_merges():
    """The shop's merges, newest first, with whether each can still be undone; a page at a time.

    ``?cursor=`` (the ``next_cursor`` of the page before) goes on, ``?profile_id=`` keeps the
    merges that kept or merged away that profile (why is this customer one, or gone?).
    """
    rows, cursor = _page(
        merge_candidates.list_merges(
            g.api_shop, PAGE + 1, before=_whole_arg("cursor"), profile_id=_whole_arg("profile_id")
        )
    )
    return jsonify({"merges": merge_candidates.merges_json(g.api_shop, rows), "next_cursor": cursor})


def _page(rows: list) -> tuple[list, str | None]:
    """A page of rows read one past ``PAGE`` (newest first), and the cursor of the next page."""
    if len(rows) > PAGE:
        return rows[:PAGE], str(rows[PAGE - 1].id)
    return rows, None


def _whole_arg(name: str) -> int | None:
    """A query argument that must be a row id, or None when absent."""
    value = request.args.get(name)
    if value in (None, ""):
        return None
    number = whole_number(value)
    if number is None or not could_be_row_id(number):
        if name == "cursor":  # as GET /profiles answers a cursor it did not hand out
            raise BadCursor(CURSOR_MESSAGE)
        raise ValidationFailed(f"{name} must be a whole number", field=name)
    return number


@bp.post("/merges/<int:merge_id>/undo")
def undo_merge(merge_id: int):
    """Undo a merge within the plan's window (409 with the reason after it)."""
    row = merges.undo(g.api_shop, merge_id, _actor())
    db.session.commit()
    return jsonify({"merge": merge_candidates.merge_json(row)})
