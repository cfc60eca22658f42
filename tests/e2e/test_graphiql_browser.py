"""GraphiQL rendered by headless Chromium that can reach nothing but loopback.

Chromium (Debian's package) opens GET /graphql of a real uvicorn with every other host made
unreachable (a dead proxy, and no name resolves), runs the query the URL carries with the
Authorization header the URL puts in the headers editor, and shows the answer. The test drives
it over the DevTools protocol: it records every request the page made, every console or policy
message and every uncaught error, and saves a screenshot.
"""

import base64
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from servers import Server, free_port, make_token, run_server, wait_audit_row
from websockets.sync.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)"
)
# The flags that work on this kind of machine (as root, no screen, no outside network).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
]
WAIT_S = 20.0
# The text of GraphiQL's result pane once it shows the answer to the query (else "").
ANSWER_SHOWN = """(() => {
  const pane = document.querySelector('.result-window');
  return pane && pane.innerText.includes('graphiql-user') ? pane.innerText : '';
})()"""


class DevTools:
    """A page of Chromium over the DevTools protocol: calls, and the events seen meanwhile."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its result."""
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv(timeout=WAIT_S))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return dict(message["result"])
            self.events.append(message)
        raise AssertionError(f"no answer to {method} within {WAIT_S} s")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str) -> Any:
        """Poll an expression until it is truthy."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{what}: not within {WAIT_S} s")

    def named(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every event of this kind so far."""
        return [dict(e["params"]) for e in self.events if e.get("method") == method]


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[DevTools]:
    """Chromium with every host but loopback unreachable, driven through DevTools."""
    assert CHROMIUM is not None
    port = free_port()
    isolation = [
        f"--proxy-server=http://127.0.0.1:{free_port()}",  # nothing listens: every request fails
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ]
    command = [
        CHROMIUM,
        *FLAGS,
        *isolation,
        f"--user-data-dir={profile}",
        f"--remote-debugging-port={port}",
        "about:blank",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with connect(_page_socket(port), max_size=None) as socket:
            yield DevTools(socket)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _page_socket(port: int) -> str:
    """The DevTools address of the browser's first page, once it listens."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        time.sleep(0.1)
    raise AssertionError(f"Chromium's DevTools did not answer within {WAIT_S} s")


@pytest.fixture
def server(db_url, db_engine, active_model) -> Iterator[Server]:
    """uvicorn in development mode, GraphiQL on."""
    with run_server(db_url, {"FAILCAST_ENABLE_GRAPHIQL": "true"}) as running:
        yield running


def test_graphiql_renders_offline_and_sends_the_authorization_header(server, db_engine, tmp_path):
    token = make_token("graphiql-user")
    query = "query Me { me { subject scopes } }"
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    url = f"{server.base}/graphql?" + urlencode({"q": query, "headers": headers})
    with chromium(tmp_path / "profile") as page:
        for domain in ("Page", "Network", "Log", "Runtime"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=url)
        page.wait_for("!!document.querySelector('.graphiql-execute-button')", "GraphiQL shown")
        page.evaluate("document.querySelector('.graphiql-execute-button').click()")
        answer = page.wait_for(ANSWER_SHOWN, "the answer shown")
        time.sleep(0.5)  # let the last paints and events arrive
        shot = page.call("Page.captureScreenshot", format="png")
        screenshot = tmp_path / "graphiql.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        requested = [e["request"]["url"] for e in page.named("Network.requestWillBeSent")]
        logged = [e["entry"] for e in page.named("Log.entryAdded")]
        thrown = page.named("Runtime.exceptionThrown")

    assert '"subject": "graphiql-user"' in answer, answer
    assert screenshot.stat().st_size > 10_000
    assert requested, "the page's requests were recorded"
    outside = [u for u in requested if not u.startswith((server.base + "/", "data:"))]
    assert outside == [], outside
    assert any(u.endswith("/graphiql/graphiql.min.js") for u in requested)
    assert thrown == [], thrown
    refused = [e["text"] for e in logged if e.get("level") == "error"]
    assert refused == [], refused  # no policy violation, no failed load
    # The server saw the token: the operation's audit row names its subject.
    posts = [e for e in page.named("Network.responseReceived") if e["type"] == "Fetch"]
    request_ids = [e["response"]["headers"].get("x-request-id") for e in posts]
    rows = [wait_audit_row(db_engine, rid) for rid in request_ids if rid]
    assert "graphiql-user" in {row["subject"] for row in rows}
