"""A submission's diff on its page, and what a reviewer does on its lines:
more context around a hunk (read from git), unified or side by side (asked
in the query string, then remembered in the person's login session), a
comment on a line, and "request changes".

A line is named by the file's place in the diff, its side and its number;
the view finds that line in the diff it parses from the stored patch, and
a line the diff does not show is refused (400). Paths are never taken from
the request.
"""

from collections.abc import Iterable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import get_template
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_POST

from agents.models import ReviewComment, Submission
from agents.moves import outcomes
from agents.reports import diffs
from workspace import audit, gitops, roles

VIEW_KEY = "corral:diff-view"  # in request.session: the person's last choice
COMMENT_CHARS = 4000


def view_mode(request: HttpRequest) -> str:
    """unified or split: the query string's, kept for next time, else the last one."""
    asked = request.GET.get("view")
    if asked in diffs.VIEWS:
        if request.session.get(VIEW_KEY) != asked:
            request.session[VIEW_KEY] = asked
        return asked
    kept = request.session.get(VIEW_KEY)
    return kept if kept in diffs.VIEWS else "unified"


def may_comment(sub: Submission, user: Any) -> bool:
    return (
        sub.status == Submission.Status.AWAITING_REVIEW
        and user.has_perm(roles.REVIEW)
        and not outcomes.reviews_own_bead(sub, user)
    )


def diff_context(request: HttpRequest, sub: Submission) -> dict[str, Any]:
    """What the submission page needs to draw its diff and the follow-up of the
    last review's comments."""
    diff = diffs.highlighted(sub.session.patch or "")
    diffs.attach(diff, sub.review_comments.select_related("author"))
    view, may = view_mode(request), may_comment(sub, request.user)
    for f in diff.files:
        f.table = file_table(f, view, may, sub.pk) if f.hunks else mark_safe("")
    return {
        "diff": diff,
        "view": view,
        "may_comment": may,
        "followed": diffs.followed_for(sub),
        "lines_shown": diffs.LINES_SHOWN,
    }


def int_param(request: HttpRequest, name: str) -> int:
    try:
        return int(request.GET.get(name) or request.POST.get(name) or "")
    except ValueError:
        raise diffs.ContextError(f"{name}: give a whole number") from None


@login_required
@require_GET
def more_context(request: HttpRequest, pk: int) -> HttpResponse:
    """Hidden lines of a gap between hunks, from the base commit's blob (htmx)."""
    sub = get_object_or_404(Submission.objects.select_related("session", "repository"), pk=pk)
    diff = diffs.parse(sub.session.patch or "")
    try:
        names = ("file", "hunk", "start", "end")
        file, hunk, start, end = (int_param(request, n) for n in names)
        f, rows = diffs.more_context(
            diff, sub.repository.canonical_path, sub.session.base_sha, file, hunk, start, end
        )
    except (diffs.ContextError, gitops.GitError) as e:
        return HttpResponseBadRequest(str(e))
    ctx = {
        "sub": sub,
        "file": f,
        "hunk": hunk,
        "rows": rows,
        "above": hunk < len(f.hunks),
        "next": diffs.next_range(f, hunk, start, end, len(rows)),
        "view": view_mode(request),
    }
    return render(request, "agents/diff.html#more", ctx)


def commented_line(request: HttpRequest, sub: Submission) -> tuple[str, str, int, str]:
    """(path, side, line, its text) of the line the request names, as the diff has it."""
    diff = diffs.parse(sub.session.patch or "")
    f = diff.file(int_param(request, "file"))
    side = request.GET.get("side") or request.POST.get("side") or ""
    if side not in ReviewComment.Side.values:
        raise diffs.ContextError("side: old or new")
    line = int_param(request, "line")
    text = f.line_text(side, line)
    if text is None:
        raise diffs.ContextError(f"the diff shows no {side} line {line} of {f.path}")
    return f.path, side, line, text


