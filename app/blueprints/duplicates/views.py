"""Views: the review list, merge and undo previews (GET), and the decisions (POST)."""

from flask import flash, g, redirect, request, url_for
from flask_login import current_user

from app.blueprints.duplicates import bp
from app.digits import whole_number
from app.errors import DomainError
from app.extensions import db
from app.htmx import is_partial_request, render_page
from app.services import duplicates_review, merge_candidates, merges
from app.tenancy import could_be_row_id
from app.web import shop_required

TEMPLATE = "duplicates/index.html"


def _page_start(text: str) -> int | None:
    """A page's ``before`` id from the query string; anything else is the first page."""
    number = whole_number(text)
    return number if number is not None and could_be_row_id(number) else None


def _pages() -> dict[str, int | None]:
    """The pages of pairs and merges the request was made from.

    Every link and form of the screen names them (in its query string): a reviewer deciding a
    pair on the third page of older pairs stays there, where the answer was the first page.
    """
    return {name: _page_start(request.args.get(name, "")) for name in ("before", "merges_before")}


def _page(block: str, status: int = 200, **extra):
    """The screen (or one of its blocks) with the current pairs and merges."""
    pages = _pages()
    pairs, pairs_next = duplicates_review.open_pairs(g.shop, before=pages["before"])
    recent, merges_next = duplicates_review.recent_merges(g.shop, before=pages["merges_before"])
    context = {
        "pairs": pairs,
        # Counted only where the list is drawn (a preview alone does not draw it).
        "pairs_total": lambda: merge_candidates.open_pair_count(g.shop),
        "pairs_next": pairs_next,
        "recent": recent,
        "merges_next": merges_next,
        "pages": pages,
        "preview": None,
        "undo": None,
        "preview_error": None,
        "refresh_review": False,
        **extra,
    }
    return render_page(TEMPLATE, block, **context), status


def _decide(action, notice: str):
    """Run a decision; a domain error re-renders the review with the reason.

    A plain form post (no JavaScript) is answered with a redirect to the screen and the outcome
    (done, or refused as decided already) as a flash: a reload then shows the screen, not the
    same decision posted again. Another shop's or a missing id keeps its 404.
    """
    try:
        action(g.shop, actor=f"user:{current_user.id}")
    except DomainError as exc:
        db.session.rollback()
        if not is_partial_request() and exc.status == 409:  # a stale decision: say so on the screen
            flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
            return redirect(url_for("duplicates.index", **_pages()), 303)
        return _page("review", exc.status, error=exc.message)
    db.session.commit()
    if not is_partial_request():
        flash(notice, "ok")
        return redirect(url_for("duplicates.index", **_pages()), 303)
    return _page("review", notice=notice)


@bp.get("/")
@shop_required()
def index():
    """List open candidates side by side and the recent merges (support agents read them; staff act)."""
    return _page("review")


@bp.get("/candidates/<int:candidate_id>/merge")
@shop_required("staff")
def merge_preview(candidate_id: int):
    """Preview a merge: who survives and what moves."""
    return _page("preview", preview=duplicates_review.merge_preview(g.shop, candidate_id))


@bp.post("/candidates/<int:candidate_id>/merge")
@shop_required("staff")
def merge(candidate_id: int):
    """Same person: merge the pair."""
    return _decide(lambda shop, actor: merge_candidates.accept(shop, candidate_id, actor), "Merged.")


@bp.post("/candidates/<int:candidate_id>/reject")
@shop_required("staff")
def reject(candidate_id: int):
    """Not the same person: close the pair for good."""
    return _decide(lambda shop, actor: merge_candidates.reject(shop, candidate_id, actor), "Kept apart.")


@bp.get("/merges/<int:merge_id>/undo")
@shop_required("staff")
def undo_preview(merge_id: int):
    """Preview an undo: what goes back to the merged-away profile.

    A merge that can no longer be undone (its window closed, a later merge came first) says
    why, and the list behind it is refreshed out of band: it still offered "Undo…".
    """
    undo = duplicates_review.undo_preview(g.shop, merge_id)
    return _page("preview", undo=undo, refresh_review=not undo["undoable"] and is_partial_request())


@bp.post("/merges/<int:merge_id>/undo")
@shop_required("staff")
def undo(merge_id: int):
    """Undo a merge while the plan's window is open."""
    return _decide(lambda shop, actor: merges.undo(shop, merge_id, actor), "Merge undone.")


PREVIEWS = {"duplicates.merge_preview", "duplicates.undo_preview"}


@bp.errorhandler(DomainError)
def domain_error(exc: DomainError):
    """A missing, another shop's or an already decided candidate/merge answers with the reason.

    A preview's reason goes in the preview box (its target), with the list refreshed out of
    band: a pair decided in another tab leaves it.
    """
    db.session.rollback()
    if request.endpoint in PREVIEWS:
        return _page("preview", exc.status, preview_error=exc.message, refresh_review=is_partial_request())
    return _page("review", exc.status, error=exc.message)
