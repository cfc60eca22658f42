// failcast's GraphiQL page: strawberry's set-up (headers editor, headers kept, the query in the
// URL), on GraphiQL and React served by this server, so it needs no internet access.
(function () {
  "use strict";

  var DEFAULT_QUERY = [
    "# failcast GraphiQL (development only)",
    "#",
    "# Every operation needs a bearer token: open Headers below and enter",
    '#   {"Authorization": "Bearer <token>"}',
    "# (make serve prints one; `failcast token` mints others). Run with Ctrl-Enter.",
    "",
    "query Me {",
    "  me {",
    "    subject",
    "    scopes",
    "  }",
    "}",
    "",
  ].join("\n");

  var parameters = new URLSearchParams(window.location.search);
  // The page is served by GET /graphql: operations go to the same URL.
  var endpoint = window.location.href.split(/[?#]/)[0];

  function keepInURL(name, value) {
    if (value) {
      parameters.set(name, value);
    } else {
      parameters.delete(name);
    }
    var search = parameters.toString();
    window.history.replaceState(null, "", search ? "?" + search : window.location.pathname);
  }

  var graphiql = React.createElement(GraphiQL, {
    // GraphiQL's fetcher sends the headers entered in the editor (Authorization) each time.
    fetcher: GraphiQL.createFetcher({ url: endpoint }),
    defaultQuery: DEFAULT_QUERY,
    query: parameters.get("q") || undefined,
    variables: parameters.get("variables") || undefined,
    headers: parameters.get("headers") || undefined,
    onEditQuery: function (query) {
      keepInURL("q", query);
    },
    onEditVariables: function (variables) {
      keepInURL("variables", variables);
    },
    defaultEditorToolsVisibility: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: true,
    inputValueDeprecation: true,
  });
  ReactDOM.render(graphiql, document.getElementById("graphiql"));
})();