@roles.requires(roles.REVIEW)
def comment(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the form under a line (htmx). POST: the comment, then the line's comments."""
    sub = get_object_or_404(
        Submission.objects.select_related("session", "bead", "repository"), pk=pk
    )
    try:
        path, side, line, text = commented_line(request, sub)
    except diffs.ContextError as e:
        return HttpResponseBadRequest(str(e))
    ctx: dict[str, Any] = {
        "sub": sub,
        "file": int_param(request, "file"),
        "side": side,
        "line": line,
    }
    if request.method != "POST":
        return render(request, "agents/diff.html#comment-form", ctx)
    said = request.POST.get("text", "").strip()
    if not said or len(said) > COMMENT_CHARS:
        ctx["error"] = f"Write a comment of 1 to {COMMENT_CHARS} characters."
        return render(request, "agents/diff.html#comment-form", ctx, status=400)
    try:
        made = outcomes.comment(sub, request.user, path, line, side, text, said)
    except outcomes.ReviewRefused as refused:
        return HttpResponse(str(refused), status=403, content_type="text/plain")
    if made is None:
        return HttpResponse("This submission is no longer waiting for review.", status=409)
    audit.record(
        audit.Action.REVIEW_COMMENT,
        sub.bead_id,
        repository=sub.repository,
        detail=f"submission {sub.pk}, {path} line {line}: {said[:200]}",
        request=request,
    )
    ctx["comments"] = sub.review_comments.filter(path=path, side=side, line=line)
    return render(request, "agents/diff.html#line-comments", ctx)


@roles.requires(roles.REVIEW)
@require_POST
def request_changes(request: HttpRequest, pk: int) -> HttpResponse:
    sub = get_object_or_404(
        Submission.objects.select_related("session", "bead", "repository"), pk=pk
    )
    note = request.POST.get("note", "").strip()[:COMMENT_CHARS]
    try:
        sent = outcomes.request_changes(sub, request.user, note)
    except outcomes.ReviewRefused as refused:
        messages.error(request, str(refused))
        return redirect("submission", pk=sub.pk)
    if not sent:
        messages.error(request, "This submission is no longer waiting for review.")
        return redirect("submission", pk=sub.pk)
    count = sub.review_comments.count()
    audit.record(
        audit.Action.REQUEST_CHANGES,
        sub.bead_id,
        repository=sub.repository,
        detail=f"submission {sub.pk}: {count} comment(s)" + (f"; {note}" if note else ""),
        request=request,
    )
    messages.success(
        request, f"Changes requested: {sub.bead_id} is back on the hook with {count} comment(s)."
    )
    return redirect("submission", pk=sub.pk)


# Drawing the rows. A diff of thousands of lines is drawn here rather than in
# the template: a template tag per cell costs more than the 300 ms a 2,000-line
# patch may take. Every piece of the patch is escaped (row.html by Pygments or
# by diffs.paint; paths here); numbers are ints.

BUTTON = (
    '<button type="button" class="add-comment" data-side="{side}" data-line="{line}" '
    'aria-label="Comment on {side} line {line}">+</button>'
)


def number(n: int | None) -> str:
    return "" if n is None else str(int(n))


def button(row: diffs.Row | None, may: bool) -> str:
    if not may or row is None or row.kind == "meta" or row.line is None:
        return ""
    return BUTTON.format(side=row.side, line=int(row.line))


def gap_button(url: str, file: int, hunk: int, span: tuple[int, int]) -> str:
    start, end = int(span[0]), int(span[1])
    query = f"file={file}&amp;hunk={hunk}&amp;start={start}&amp;end={end}"
    return (
        f'<tbody class="gap"><tr><td colspan="4"><button type="button" class="more-context" '
        f'hx-get="{url}?{query}" hx-target="closest tbody" hx-swap="outerHTML">'
        f"Show lines {start}–{end} of the base</button></td></tr></tbody>"
    )


def comment_rows(rows: Iterable[diffs.Row | None]) -> str:
    """The comments under a line (few: drawn by the template)."""
    done, out = set(), []
    for row in rows:
        if row is not None and row.comments and id(row) not in done:
            done.add(id(row))
            out.append(
                get_template("agents/diff.html#line-comments").render({"comments": row.comments})
            )
    return "".join(out)


def unified_rows(hunk: diffs.Hunk, may: bool) -> Iterable[str]:
    for r in hunk.rows:
        yield (
            f'<tr class="{r.kind}"><td class="ln">{number(r.old)}</td><td class="ln">'
            f'{number(r.new)}</td><td class="code" colspan="2">{button(r, may)}'
            f"<code>{r.html}</code></td></tr>"
        )
        if r.comments:
            yield comment_rows([r])


def cell(row: diffs.Row | None, line: int | None, may: bool) -> str:
    if row is None:
        return '<td class="ln"></td><td class="code none"></td>'
    return (
        f'<td class="ln">{number(line)}</td><td class="code {row.kind}">{button(row, may)}'
        f"<code>{row.html}</code></td>"
    )


def split_rows(hunk: diffs.Hunk, may: bool) -> Iterable[str]:
    for left, right in hunk.pairs():
        same = left is right  # a context line: its comment button once, on the right
        left_cell = cell(left, left.old if left else None, may and not same)
        yield f"<tr>{left_cell}{cell(right, right.new if right else None, may)}</tr>"
        if (left and left.comments) or (right and right.comments):
            yield comment_rows([left, right])


def file_table(f: diffs.FileDiff, view: str, may: bool, sub_pk: int) -> SafeString:
    """One file's hunks as the table its <details> holds."""
    context_url = reverse("submission-context", args=[sub_pk])
    comment_url = reverse("submission-comment", args=[sub_pk])
    out = [
        f'<div class="scroll"><table class="diff highlight {view}" data-file="{f.index}" '
        f'data-comment-url="{comment_url}">'
    ]
    draw = split_rows if view == "split" else unified_rows
    for h in f.hunks:
        if h.more:
            out.append(gap_button(context_url, f.index, h.index, h.more))
        out.append(
            f'<tbody class="hunk"><tr class="hunk-head"><td colspan="4">{escape(h.header)}'
            f"{escape(h.section)}</td></tr>"
        )
        out.extend(draw(h, may))
        out.append("</tbody>")
    if f.more_below:
        out.append(gap_button(context_url, f.index, len(f.hunks), f.more_below))
    out.append("</table></div>")
    return mark_safe("".join(out))  # noqa: S308 - escaped piece by piece above
