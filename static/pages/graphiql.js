// GraphiQL for this API, served by the product itself (development only). Queries and
// mutations go over HTTP with the Headers tab's headers; subscriptions over graphql-transport-ws,
// whose connection_init carries the same Authorization header (the API reads the token there).
(function () {
  "use strict";

  var endpoint = location.origin + "/graphql";
  var socketUrl = endpoint.replace(/^http/, "ws");
  var WELCOME = [
    "# GraphiQL for the invoicing API.",
    "# Put a token in Headers below (./run prints some):",
    '#   {"Authorization": "Bearer <token>"}',
    "# then run: Ctrl-Enter or the play button.",
    "# Ctrl-Space completes as you type.",
    "",
    "{",
    "  viewer {",
    "    scope",
    "    user { email }",
    "  }",
    "}",
    "",
  ].join("\n");

  // The query and variables live in the address (?q=...&variables=...), so that a page can
  // be shared; the headers, which hold tokens, never do.
  var params = new URLSearchParams(location.search);
  function remember(name, value) {
    if (value) {
      params.set(name, value);
    } else {
      params.delete(name);
    }
    var search = params.toString();
    history.replaceState(null, "", search ? "?" + search : location.pathname);
  }

  function authorization(headers) {
    for (var name in headers) {
      if (name.toLowerCase() === "authorization") return headers[name];
    }
    return undefined;
  }

  // Read from the text sent (the editor's own parse may lag a keystroke behind).
  function isSubscription(graphQLParams) {
    var operation;
    try {
      operation = GraphiQL.GraphQL.getOperationAST(
        GraphiQL.GraphQL.parse(graphQLParams.query), graphQLParams.operationName || undefined);
    } catch (error) {
      return false; // not valid GraphQL: the server says what is wrong with it
    }
    return Boolean(operation) && operation.operation === "subscription";
  }

  function closeError(event) {
    var reason = event.reason ? " " + event.reason : "";
    var hint = event.code === 4403 ? ": send a valid token in the Authorization header" : "";
    return new Error("The server closed the WebSocket (" + event.code + reason + ")" + hint + ".");
  }

  // One socket per subscription, closed with it: an observable, as GraphiQL takes them.
  function subscribe(graphQLParams, headers) {
    return {
      subscribe: function (sink) {
        var token = authorization(headers);
        var client = graphqlWs.createClient({
          url: socketUrl,
          retryAttempts: 0,
          connectionParams: token ? { authorization: token } : {},
        });
        var dispose = client.subscribe(graphQLParams, {
          next: function (value) { sink.next(value); },
          error: function (error) {
            if (Array.isArray(error)) {
              sink.next({ errors: error });
              sink.complete();
            } else {
              sink.error(error && typeof error.code === "number" ? closeError(error) : error);
            }
            client.dispose();
          },
          complete: function () {
            sink.complete();
            client.dispose();
          },
        });
        return {
          unsubscribe: function () {
            dispose();
            client.dispose();
          },
        };
      },
    };
  }

  function fetcher(graphQLParams, options) {
    var headers = (options && options.headers) || {};
    if (isSubscription(graphQLParams)) return subscribe(graphQLParams, headers);
    return fetch(endpoint, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json", Accept: "application/json" }, headers),
      body: JSON.stringify(graphQLParams),
    }).then(function (response) {
      return response.json();
    });
  }

  var explorer = GraphiQLPluginExplorer.explorerPlugin();

  function Page() {
    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      plugins: [explorer],
      defaultQuery: WELCOME,
      query: params.get("q") || undefined,
      variables: params.get("variables") || undefined,
      onEditQuery: function (value) { remember("q", value); },
      onEditVariables: function (value) { remember("variables", value); },
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      inputValueDeprecation: true,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(Page));
})();
