"""Commits and git refs of the simulated repositories: branches that move when pushed.

Every repository starts with one commit on ``main``. A push (the control API's
``POST /_sim/repos/{owner}/{repo}/push``) adds a commit on top of a branch, creating the
branch from ``main`` if it is new; a tag points at an existing commit. History is
linear per branch (no merges), which is all a deploy tool needs to ask: what is the
SHA of this ref, is this SHA on that ref, and how far apart are two commits.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from githubsim.errors import ApiError, invalid, not_found
from githubsim.models import Job, Run, Step
from githubsim.state.core import StateCore

DEFAULT_BRANCH = "main"
SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
# Branch and tag names as git allows them, minus the exotic corners.
REF_NAME_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/+-]{1,255}(?<![./])$")


@dataclass
class Commit:
    """One commit: its SHA, its parent (none for the first) and when it was pushed."""

    sha: str
    parents: list[str]
    message: str
    created_at: float
    tree_sha: str = ""
    # The branch the commit was pushed to, for the control API's listings.
    branch: str = ""


@dataclass
class RepoHistory:
    """A repository's commits by SHA and its refs (``heads/x``, ``tags/x``) by name."""

    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """How a head commit relates to a base commit (``GET /compare/{base}...{head}``)."""

    status: str
    base: str
    merge_base: str
    # Commits the head has and the base lacks, oldest first.
    ahead: list[str]
    behind_by: int


def no_commit(ref: str) -> ApiError:
    """GitHub's answer to ``GET /commits/{ref}`` for a ref or SHA it does not know."""
    return ApiError(422, f"No commit found for SHA: {ref}")


