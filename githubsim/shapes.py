"""GitHub's JSON shapes for the simulator's records.

Every function takes ``base``, the URL the client reached the simulator on, because
PyGithub refuses to follow URLs whose host differs from its ``base_url``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from githubsim.clock import isoformat
from githubsim.models import (
    HOSTED_RUNNER_GROUP,
    READ_ONLY_LABEL_IDS,
    Job,
    Run,
    Runner,
    Step,
    Workflow,
)

DOCS = "https://docs.github.com/rest"
EPOCH_2020 = 1577836800.0  # creation time shown for the simulated repository and users


def node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"{kind}{number}".encode()).decode().rstrip("=")


def head_sha(ref: str) -> str:
    """A stable SHA-like id derived from ``ref`` (a commit's tree id, for instance);
    commits themselves come from :mod:`githubsim.state.commits`."""
    return hashlib.sha1(ref.encode(), usedforsecurity=False).hexdigest()


def user(base: str, login: str, user_id: int, kind: str = "User") -> dict[str, Any]:
    url = f"{base}/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": node_id("04:User", user_id),
        "avatar_url": f"{base}/avatars/{login}",
        "gravatar_id": "",
        "url": url,
        "html_url": f"{base}/{login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": kind,
        "site_admin": False,
        "user_view_type": "public",
    }


def repository(
    base: str, full_name: str, repo_id: int, owner_id: int
) -> dict[str, Any]:
    """A repository with every field of ``minimal-repository`` and the webhook variant."""
    owner, name = full_name.split("/", 1)
    url = f"{base}/repos/{full_name}"
    created = isoformat(EPOCH_2020)
    return {
        "id": repo_id,
        "node_id": node_id("010:Repository", repo_id),
        "name": name,
        "full_name": full_name,
        "owner": user(base, owner, owner_id, "Organization"),
        "private": True,
        "html_url": f"{base}/{full_name}",
        "description": "Deploy workflows (GitHub simulator)",
        "fork": False,
        "url": url,
        "archive_url": f"{url}/{{archive_format}}{{/ref}}",
        "assignees_url": f"{url}/assignees{{/user}}",
        "blobs_url": f"{url}/git/blobs{{/sha}}",
        "branches_url": f"{url}/branches{{/branch}}",
        "collaborators_url": f"{url}/collaborators{{/collaborator}}",
        "comments_url": f"{url}/comments{{/number}}",
        "commits_url": f"{url}/commits{{/sha}}",
        "compare_url": f"{url}/compare/{{base}}...{{head}}",
        "contents_url": f"{url}/contents/{{+path}}",
        "contributors_url": f"{url}/contributors",
        "deployments_url": f"{url}/deployments",
        "downloads_url": f"{url}/downloads",
        "events_url": f"{url}/events",
        "forks_url": f"{url}/forks",
        "git_commits_url": f"{url}/git/commits{{/sha}}",
        "git_refs_url": f"{url}/git/refs{{/sha}}",
        "git_tags_url": f"{url}/git/tags{{/sha}}",
        "git_url": f"git://simulator/{full_name}.git",
        "hooks_url": f"{url}/hooks",
        "issue_comment_url": f"{url}/issues/comments{{/number}}",
        "issue_events_url": f"{url}/issues/events{{/number}}",
        "issues_url": f"{url}/issues{{/number}}",
        "keys_url": f"{url}/keys{{/key_id}}",
        "labels_url": f"{url}/labels{{/name}}",
        "languages_url": f"{url}/languages",
        "merges_url": f"{url}/merges",
        "milestones_url": f"{url}/milestones{{/number}}",
        "notifications_url": f"{url}/notifications{{?since,all,participating}}",
        "pulls_url": f"{url}/pulls{{/number}}",
        "releases_url": f"{url}/releases{{/id}}",
        "ssh_url": f"git@simulator:{full_name}.git",
        "stargazers_url": f"{url}/stargazers",
        "statuses_url": f"{url}/statuses/{{sha}}",
        "subscribers_url": f"{url}/subscribers",
        "subscription_url": f"{url}/subscription",
        "tags_url": f"{url}/tags",
        "teams_url": f"{url}/teams",
        "trees_url": f"{url}/git/trees{{/sha}}",
        "clone_url": f"{base}/{full_name}.git",
        "mirror_url": None,
        "svn_url": f"{base}/{full_name}",
        "homepage": None,
        "language": None,
        "forks": 0,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "size": 1,
        "default_branch": "main",
        "open_issues": 0,
        "open_issues_count": 0,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": False,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private",
        "license": None,
        "pushed_at": created,
        "created_at": created,
        "updated_at": created,
    }


def runner(
    item: Runner, custom_label_ids: dict[str, int], busy: bool | None = None
) -> dict[str, Any]:
    """A runner; ``busy`` overrides what it reports (GitHub's busy=false quirk)."""
    labels: list[dict[str, Any]] = [
        {"id": READ_ONLY_LABEL_IDS.get(name, 0), "name": name, "type": "read-only"}
        for name in ("self-hosted", item.os, item.arch)
    ]
    labels += [
        {"id": custom_label_ids[name], "name": name, "type": "custom"}
        for name in item.custom_labels
    ]
    return {
        "id": item.id,
        "name": item.name,
        "os": item.os,
        "status": item.status,
        "busy": item.busy if busy is None else busy,
        "ephemeral": False,
        "runner_group_id": 1,
        "version": item.version,
        "labels": labels,
    }


def workflow(base: str, item: Workflow) -> dict[str, Any]:
    created = isoformat(item.created_at)
    return {
        "id": item.id,
        "node_id": node_id("08:Workflow", item.id),
        "name": item.name,
        "path": item.path,
        "state": "active",
        "created_at": created,
        "updated_at": created,
        "url": f"{base}/repos/{item.repository}/actions/workflows/{item.id}",
        "html_url": f"{base}/{item.repository}/blob/main/{item.path}",
        "badge_url": f"{base}/{item.repository}/workflows/{item.name}/badge.svg",
    }


def _when(epoch: float | None) -> str | None:
    return None if epoch is None else isoformat(epoch)


def step(item: Step) -> dict[str, Any]:
    return {
        "name": item.name,
        "status": item.status,
        "conclusion": item.conclusion,
        "number": item.number,
        "started_at": _when(item.started_at),
        "completed_at": _when(item.completed_at),
    }


def job(base: str, item: Job, run: Run, flow: Workflow) -> dict[str, Any]:
    repo_url = f"{base}/repos/{run.repository}"
    assigned = item.runner_id is not None
    group_id, group_name = (0, HOSTED_RUNNER_GROUP) if item.hosted else (1, "Default")
    return {
        "id": item.id,
        "run_id": item.run_id,
        "run_url": f"{repo_url}/actions/runs/{run.id}",
        "run_attempt": 1,
        "node_id": node_id("08:CheckRun", item.id),
        "head_sha": run.head_sha,
        "head_branch": run.ref,
        "workflow_name": flow.name,
        "url": f"{repo_url}/actions/jobs/{item.id}",
        "html_url": f"{base}/{run.repository}/actions/runs/{run.id}/job/{item.id}",
        "status": item.status,
        "conclusion": item.conclusion,
        "created_at": isoformat(item.created_at),
        # GitHub reports the creation time as started_at while a job is still queued.
        "started_at": isoformat(item.started_at or item.created_at),
        "completed_at": _when(item.completed_at),
        "name": item.name,
        "steps": [step(s) for s in item.steps],
        "check_run_url": f"{repo_url}/check-runs/{item.id}",
        "labels": list(item.labels),
        "runner_id": item.runner_id,
        "runner_name": item.runner_name,
        "runner_group_id": group_id if assigned else None,
        "runner_group_name": group_name if assigned else None,
    }


def run(
    base: str, item: Run, flow: Workflow, repo: dict[str, Any], actor: dict[str, Any]
) -> dict[str, Any]:
    repo_url = f"{base}/repos/{item.repository}"
    url = f"{repo_url}/actions/runs/{item.id}"
    return {
        "id": item.id,
        "name": item.display_title,
        "node_id": node_id("011:WorkflowRun", item.id),
        "check_suite_id": item.id + 5_000_000,
        "check_suite_node_id": node_id("010:CheckSuite", item.id + 5_000_000),
        "head_branch": item.ref,
        "head_sha": item.head_sha,
        "path": flow.path,
        "run_number": item.run_number,
        "run_attempt": 1,
        "referenced_workflows": [],
        "event": item.event,
        "status": item.status,
        "conclusion": item.conclusion,
        "workflow_id": flow.id,
        "url": url,
        "html_url": f"{base}/{item.repository}/actions/runs/{item.id}",
        "pull_requests": [],
        "created_at": isoformat(item.created_at),
        "updated_at": isoformat(item.updated_at),
        "actor": actor,
        "triggering_actor": actor,
        "run_started_at": isoformat(item.run_started_at or item.created_at),
        "jobs_url": f"{url}/jobs",
        "logs_url": f"{url}/logs",
        "check_suite_url": f"{repo_url}/check-suites/{item.id + 5_000_000}",
        "artifacts_url": f"{url}/artifacts",
        "cancel_url": f"{url}/cancel",
        "rerun_url": f"{url}/rerun",
        "previous_attempt_url": None,
        "workflow_url": f"{repo_url}/actions/workflows/{flow.id}",
        "head_commit": {
            "id": item.head_sha,
            "tree_id": head_sha(item.head_sha),
            "message": f"Deploy {item.ref}",
            "timestamp": isoformat(item.created_at),
            "author": {"name": "Deploy Bot", "email": "deploy-bot@example.com"},
            "committer": {"name": "Deploy Bot", "email": "deploy-bot@example.com"},
        },
        "repository": repo,
        "head_repository": repo,
        "head_repository_id": repo["id"],
        "display_title": item.display_title,
    }


def hook(
    base: str, scope: str, owner: str, hook_id: int, url: str, created: float
) -> dict[str, Any]:
    """A ``hook`` (repository) or ``org-hook`` carrying workflow events to ``url``."""
    prefix = (
        f"{base}/repos/{owner}" if scope == "repository" else f"{base}/orgs/{owner}"
    )
    api = f"{prefix}/hooks/{hook_id}"
    body: dict[str, Any] = {
        "type": "Repository" if scope == "repository" else "Organization",
        "id": hook_id,
        "name": "web",
        "active": True,
        "events": ["workflow_job", "workflow_run"],
        "config": {"content_type": "json", "insecure_ssl": "0", "url": url},
        "created_at": isoformat(created),
        "updated_at": isoformat(created),
        "url": api,
        "ping_url": f"{api}/pings",
        "deliveries_url": f"{api}/deliveries",
    }
    if scope == "repository":
        body["test_url"] = f"{api}/test"
        body["last_response"] = {"code": None, "status": "unused", "message": None}
    return body


def delivery_item(record: dict[str, Any]) -> dict[str, Any]:
    """A ``hook-delivery-item``: one entry of a hook's delivery log."""
    return {
        "id": record["id"],
        "guid": record["guid"],
        "delivered_at": isoformat(record["delivered_at"]),
        "redelivery": record["redelivery"],
        "duration": record["duration"],
        "status": record["status"],
        "status_code": record["status_code"],
        "event": record["event"],
        "action": record["action"],
        "installation_id": None,
        "repository_id": record["repository_id"],
        "throttled_at": None,
    }


def delivery(record: dict[str, Any], url: str) -> dict[str, Any]:
    """A ``hook-delivery``: the entry with its request and response."""
    return {
        **delivery_item(record),
        "url": url,
        "request": {
            "headers": record["request_headers"],
            "payload": record["payload"],
        },
        "response": {
            "headers": record["response_headers"],
            "payload": record["response_body"] or None,
        },
    }


def error(message: str, status: int) -> dict[str, Any]:
    return {"message": message, "documentation_url": DOCS, "status": str(status)}
