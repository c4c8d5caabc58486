// What the portal and the console share of the public GraphQL API, written once: a GraphQL
// call over HTTP with its errors said in words, the session kept in the tab's sessionStorage,
// the live client (graphql-transport-ws, with graphql-ws), a download through a signed link,
// text-only elements and notices, and the sign-in form both pages have. Each page keeps its
// own documents and screens.
(function () {
  "use strict";

  var ENDPOINT = location.origin + "/graphql";
  var SOCKET = ENDPOINT.replace(/^http/, "ws");
  var EXPIRED = "Your session has expired. Please sign in again.";
  var SIGNED_OUT = "You are signed out.";

  var $ = function (id) { return document.getElementById(id); };

  // The token was refused (expired, revoked): the page ends its session.
  function SessionEnded() {}

  // One GraphQL request; `token` as the bearer when given. Answers `data`, or throws
  // SessionEnded on UNAUTHENTICATED, or an Error with the first message (its `codes`: every
  // error's `extensions.code`).
  function call(query, variables, token) {
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    return fetch(ENDPOINT, {
      method: "POST", headers: headers, credentials: "omit", cache: "no-store",
      body: JSON.stringify({ query: query, variables: variables || {} }),
    }).then(function (response) {
      return response.json().catch(function () {
        throw new Error("The server answered " + response.status + ". Please try again in a moment.");
      });
    }, function () {
      throw new Error("The server cannot be reached. Check your connection, then try again.");
    }).then(function (result) {
      var errors = result.errors || [];
      var codes = errors.map(function (e) { return e.extensions && e.extensions.code; });
      if (codes.indexOf("UNAUTHENTICATED") >= 0) throw new SessionEnded();
      if (errors.length) {
        var error = new Error(errors[0].message);
        error.codes = codes;
        throw error;
      }
      return result.data;
    });
  }

  // A session ({token, expiresAt}) under `key` in the tab's sessionStorage.
  function keep(key, value) {
    try {
      if (value) sessionStorage.setItem(key, JSON.stringify(value));
      else sessionStorage.removeItem(key);
    } catch (e) { /* storage refused: the session lasts as long as the page */ }
  }

  function kept(key) {
    try {
      var value = JSON.parse(sessionStorage.getItem(key) || "null");
      return value && typeof value.token === "string" && typeof value.expiresAt === "string" ? value : null;
    } catch (e) {
      return null;
    }
  }

  // The live client: the token of `token()` in `connection_init`, reconnecting for good.
  function liveClient(token, on) {
    return graphqlWs.createClient({
      url: SOCKET,
      connectionParams: function () { return { authorization: "Bearer " + (token() || "") }; },
      retryAttempts: Infinity,
      // 1, 2, 4... seconds between attempts, at most 30, spread so that clients do not return together.
      retryWait: function (retries) {
        var wait = Math.min(1000 * Math.pow(2, retries), 30000) * (0.5 + Math.random() / 2);
        return new Promise(function (resolve) { setTimeout(resolve, wait); });
      },
      // 4403: the token was refused when the socket opened; no retry brings it back.
      shouldRetry: function (event) { return !(event && event.code === 4403); },
      on: on,
    });
  }

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  // Downloads a signed link (asked for at the click: links live minutes) as `filename`.
  function save(url, filename) {
    var link = element("a");
    link.href = url;
    link.download = filename;
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  // A message in the page's alert box `target` (none: hidden); an error unless `calm`.
  function notice(message, target, calm) {
    var box = $(target);
    box.textContent = message || "";
    box.hidden = !message;
    box.className = "notice" + (calm ? "" : " error");
  }

  // --- The sign-in form: #sign-in-form in #sign-in, with #email, #password, #sign-in-button,
  // #sign-in-title and the alert #sign-in-message, the same on both pages --------------------

  // The form shown (the page has hidden the rest) with `message`: calm when signed out, else an
  // error; the focus on the message's heading, or on the e-mail field when there is none.
  function showSignIn(message) {
    $("sign-in").hidden = false;
    notice(message, "sign-in-message", message === SIGNED_OUT);
    $("password").value = "";
    (message ? $("sign-in-title") : $("email")).focus();
  }

  // What was typed in, or null once the form said what is missing (the focus on it).
  function readSignIn() {
    var email = $("email").value.trim();
    var password = $("password").value;
    if (email && password) return { email: email, password: password };
    notice("Enter your e-mail and your password.", "sign-in-message");
    (email ? $("password") : $("email")).focus();
    return null;
  }

  // The form's submit: the page's `login` document with what was typed in. A LoginSuccess goes
  // to `signedIn(result)` (the button stays disabled until what it returns settles); a refusal
  // or a failed call is said at the form. The password is emptied once the server answered.
  function signIn(login, signedIn) {
    return function (event) {
      event.preventDefault();
      var typed = readSignIn();
      if (!typed) return;
      var button = $("sign-in-button");
      button.disabled = true;
      notice("", "sign-in-message");
      call(login, typed).then(function (data) {
        var result = data.login;
        $("password").value = "";
        if (result.__typename === "LoginSuccess") return signedIn(result);
        notice(result.message, "sign-in-message");
        $("password").focus();
        return null;
      }).catch(function (error) {
        if (!(error instanceof SessionEnded)) notice(error.message, "sign-in-message");
      }).then(function () {
        button.disabled = false;
      });
    };
  }

  window.pagesApi = {
    SessionEnded: SessionEnded, call: call, keep: keep, kept: kept, liveClient: liveClient, element: element,
    save: save, notice: notice, showSignIn: showSignIn, signIn: signIn, EXPIRED: EXPIRED, SIGNED_OUT: SIGNED_OUT,
  };
})();
