"""Tell someone when a flow run fails: a JSON POST to a webhook the user sets once.

A nightly run that fails at 03:00 only shows as Failed in the Prefect UI, which nobody reads
at 03:00. The URL comes from `flow.notify_url` in params.yaml, or from CADENZA_NOTIFY_URL
(which wins, for URLs that carry a secret and must stay out of git). The body has a `text`
line, which Slack, Mattermost and Discord-compatible incoming webhooks show as is, and the
run's fields for any other receiver. A notification that cannot be delivered is logged, never
raised: it must not hide the failure it reports.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.flow_settings import flow_settings

NOTIFY_ENV = "CADENZA_NOTIFY_URL"
POST_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


def notify_url(project: str) -> str:
    """CADENZA_NOTIFY_URL, else `flow.notify_url` of the project's params.yaml, else ""."""
    return os.environ.get(NOTIFY_ENV) or flow_settings(project).notify_url


def failure_message(
    flow_name: str, run_name: str, state_name: str, message: str, project: str
) -> dict[str, Any]:
    """The JSON body: one readable `text` line plus the fields, for chat and for scripts."""
    text = (
        f"Cadenza: flow run {run_name} of {flow_name} ended {state_name} in {project}: "
        f"{message or 'no message'}"
    )
    return {
        "text": text,
        "flow": flow_name,
        "flow_run": run_name,
        "state": state_name,
        "message": message,
        "project": project,
    }


def post_json(url: str, body: dict[str, Any]) -> None:
    """POST `body` as JSON to `url`; an HTTP error status raises."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "cadenza-flow"},
    )
    with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as response:  # noqa: S310
        response.read()


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect's on_failure / on_crashed hook for the repro flow: post the failure, if a URL
    is configured. Never raises (see the module docstring)."""
    project = str((flow_run.parameters or {}).get("project", "."))
    try:
        url = notify_url(project)
        if not url:
            return
        post_json(
            url,
            failure_message(
                flow.name,
                flow_run.name,
                state.name,
                state.message or "",
                str(Path(project).resolve()),
            ),
        )
    except Exception as err:  # noqa: BLE001 - see the docstring
        log.warning("could not send the failure notification: %s: %s", type(err).__name__, err)
