"""Commits, git refs and comparisons; and the control calls that push and tag.

``GET /repos/{o}/{r}/commits/{ref}`` answers a branch, tag or SHA (422 "No commit found
for SHA" for an unknown one, as GitHub does), ``GET .../git/ref/{ref}`` a ``heads/x`` or
``tags/x`` ref (404 otherwise), ``GET .../compare/{base}...{head}`` how two commits
relate. :data:`control` holds ``POST /_sim/repos/{owner}/{repo}/push`` and ``.../tags``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from githubsim import shapes
from githubsim.api.common import REPO, full_name
from githubsim.clock import isoformat
from githubsim.errors import ApiError, invalid, not_found
from githubsim.routing import Reply, Request, Router
from githubsim.state.commits import Commit

router = Router()
control = Router()

AUTHOR = {"name": "Deploy Bot", "email": "deploy-bot@example.com"}


def commit_json(request: Request, name: str, item: Commit) -> dict[str, Any]:
    """A ``commit`` as ``GET /commits/{ref}`` and compare's lists show it."""
    base = request.base
    api = f"{base}/repos/{name}"
    person = {**AUTHOR, "date": isoformat(item.created_at)}
    return {
        "sha": item.sha,
        "node_id": shapes.node_id("06:Commit", int(item.sha[:8], 16)),
        "url": f"{api}/commits/{item.sha}",
        "html_url": f"{base}/{name}/commit/{item.sha}",
        "comments_url": f"{api}/commits/{item.sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{item.sha}",
            "author": person,
            "committer": person,
            "message": item.message,
            "comment_count": 0,
            "tree": {"sha": item.tree_sha, "url": f"{api}/git/trees/{item.tree_sha}"},
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "payload": None,
                "signature": None,
                "verified_at": None,
            },
        },
        # Commits by an e-mail no GitHub account owns carry no user.
        "author": None,
        "committer": None,
        "parents": [
            {
                "sha": sha,
                "url": f"{api}/commits/{sha}",
                "html_url": f"{base}/{name}/commit/{sha}",
            }
            for sha in item.parents
        ],
    }


def ref_param(request: Request, key: str = "ref") -> str:
    ref = unquote(request.params[key])
    if not ref:
        raise not_found()
    return ref


@router.add("GET", REPO + "/commits/{ref+}")
def get_commit(request: Request) -> Reply:
    name = full_name(request)
    state = request.sim.state
    with state.lock:
        item = state.commit(name, ref_param(request))
        body = commit_json(request, name, item)
    body["stats"] = {"additions": 1, "deletions": 0, "total": 1}
    body["files"] = []
    return Reply(body=body)


@router.add("GET", REPO + "/git/ref/{ref+}")
def get_git_ref(request: Request) -> Reply:
    name = full_name(request)
    full_ref, sha = request.sim.state.git_ref(name, ref_param(request))
    api = f"{request.base}/repos/{name}"
    return Reply(
        body={
            "ref": full_ref,
            "node_id": shapes.node_id("03:Ref", sum(map(ord, full_ref))),
            "url": f"{api}/git/{full_ref}",
            "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"},
        }
    )


@router.add("GET", REPO + "/compare/{basehead+}")
def compare(request: Request) -> Reply:
    name = full_name(request)
    basehead = ref_param(request, "basehead")
    base, sep, head = basehead.partition("...")
    if not sep or not base or not head:
        raise not_found()
    state = request.sim.state
    with state.lock:
        result = state.compare(name, base, head)
        ahead = [state.commit(name, sha) for sha in result.ahead]
        base_commit = state.commit(name, result.base)
        merge_base = state.commit(name, result.merge_base)
        commits = [commit_json(request, name, item) for item in ahead]
        html = f"{request.base}/{name}/compare/{basehead}"
        body = {
            "url": f"{request.base}/repos/{name}/compare/{basehead}",
            "html_url": html,
            "permalink_url": (
                f"{request.base}/{name}/compare/{base_commit.sha}...{ahead[-1].sha}"
                if ahead
                else html
            ),
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "base_commit": commit_json(request, name, base_commit),
            "merge_base_commit": commit_json(request, name, merge_base),
            "status": result.status,
            "ahead_by": len(commits),
            "behind_by": result.behind_by,
            "total_commits": len(commits),
            "commits": commits,
            "files": [],
        }
    return Reply(body=body)


# The control API ------------------------------------------------------------------------


def control_repository(request: Request) -> str:
    name = f"{request.params['owner']}/{request.params['repo']}"
    try:
        request.sim.state.repository_id(name)
    except ApiError:
        raise ApiError(404, f"No repository {name!r} in the simulator") from None
    return name


@control.add("POST", "/_sim/repos/{owner}/{repo}/push")
def push(request: Request) -> Reply:
    """``{"ref": "main", "message": "..."}``: a new commit on the branch; its SHA."""
    name = control_repository(request)
    body = request.json_object()
    ref = body.get("ref") or "main"
    message = body.get("message") or ""
    if not isinstance(ref, str) or not isinstance(message, str):
        raise invalid("ref and message must be strings", "ref")
    item = request.sim.state.push(name, ref, message)
    return Reply(status=201, body={"ref": f"refs/heads/{item.branch}", "sha": item.sha})


@control.add("POST", "/_sim/repos/{owner}/{repo}/tags")
def create_tag(request: Request) -> Reply:
    """``{"tag": "v1.2.3", "target": "main"}``: a tag on a ref's tip or a SHA."""
    name = control_repository(request)
    body = request.json_object()
    tag = body.get("tag")
    target = body.get("target") or ""
    if not isinstance(tag, str) or not tag or not isinstance(target, str):
        raise invalid("tag (a name) is required; target is a ref or SHA", "tag")
    sha = request.sim.state.create_tag(name, tag, target)
    return Reply(status=201, body={"ref": f"refs/tags/{tag}", "sha": sha})


@control.add("GET", "/_sim/repos/{owner}/{repo}/checkouts")
def list_checkouts(request: Request) -> Reply:
    """Per run (newest 500): its ref, ``head_sha``, ``inputs.sha``, the commit its jobs
    checked out (null if none did) and its conclusion; what benchmarks compare with
    the commit the control plane asked for."""
    name = control_repository(request)
    state = request.sim.state
    with state.lock:
        runs = state.runs(name)[:500]
        jobs_by_run: dict[int, list[Any]] = {}
        for job in state.jobs():
            jobs_by_run.setdefault(job.run_id, []).append(job)
        body = [
            {
                "id": run.id,
                "display_title": run.display_title,
                "ref": run.ref,
                "head_sha": run.head_sha,
                "sha_input": run.inputs.get("sha"),
                "checked_out": state.checked_out(run, jobs_by_run.get(run.id, [])),
                "conclusion": run.conclusion,
            }
            for run in runs
        ]
    return Reply(body={"runs": body})
