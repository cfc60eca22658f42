"""GraphiQL in development, served whole by the app: nothing on the page comes from elsewhere."""

import base64
import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from starlette.testclient import TestClient
from support import count_rows

from graph.app import create_app
from graph.settings import Settings

BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".txt": "text/plain",
    ".svg": "image/svg+xml",
}


class References(HTMLParser):
    """Every src and href of a page, with the tag and attributes it came from."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name) is not None:
                self.found.append((tag, values))


def _references(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = References()
    parser.feed(html)
    return parser.found


def _link(attrs: dict[str, str | None]) -> str:
    value = attrs.get("src") or attrs.get("href")
    assert value is not None
    return value


def test_the_page_references_only_files_of_this_server(client):
    page = client.get("/graphql", headers=BROWSER)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    references = _references(page.text)
    assert {tag for tag, _ in references} == {"link", "script"}
    for _, attrs in references:
        parts = urlsplit(_link(attrs))
        assert not parts.scheme and not parts.netloc, _link(attrs)
        assert not parts.path.startswith("/"), "relative to the page: works under a path prefix"
    assert not re.search(r"(?i)\b(https?:)?//", page.text), "no outside URL, not even in text"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy


def test_every_file_the_page_references_is_served_with_its_type_and_digest(client):
    page = client.get("/graphql", headers=BROWSER)
    references = _references(page.text)
    assert len(references) >= 10  # an icon, 2 stylesheets, 4 scripts, 3 licenses
    for tag, attrs in references:
        path = urlsplit(urljoin("http://testserver/graphql", _link(attrs))).path
        response = client.get(path)
        assert response.status_code == 200, path
        suffix = path[path.rindex(".") :]
        assert response.headers["content-type"].split(";")[0] == MEDIA_TYPES[suffix], path
        assert response.content, path
        if attrs.get("integrity"):
            algorithm, digest = str(attrs["integrity"]).split("-", 1)
            assert algorithm == "sha384"
            actual = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
            assert actual == digest, path
        else:
            assert attrs.get("rel") in ("icon", "license"), (tag, attrs)


def test_graphiql_and_react_are_the_upstream_builds_with_their_licenses(client):
    scripts = {
        "react": client.get("/graphiql/react.production.min.js").text,
        "react-dom": client.get("/graphiql/react-dom.production.min.js").text,
        "graphiql": client.get("/graphiql/graphiql.min.js").text,
    }
    assert scripts["react"].startswith("/** @license React v17.0.2")
    assert scripts["react-dom"].startswith("/** @license React v17.0.2")
    assert "createFetcher" in scripts["graphiql"]
    graphiql_license = client.get("/graphiql/LICENSE.graphiql.txt").text
    assert graphiql_license.startswith("MIT License")
    assert "GraphQL Contributors" in graphiql_license
    react_license = client.get("/graphiql/LICENSE.react.txt").text
    assert react_license.startswith("MIT License")
    assert "Facebook, Inc. and its affiliates" in react_license
    package_license = client.get("/graphiql/LICENSE.graphene-django-graphiql-static.txt").text
    assert "BSD License" in package_license


def test_the_stylesheet_loads_fonts_and_icons_from_itself_only(client):
    css = client.get("/graphiql/graphiql.min.css").text
    urls = re.findall(r"url\(\s*['\"]?([^'\")]*)", css)
    assert urls, "the fonts are inlined"
    assert all(url.startswith("data:") for url in urls), [u for u in urls if u[:5] != "data:"]


def test_the_files_are_not_audited_and_the_page_is(client, db_engine):
    before = count_rows(db_engine, "audit_event")
    page = client.get("/graphql", headers=BROWSER)
    for _, attrs in _references(page.text):
        client.get(urljoin("/graphql", _link(attrs)))
    assert count_rows(db_engine, "audit_event") == before + 1  # the page: GET /graphql
    assert client.get("/graphiql/nothing.js").status_code == 404  # audited like any 404


def test_an_operation_by_get_is_still_an_operation(client, auth_headers):
    response = client.get(
        "/graphql", params={"query": "{ me { subject } }"}, headers={**BROWSER, **auth_headers}
    )
    assert response.json()["data"]["me"]["subject"] == "tester"


@pytest.mark.parametrize("changes", [{"env": "production"}, {"enable_graphiql": False}])
def test_without_graphiql_neither_the_page_nor_its_files_are_served(
    settings: Settings, db_engine, active_model, changes
):
    with TestClient(create_app(settings.model_copy(update=changes))) as client:
        page = client.get("/graphql", headers=BROWSER)
        assert "graphiql" not in page.text.lower()
        assert page.headers["content-type"].startswith("application/json")
        assert client.get("/graphiql/graphiql.min.js").status_code == 404
        assert client.get("/graphiql/LICENSE.graphiql.txt").status_code == 404
