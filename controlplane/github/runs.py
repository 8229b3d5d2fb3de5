"""Workflow runs and their jobs: dispatch, look-up by correlation token, cancel."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from github.Requester import Requester
from github.Workflow import Workflow
from github.WorkflowRun import WorkflowRun

from controlplane import names
from controlplane.github.core import PER_PAGE, GatewayCore
from controlplane.github.errors import GitHubInputsRefused, GitHubValidationError
from controlplane.github.paths import segment
from controlplane.github.types import (
    DispatchResult,
    JobInfo,
    RunInfo,
    RunJobs,
    StepInfo,
    parse_time,
)

logger = logging.getLogger(__name__)

MAX_DISPATCH_INPUTS = 25
# GitHub's messages when a dispatch's inputs do not match the workflow file's
# ``on.workflow_dispatch.inputs``: ``Unexpected inputs provided: ["a", "b"]`` and
# ``Required input 'x' not provided``.
UNEXPECTED_INPUTS = re.compile(r"Unexpected inputs provided: (\[[^\]]*\])")
MISSING_INPUT = re.compile(r"Required input '([^']+)' not provided")
# Run-list pages (with their ETags) a gateway keeps for conditional token lookups:
# one per dispatch being looked up, so a handful in practice.
RUN_PAGES_KEPT = 64


def parse_run(data: Mapping[str, Any]) -> RunInfo:
    name = str(data.get("name") or "")
    return RunInfo(
        id=int(data["id"]),
        name=name,
        display_title=str(data.get("display_title") or name),
        status=data.get("status"),
        conclusion=data.get("conclusion"),
        html_url=str(data.get("html_url") or ""),
        head_branch=data.get("head_branch"),
        head_sha=str(data.get("head_sha") or ""),
        event=str(data.get("event") or ""),
        run_attempt=int(data.get("run_attempt") or 1),
        created_at=parse_time(data.get("created_at")),
        updated_at=parse_time(data.get("updated_at")),
    )


def inputs_refusal(exc: GitHubValidationError) -> GitHubInputsRefused | None:
    """``exc`` as a refusal of the dispatch's inputs, or None when it is another."""
    unexpected: list[str] = []
    found = UNEXPECTED_INPUTS.search(exc.github_message)
    if found:
        try:
            names = json.loads(found.group(1))
        except ValueError:
            names = re.findall(r'"([^"]*)"', found.group(1))
        unexpected = [str(name) for name in names]
    missing = MISSING_INPUT.findall(exc.github_message)
    if not unexpected and not missing:
        return None
    return GitHubInputsRefused(
        str(exc),
        status=exc.status,
        github_message=exc.github_message,
        unexpected=tuple(unexpected),
        missing=tuple(missing),
    )


def parse_job(data: Mapping[str, Any]) -> JobInfo:
    runner_id = data.get("runner_id")
    return JobInfo(
        id=int(data["id"]),
        run_id=int(data["run_id"]),
        name=str(data.get("name") or ""),
        status=str(data.get("status") or ""),
        conclusion=data.get("conclusion"),
        runner_id=int(runner_id) if runner_id is not None else None,
        runner_name=data.get("runner_name"),
        labels=tuple(str(label) for label in data.get("labels") or ()),
        html_url=data.get("html_url"),
        started_at=parse_time(data.get("started_at")),
        completed_at=parse_time(data.get("completed_at")),
        created_at=parse_time(data.get("created_at")),
        steps=tuple(
            StepInfo(
                name=str(step.get("name") or ""),
                number=int(step.get("number") or 0),
                status=str(step.get("status") or ""),
                conclusion=step.get("conclusion"),
            )
            for step in data.get("steps") or ()
        ),
        head_sha=str(data.get("head_sha") or ""),
    )