class CommitsMixin(StateCore):
    """Histories by repository, created with their first commit on first use."""

    def _reset_commits(self) -> None:
        self._histories: dict[str, RepoHistory] = {}
        self._pushes = 0

    def _history(self, full_name: str) -> RepoHistory:
        self.repository_id(full_name)
        history = self._histories.get(full_name)
        if history is None:
            history = self._histories[full_name] = RepoHistory()
            self._new_commit(history, full_name, DEFAULT_BRANCH, None, "Initial commit")
        return history

    def _new_commit(
        self,
        history: RepoHistory,
        full_name: str,
        branch: str,
        parent: str | None,
        message: str,
    ) -> Commit:
        self._pushes += 1
        seed = f"{full_name}\0{branch}\0{self._pushes}\0{message}"
        sha = hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()
        tree = hashlib.sha1(f"tree {sha}".encode(), usedforsecurity=False).hexdigest()
        commit = Commit(
            sha,
            [parent] if parent else [],
            message,
            self.clock.now(),
            tree,
            branch,
        )
        history.commits[sha] = commit
        history.refs[f"heads/{branch}"] = sha
        return commit

    # Changes (the control API) ------------------------------------------------------------

    def push(self, full_name: str, ref: str, message: str = "") -> Commit:
        """A new commit on top of branch ``ref`` (new branches start from ``main``)."""
        with self.lock:
            branch = branch_name(ref)
            history = self._history(full_name)
            parent = history.refs.get(f"heads/{branch}") or history.refs.get(
                f"heads/{DEFAULT_BRANCH}"
            )
            return self._new_commit(
                history,
                full_name,
                branch,
                parent,
                message or f"Change {self._pushes + 1} on {branch}",
            )

    def create_tag(self, full_name: str, tag: str, target: str = "") -> str:
        """Point tag ``tag`` at ``target`` (a ref or SHA; default ``main``'s tip)."""
        with self.lock:
            tag = tag.removeprefix("refs/").removeprefix("tags/")
            if not REF_NAME_RE.match(tag):
                raise invalid(f"{tag!r} is not a valid tag name", "tag")
            sha = self.resolve_ref(full_name, target or DEFAULT_BRANCH)
            history = self._history(full_name)
            if f"tags/{tag}" in history.refs:
                raise invalid("Reference already exists", "ref", "already_exists")
            history.refs[f"tags/{tag}"] = sha
            return sha

    # What runs see -----------------------------------------------------------------------

    def dispatch_sha(self, full_name: str, ref: str) -> str:
        """The run's ``head_sha``: the ref's SHA when it is dispatched. GitHub refuses a
        dispatch of a ref it does not know (a SHA is not a ref)."""
        name = ref.removeprefix("refs/")
        with self.lock:
            refs = self._history(full_name).refs
            for candidate in (name, f"heads/{name}", f"tags/{name}"):
                if candidate in refs:
                    return refs[candidate]
        raise invalid(f"No ref found for: {ref}", "ref")

    def check_out(self, job: Job, run: Run, now: float) -> None:
        """The job's "Check out" step, right after "Set up job": it checks out
        ``inputs.sha`` (or the ref) and fails the job at once when that SHA is not on
        the ref, as the reference workflows do."""
        wanted = str(run.inputs.get("sha") or "")
        step = Step("Check out", 2, "completed", "success", now, now)
        job.steps.insert(1, step)
        for number, each in enumerate(job.steps, start=1):
            each.number = number
        ref = run.git_ref or run.ref
        if not wanted or self.sha_on_ref(run.repository, ref, wanted):
            return
        step.status, step.conclusion, step.completed_at = "in_progress", None, None
        for later in job.steps[2:]:
            later.status, later.started_at = "queued", None
        job.note = f"{wanted} is not on {run.ref}; the checkout failed"
        self._complete(job, "failure", now)

    def _complete(
        self, job: Job, conclusion: str, now: float, lost: bool = False
    ) -> None:
        raise NotImplementedError  # RunsMixin finishes jobs

    def checked_out(self, run: Run, jobs: list[Job]) -> str | None:
        """The commit the run's jobs checked out (``inputs.sha``, else the run's
        ``head_sha``), or None while no "Check out" step has succeeded."""
        for job in jobs:
            if any(
                s.name == "Check out" and s.conclusion == "success" for s in job.steps
            ):
                return str(run.inputs.get("sha") or run.head_sha)
        return None

    # Questions ---------------------------------------------------------------------------

    def resolve_ref(self, full_name: str, ref: str) -> str:
        """The SHA a branch, tag, ``heads/x``/``tags/x``/``refs/...`` name or a (short)
        SHA stands for; GitHub's 422 "No commit found" when there is none."""
        with self.lock:
            history = self._history(full_name)
            name = ref.removeprefix("refs/")
            for candidate in (name, f"heads/{name}", f"tags/{name}"):
                if candidate in history.refs:
                    return history.refs[candidate]
            if SHA_RE.match(ref):
                found = [sha for sha in history.commits if sha.startswith(ref)]
                if len(found) == 1:
                    return found[0]
            raise no_commit(ref)

    def git_ref(self, full_name: str, ref: str) -> tuple[str, str]:
        """``(refs/heads/x, sha)`` for ``heads/x`` or ``tags/x``; 404 otherwise."""
        with self.lock:
            history = self._history(full_name)
            name = ref.removeprefix("refs/")
            if name not in history.refs:
                raise not_found()
            return f"refs/{name}", history.refs[name]

    def commit(self, full_name: str, sha: str) -> Commit:
        with self.lock:
            return self._history(full_name).commits[self.resolve_ref(full_name, sha)]

    def ancestry(self, full_name: str, sha: str) -> list[str]:
        """``sha`` and its ancestors, newest first."""
        with self.lock:
            commits = self._history(full_name).commits
            chain: list[str] = []
            current: str | None = sha
            while current is not None:
                chain.append(current)
                parents = commits[current].parents
                current = parents[0] if parents else None
            return chain

    def sha_on_ref(self, full_name: str, ref: str, sha: str) -> bool:
        """Whether ``sha`` is the tip of ``ref`` or one of its ancestors (what a
        checkout of ``ref`` followed by ``git checkout sha`` can reach)."""
        with self.lock:
            try:
                tip = self.resolve_ref(full_name, ref)
            except ApiError:
                return False
            return sha in self.ancestry(full_name, tip)

    def compare(self, full_name: str, base: str, head: str) -> Comparison:
        """How ``head`` relates to ``base``: status, ahead/behind counts, the merge
        base and the commits ``head`` has that ``base`` lacks (oldest first)."""
        with self.lock:
            try:
                base_sha = self.resolve_ref(full_name, base)
                head_sha = self.resolve_ref(full_name, head)
            except ApiError:
                raise not_found() from None
            base_chain = self.ancestry(full_name, base_sha)
            head_chain = self.ancestry(full_name, head_sha)
            in_base = set(base_chain)
            ahead = [sha for sha in head_chain if sha not in in_base]
            in_head = set(head_chain)
            behind = [sha for sha in base_chain if sha not in in_head]
            merge_base = next(sha for sha in head_chain if sha in in_base)
            if not ahead and not behind:
                status = "identical"
            elif not behind:
                status = "ahead"
            elif not ahead:
                status = "behind"
            else:
                status = "diverged"
            return Comparison(
                status, base_sha, merge_base, list(reversed(ahead)), len(behind)
            )


def branch_name(ref: str) -> str:
    """``main``, ``heads/main`` or ``refs/heads/main`` → ``main``; tags are refused."""
    name = ref.removeprefix("refs/")
    if name.startswith("tags/"):
        raise invalid("push to a branch; create tags with the tags call", "ref")
    name = name.removeprefix("heads/")
    if not REF_NAME_RE.match(name):
        raise invalid(f"{ref!r} is not a valid branch name", "ref")
    return name
