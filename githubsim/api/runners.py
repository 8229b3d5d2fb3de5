"""Self-hosted runners of a repository or an organization."""

from __future__ import annotations

from githubsim.api.common import ORG, REPO
from githubsim.routing import Reply, Request, Router

router = Router()


def list_runners(request: Request) -> Reply:
    state = request.sim.state
    page, per_page = request.page(default_per_page=30)
    name = request.query.get("name")
    if name is not None:
        # The name filter finds at most one runner; no need to touch the page cache.
        with state.lock:
            found = state.find_runner(name)
            runners = [] if found is None else [state.runner_json(found)]
        return Reply(body={"total_count": len(runners), "runners": runners})
    body, etag = state.runners_page(page, per_page)
    reply = Reply(body=body, etag=etag)
    link = request.link_header(page, per_page, state.runner_count())
    if link:
        reply.headers["Link"] = link
    return reply


def get_runner(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        runner = state.runner(request.int_param("runner_id"))
        return Reply(body=state.runner_json(runner))


def runner_downloads(request: Request) -> Reply:
    """The runner application's downloads (GitHub answers the newest release)."""
    return Reply(body=request.sim.state.runner_applications())


def delete_runner(request: Request) -> Reply:
    state = request.sim.state
    with state.lock:
        runner = state.runner(request.int_param("runner_id"))
        state.remove_runner(runner.name)
    return Reply(status=204)


for scope in (REPO, ORG):
    router.add("GET", scope + "/actions/runners")(list_runners)
    router.add("GET", scope + "/actions/runners/downloads")(runner_downloads)
    router.add("GET", scope + "/actions/runners/{runner_id}")(get_runner)
    router.add("DELETE", scope + "/actions/runners/{runner_id}")(delete_runner)