class RunCalls(GatewayCore):
    def dispatch_workflow(
        self, workflow: str, ref: str, inputs: Mapping[str, str]
    ) -> DispatchResult:
        """Dispatch ``workflow`` once. Never retried on an ambiguous failure.

        Asks for the run's details; a server that rejects ``return_run_details``
        (GitHub Enterprise Server without it) gets a plain dispatch, now and for the
        rest of this gateway's life, and the result then has no ``run_id``. Inputs
        the workflow file does not take raise :class:`GitHubInputsRefused`.
        """
        if len(inputs) > MAX_DISPATCH_INPUTS:
            raise GitHubValidationError(
                f"dispatch_workflow: GitHub accepts at most {MAX_DISPATCH_INPUTS} inputs"
            )
        segment(names.Kind.WORKFLOW, workflow)  # PyGithub builds this URL itself
        workflow_obj = self._github.get_repo(self.repository).get_workflow(workflow)
        try:
            return self._dispatch(workflow_obj, ref, inputs)
        except GitHubValidationError as exc:
            refusal = inputs_refusal(exc)
            if refusal is None:
                raise
            raise refusal from None

    def _dispatch(
        self, workflow_obj: Workflow, ref: str, inputs: Mapping[str, str]
    ) -> DispatchResult:
        if self.run_details_supported is not False:
            try:
                with self._call("dispatch_workflow"):
                    # A server that answers 204 despite the field yields True.
                    run: object = workflow_obj.create_dispatch(
                        ref, dict(inputs), throw=True, return_run_details=True
                    )
            except GitHubValidationError as exc:
                if "return_run_details" not in exc.github_message:
                    raise
                # A 400/422 created nothing, so dispatching again is safe.
                logger.info("GitHub rejects return_run_details; dispatching plainly")
                self.run_details_supported = False
            else:
                if isinstance(run, WorkflowRun):
                    self.run_details_supported = True
                    return DispatchResult(run.id, run.url, run.html_url)
                return DispatchResult(None, None, None)
        with self._call("dispatch_workflow"):
            workflow_obj.create_dispatch(ref, dict(inputs), throw=True)
        return DispatchResult(None, None, None)

    def list_workflow_runs(
        self,
        workflow: str | None = None,
        *,
        created_since: datetime | None = None,
        status: str | None = None,
        event: str | None = None,
        branch: str | None = None,
        max_pages: int = 10,
    ) -> list[RunInfo]:
        """Runs newest first, all pages up to ``max_pages``, pull requests excluded."""
        if workflow is not None:
            workflow_segment = segment(names.Kind.WORKFLOW, workflow)
            url = f"{self._repo_url}/actions/workflows/{workflow_segment}/runs"
        else:
            url = f"{self._repo_url}/actions/runs"
        # PyGithub would send exclude_pull_requests=1, which GitHub's schema rejects.
        params: dict[str, Any] = {"exclude_pull_requests": "true"}
        if created_since is not None:
            since = created_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            params["created"] = f">={since}"
        for key, value in (("status", status), ("event", event), ("branch", branch)):
            if value is not None:
                params[key] = value
        items = self._pages(
            "list_workflow_runs", url, "workflow_runs", params, max_pages=max_pages
        )
        return [parse_run(item) for item in items]

    def find_run_by_token(
        self, workflow: str, token: str, created_since: datetime
    ) -> RunInfo | None:
        """The dispatched run whose run-name carries ``token``, if GitHub has it yet.

        The first page of the list is asked for conditionally (``If-None-Match``
        with the ETag of the same list's last answer, kept by this gateway): while
        nothing changed GitHub answers 304, which costs no API budget, so looking a
        lost dispatch up every second is free. Further pages, needed only when more
        than a page of runs was dispatched since ``created_since``, are plain.
        """
        workflow_segment = segment(names.Kind.WORKFLOW, workflow)
        url = f"{self._repo_url}/actions/workflows/{workflow_segment}/runs"
        since = created_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        params = {
            "exclude_pull_requests": "true",
            "created": f">={since}",
            "event": "workflow_dispatch",
        }
        items = self._conditional_runs_page(url, params)
        runs = [parse_run(item) for item in items]
        if len(items) >= PER_PAGE:
            runs = self.list_workflow_runs(
                workflow, created_since=created_since, event="workflow_dispatch"
            )
        for run in runs:
            if token in run.display_title or token in run.name:
                return run
        return None

    def _conditional_runs_page(
        self, url: str, params: dict[str, str]
    ) -> list[dict[str, Any]]:
        """The first page of a run list, from this gateway's copy when GitHub
        answers 304 Not Modified to its ETag."""
        key = url + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        with self._run_pages_lock:
            cached = self._run_pages.get(key)
        headers = {"If-None-Match": cached[0]} if cached else {}
        with self._call("find_run_by_token"):
            status, response_headers, body = self._requester.requestJson(
                "GET", url, {**params, "per_page": PER_PAGE, "page": 1}, headers=headers
            )
            data = json.loads(body) if body else None
            if status >= 400:
                raise Requester.createException(status, response_headers, data or {})
        if status == 304 and cached is not None:
            return cached[1]
        items = list((data or {}).get("workflow_runs") or [])
        etag = response_headers.get("etag")
        if etag:
            with self._run_pages_lock:
                if len(self._run_pages) >= RUN_PAGES_KEPT:
                    self._run_pages.pop(next(iter(self._run_pages)))  # the oldest
                self._run_pages[key] = (etag, items)
        return items

    def get_run(self, run_id: int) -> RunInfo:
        """The run; conditional, so asking again about an unchanged run is free."""
        url = f"{self._repo_url}/actions/runs/{run_id}"
        return parse_run(self._get("get_run", url, conditional=True))

    def list_run_jobs(self, run_id: int) -> list[JobInfo]:
        url = f"{self._repo_url}/actions/runs/{run_id}/jobs"
        return [parse_job(item) for item in self._pages("list_run_jobs", url, "jobs")]

    def list_run_jobs_if_changed(self, run_id: int, etag: str | None = None) -> RunJobs:
        """The run's jobs, conditional on ``etag`` (of the first page).

        A 304 (the list is as it was when ``etag`` was given; free) carries no jobs:
        keep the previous answer's. Further pages, rare (100 jobs a page), are read
        unconditionally.
        """
        url = f"{self._repo_url}/actions/runs/{run_id}/jobs"
        headers = {"If-None-Match": etag} if etag else {}
        with self._call("list_run_jobs"):
            status, response_headers, body = self._requester.requestJson(
                "GET", url, {"per_page": PER_PAGE, "page": 1}, headers=headers
            )
            data = json.loads(body) if body else None
            if status >= 400:
                raise Requester.createException(status, response_headers, data or {})
        if status == 304:
            return RunJobs([], etag, True)
        assert isinstance(data, dict)
        items = list(data.get("jobs") or ())
        if len(items) >= PER_PAGE:
            items += self._pages("list_run_jobs", url, "jobs", first_page=2)
        return RunJobs(
            [parse_job(item) for item in items], response_headers.get("etag"), False
        )

    def get_job(self, job_id: int) -> JobInfo:
        return parse_job(
            self._get("get_job", f"{self._repo_url}/actions/jobs/{job_id}")
        )

    def cancel_run(self, run_id: int) -> None:
        """Ask GitHub to cancel the run (202); 409 if it already completed."""
        self._post("cancel_run", f"{self._repo_url}/actions/runs/{run_id}/cancel")

    def force_cancel_run(self, run_id: int) -> None:
        """Cancel even when the run ignores ``always()`` conditions (no PyGithub method)."""
        self._post(
            "force_cancel_run", f"{self._repo_url}/actions/runs/{run_id}/force-cancel"
        )
