"""GraphiQL for development, served whole by the app so that it renders without internet access.

GET /graphql from a browser gets a page that names only relative paths under graphiql/. GraphiQL
2.4.7, its stylesheet and React 17.0.2 come from the graphene-django-graphiql-static
distribution (a declared dependency whose files are upstream's npm builds), each checked against
a pinned digest when loaded; the page's script and stylesheet, and the upstream license files
that distribution leaves out, ship with failcast (graph/edge/static/graphiql/). The page is
sent with a Content-Security-Policy that lets the browser load nothing from anywhere else.
"""

import base64
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape
from importlib import metadata, resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from graph.settings import SettingsError

DISTRIBUTION = "graphene-django-graphiql-static"
DISTRIBUTION_DIR = "graphene_django_graphiql_static/static/graphene_django_graphiql_static"
DISTRIBUTION_LICENSE = "LICENSE.graphene-django-graphiql-static.txt"
PREFIX = "graphiql/"  # relative to the page at /graphql: /graphiql/<name>
JS, CSS, TEXT, SVG = "text/javascript", "text/css", "text/plain", "image/svg+xml"

# The distribution's files, with the sha256 of each as version 0.8 ships it: graphiql.min.*
# are graphiql@2.4.7's npm files plus a final newline, the React files react@17.0.2's and
# react-dom@17.0.2's UMD builds byte for byte. A different file refuses to load.
UPSTREAM = {
    "react.production.min.js": (
        JS,
        "229bbf4d0e7488209564152c6723497f1ac3934136ca1684233d2fa88fa4146f",
    ),
    "react-dom.production.min.js": (
        JS,
        "9db33292007ab6c38527b39d5663e976a305564e19b2a5a8713ea2b2c00f505d",
    ),
    "graphiql.min.js": (JS, "c564de05b95d184e2c5ba5ceaf2635821f6bf92f2d5777b74d91004ff6b591d1"),
    "graphiql.min.css": (CSS, "c6cd4b83f01c5e1ff4975d77bc957184dce6dec0155fbf9cc4d9190eba8a7b9d"),
}
# failcast's own files: the page's script and layout, the upstream license files (verbatim
# from the npm packages graphiql@2.4.7 and react@17.0.2, whose react-dom has the same one).
OWN = {
    "favicon.svg": SVG,  # else the browser asks for /favicon.ico, which is no page of ours
    "page.css": CSS,
    "init.js": JS,
    "LICENSE.graphiql.txt": TEXT,
    "LICENSE.react.txt": TEXT,
}
STYLES = ("graphiql.min.css", "page.css")
SCRIPTS = ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js", "init.js")
LICENSES = ("LICENSE.graphiql.txt", "LICENSE.react.txt", DISTRIBUTION_LICENSE)

# Everything from this server; fonts and icons are data: URLs inside the stylesheet.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@dataclass(frozen=True)
class StaticFile:
    """One file the page references, held in memory."""

    body: bytes
    media_type: str

    def integrity(self) -> str:
        """The subresource-integrity value of the body."""
        return "sha384-" + base64.b64encode(hashlib.sha384(self.body).digest()).decode()


class GraphiQL:
    """The GraphiQL page and every file it references, read once when the app is built."""

    def __init__(self) -> None:
        self.files = {**_distribution_files(), **_own_files()}
        self.page = _page(self.files)

    @property
    def paths(self) -> frozenset[str]:
        """The URL paths of the files (static files: not API calls, so not audited)."""
        return frozenset(f"/{PREFIX}{name}" for name in self.files)

    def routes(self) -> list[Route]:
        """One GET route a file."""
        return [
            Route(f"/{PREFIX}{name}", _serve(file), methods=["GET"])
            for name, file in self.files.items()
        ]

    def page_response(self) -> Response:
        """The page, with a policy that forbids loading anything from elsewhere."""
        headers = {"content-security-policy": CONTENT_SECURITY_POLICY}
        return HTMLResponse(self.page, headers=headers)


def _serve(file: StaticFile) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return Response(file.body, media_type=file.media_type)

    return serve


def _distribution_files() -> dict[str, StaticFile]:
    """The pinned files of the distribution, and its license (raises SettingsError)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as error:
        raise SettingsError(_missing(f"{DISTRIBUTION} is not installed")) from error
    files = {}
    for name, (media_type, sha256) in UPSTREAM.items():
        path = Path(str(dist.locate_file(f"{DISTRIBUTION_DIR}/{name}")))
        body = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(body).hexdigest() != sha256:
            found = f"{name} of {DISTRIBUTION} {dist.version} is missing or not the pinned file"
            raise SettingsError(_missing(found))
        files[name] = StaticFile(body, media_type)
    license_text = dist.read_text("LICENSE")
    if not license_text:
        raise SettingsError(_missing(f"the license file of {DISTRIBUTION} is missing"))
    files[DISTRIBUTION_LICENSE] = StaticFile(license_text.encode(), TEXT)
    return files


def _missing(what: str) -> str:
    return (
        f"cannot start: GraphiQL is enabled but {what}: reinstall failcast "
        "(pip install .), or set FAILCAST_ENABLE_GRAPHIQL=false"
    )


def _own_files() -> dict[str, StaticFile]:
    """The page's script and stylesheet and the upstream licenses, from failcast's package."""
    folder = resources.files("graph.edge") / "static" / "graphiql"
    return {name: StaticFile((folder / name).read_bytes(), kind) for name, kind in OWN.items()}


def _page(files: dict[str, StaticFile]) -> str:
    """The HTML page: relative references only, each script and stylesheet with its digest."""

    def attributes(name: str) -> str:
        return f'"{escape(PREFIX + name)}" integrity="{files[name].integrity()}"'

    lines = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>failcast GraphiQL</title>",
        f'<link rel="icon" href="{PREFIX}favicon.svg" type="{SVG}">',
        *(f'<link rel="stylesheet" href={attributes(name)}>' for name in STYLES),
        *(f'<link rel="license" href="{escape(PREFIX + name)}">' for name in LICENSES),
        "</head>",
        "<body>",
        '<div id="graphiql">Loading GraphiQL...</div>',
        *(f"<script src={attributes(name)}></script>" for name in SCRIPTS),
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(lines)
