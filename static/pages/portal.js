// The customer portal: a customer signs in (`login`), sees its approved invoices with their
// payments and refunds, downloads their PDFs (signed links) and follows their changes live
// (`invoiceStatusChanged` over graphql-transport-ws), then signs out (`revokeToken`). Beside
// each invoice: its lines as CSV and its credit notes with their PDFs; above them, what the
// account owes and its statement, and its usage where allowed (portal-account.js).
// Only a CUSTOMER session is kept: anyone else's token is revoked at once, before anything
// is read with it. The page writes text only (textContent), never markup.
(function () {
  "use strict";

  var shared = window.pagesApi;
  var SessionEnded = shared.SessionEnded, call = shared.call, element = shared.element, save = shared.save;
  var show = shared.notice; // a message in one of the page's alert boxes
  var STORED = "invoicing.portal.session";
  var PAGE_SIZE = 50;
  // setTimeout's limit (about 24.8 days); a longer session is checked again then.
  var LONGEST_TIMER = 2147483647;

  var INVOICE_FIELDS =
    "fragment PortalInvoice on Invoice { id number period status paymentStatus currency total amountDue " +
    "dueDate pdfUrl payments { id amount paidOn method } refunds { id amount refundedOn }" +
    " creditNotes { id number issueDate total } }";
  var LOGIN =
    "mutation PortalLogin($email: String!, $password: String!) { login(email: $email, password: $password) {" +
    " __typename ... on LoginSuccess { token expiresAt viewer { scope } } ... on UserError { code message } } }";
  var LIST =
    "query PortalInvoices($after: String) { viewer { scope user { email } managedAccount { " + PortalAccount.FIELDS + " } }" +
    " invoices(first: " + PAGE_SIZE + ", after: $after, orderBy: {field: ISSUE_DATE, direction: DESC}) {" +
    " edges { node { ...PortalInvoice } } pageInfo { hasNextPage endCursor } } } " + INVOICE_FIELDS;
  var PDF_LINK = "query PortalPdf($id: ID!) { node(id: $id) { ... on Invoice { pdfUrl } } }";
  var CSV_LINK = "query PortalCsv($id: ID!) { node(id: $id) { ... on Invoice { csvUrl } } }";
  var CREDIT_NOTE_LINK = "query PortalCreditNote($id: ID!) { node(id: $id) { ... on CreditNote { pdfUrl } } }";
  var ACCOUNT = "query PortalAccount { viewer { managedAccount { " + PortalAccount.FIELDS + " } } }";
  var LIVE = "subscription PortalLive { invoiceStatusChanged { invoice { ...PortalInvoice } } } " + INVOICE_FIELDS;
  var SIGN_OUT = "mutation PortalSignOut { revokeToken { __typename } }";

  var EXPIRED = shared.EXPIRED;
  var STATUS = {
    UNPAID: "Unpaid", PARTIALLY_PAID: "Partly paid", PAID: "Paid", OVERDUE: "Overdue",
    PARTIALLY_REFUNDED: "Partly refunded", REFUNDED: "Refunded",
  };
  var METHODS = {
    BANK_TRANSFER: "bank transfer", CARD: "card", DIRECT_DEBIT: "direct debit", CHECK: "cheque",
    CASH: "cash", OTHER: "other",
  };

  var $ = function (id) { return document.getElementById(id); };
  var session = null; // {token, expiresAt}
  var invoices = new Map(); // id -> invoice, as last read
  var live = null; // the graphql-ws client while signed in
  var expiryTimer = null;

  // --- Calls --------------------------------------------------------------------------------

  // As the signed-in customer: a refused token ends the session on screen too.
  function ask(query, variables) {
    if (!session) return Promise.reject(new SessionEnded());
    return call(query, variables, session.token).catch(function (error) {
      if (error instanceof SessionEnded) endSession(EXPIRED);
      throw error;
    });
  }

  // --- Formatting ---------------------------------------------------------------------------

  function money(amount, currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency }).format(Number(amount));
    } catch (e) {
      return currency + " " + amount;
    }
  }

  function day(iso) {
    if (!iso) return "—";
    return new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" })
      .format(new Date(iso + "T00:00:00Z"));
  }

  function month(period) {
    return new Intl.DateTimeFormat(undefined, { month: "long", year: "numeric", timeZone: "UTC" })
      .format(new Date(period + "-01T00:00:00Z"));
  }

  function statusOf(invoice) {
    if (invoice.status === "VOIDED") return { text: "Voided", tone: "voided" };
    var tone = { PAID: "paid", OVERDUE: "overdue", REFUNDED: "voided" }[invoice.paymentStatus] || "open";
    return { text: STATUS[invoice.paymentStatus] || invoice.paymentStatus, tone: tone };
  }

  // --- Screens ------------------------------------------------------------------------------

  function showSignIn(message) {
    $("invoices").hidden = true;
    $("who").hidden = true;
    shared.showSignIn(message);
  }

  function showInvoices(viewer) {
    $("sign-in").hidden = true;
    $("who").hidden = false;
    $("who-account").textContent = viewer.managedAccount ? viewer.managedAccount.name : "";
    $("who-email").textContent = viewer.user.email;
    var first = $("invoices").hidden;
    $("invoices").hidden = false;
    if (first) $("invoices-title").focus();
  }

  var LABELS = ["Month", "Total", "Amount due", "Due date", "Status", "Payments and refunds", "Credit notes", ""];

  function row(invoice) {
    var tr = element("tr");
    tr.dataset.id = invoice.id;
    var number = element("th", invoice.number || "—");
    number.scope = "row";
    tr.appendChild(number);
    tr.appendChild(element("td", month(invoice.period)));
    tr.appendChild(element("td", money(invoice.total, invoice.currency), "amount"));
    tr.appendChild(element("td", money(invoice.amountDue, invoice.currency), "amount"));
    tr.appendChild(element("td", day(invoice.dueDate)));
    var status = statusOf(invoice);
    var cell = element("td");
    cell.appendChild(element("span", status.text, "badge " + status.tone));
    tr.appendChild(cell);
    tr.appendChild(movements(invoice));
    tr.appendChild(creditNotes(invoice));
    var download = element("td", null, "downloads");
    if (invoice.pdfUrl) {
      var name = invoice.number || "invoice";
      download.appendChild(downloadButton("Download PDF", "Download " + name + " as PDF",
        PDF_LINK, invoice.id, "pdfUrl", name + ".pdf"));
      download.appendChild(downloadButton("Lines as CSV", "Download the lines of " + name + " as CSV",
        CSV_LINK, invoice.id, "csvUrl", name + ".csv"));
    } else {
      download.appendChild(element("span", "PDF not ready yet", "muted"));
    }
    tr.appendChild(download);
    // Narrow screens show each cell on its own line, named (portal.css).
    Array.prototype.forEach.call(tr.querySelectorAll("td"), function (td, i) { td.dataset.label = LABELS[i]; });
    return tr;
  }

  function movements(invoice) {
    var cell = element("td");
    var items = [];
    invoice.payments.forEach(function (p) {
      items.push([p.paidOn, "Paid " + money(p.amount, invoice.currency) + " on " + day(p.paidOn) +
        " (" + (METHODS[p.method] || p.method) + ")"]);
    });
    invoice.refunds.forEach(function (r) {
      items.push([r.refundedOn, "Refunded " + money(r.amount, invoice.currency) + " on " + day(r.refundedOn)]);
    });
    if (!items.length) {
      cell.appendChild(element("span", "None yet", "muted"));
      return cell;
    }
    items.sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0; });
    var list = element("ul", null, "movements");
    items.forEach(function (item) { list.appendChild(element("li", item[1])); });
    cell.appendChild(list);
    return cell;
  }

  function creditNotes(invoice) {
    var cell = element("td");
    var notes = invoice.creditNotes || [];
    if (!notes.length) {
      cell.appendChild(element("span", "None", "muted"));
      return cell;
    }
    var list = element("ul", null, "movements");
    notes.forEach(function (note) {
      var item = element("li", note.number + ": " + money(note.total, invoice.currency) + " credited on " + day(note.issueDate) + " ");
      item.appendChild(downloadButton("PDF", "Download credit note " + note.number + " as PDF",
        CREDIT_NOTE_LINK, note.id, "pdfUrl", note.number + ".pdf"));
      list.appendChild(item);
    });
    cell.appendChild(list);
    return cell;
  }

  function downloadButton(text, label, query, id, field, filename) {
    var button = element("button", text, "secondary");
    button.type = "button";
    button.setAttribute("aria-label", label);
    button.addEventListener("click", function () { download(query, id, field, filename, button); });
    return button;
  }

  function newestFirst(a, b) {
    var left = a.period + (a.number || ""), right = b.period + (b.number || "");
    return left < right ? 1 : left > right ? -1 : 0;
  }

  function render() {
    var body = $("invoice-rows");
    var list = Array.from(invoices.values()).sort(newestFirst);
    body.replaceChildren.apply(body, list.map(row));
    $("invoice-table").hidden = list.length === 0;
    $("empty").hidden = list.length !== 0;
  }

  function announce(message) {
    $("announcer").textContent = message;
  }

  // --- Session ------------------------------------------------------------------------------

  function remember(value) {
    session = value;
    shared.keep(STORED, value);
  }

  function expired(value) {
    return Date.parse(value.expiresAt) <= Date.now();
  }

  function watchExpiry() {
    clearTimeout(expiryTimer);
    if (!session) return;
    var left = Date.parse(session.expiresAt) - Date.now();
    expiryTimer = setTimeout(function () {
      if (session && expired(session)) endSession(EXPIRED);
      else watchExpiry();
    }, Math.min(Math.max(left, 0), LONGEST_TIMER));
  }

  // Everything the session showed goes with it.
  function endSession(message) {
    clearTimeout(expiryTimer);
    stopLive();
    remember(null);
    invoices.clear();
    render();
    account.clear();
    show("", "invoices-message");
    showSignIn(message);
  }

  // Only a customer's sign-in opens the portal.
  function signedIn(result) {
    if (result.viewer.scope !== "CUSTOMER") {
      // Not a customer: the token goes at once, nothing is read with it.
      call(SIGN_OUT, {}, result.token).catch(function () {});
      show("This portal is for customers. MSP users work in their console or through the API.", "sign-in-message");
      return null;
    }
    remember({ token: result.token, expiresAt: result.expiresAt });
    return open();
  }

  function signOut() {
    var token = session && session.token;
    // The live client first, so that the revocation does not read as an expired session.
    endSession(shared.SIGNED_OUT);
    if (token) call(SIGN_OUT, {}, token).catch(function () {});
  }

  // --- Invoices -----------------------------------------------------------------------------

  function load() {
    var seen = new Map();
    var viewer = null;
    function page(after) {
      return ask(LIST, { after: after }).then(function (data) {
        viewer = data.viewer;
        data.invoices.edges.forEach(function (edge) { seen.set(edge.node.id, edge.node); });
        var info = data.invoices.pageInfo;
        return info.hasNextPage ? page(info.endCursor) : null;
      });
    }
    return page(null).then(function () {
      if (!session) return;
      if (!viewer || viewer.scope !== "CUSTOMER") {
        signOut();
        return;
      }
      invoices = seen;
      render();
      account.show(viewer.managedAccount);
      showInvoices(viewer);
      show("", "invoices-message");
    });
  }

  function open() {
    watchExpiry();
    return load().then(startLive, function (error) {
      if (error instanceof SessionEnded || !session) return;
      // Signed in, but the list could not be read: say so where it would be, with the way out.
      $("sign-in").hidden = true;
      $("who").hidden = false;
      $("invoices").hidden = false;
      show(error.message + " Reload the page to try again.", "invoices-message");
    });
  }

  function download(query, id, field, filename, button) {
    // A link is signed for a few minutes: a fresh one for each download.
    button.disabled = true;
    ask(query, { id: id }).then(function (data) {
      var url = data.node && data.node[field];
      if (!url) throw new Error(filename + " is not available right now.");
      save(url, filename);
      show("", "invoices-message");
    }).catch(function (error) {
      if (!(error instanceof SessionEnded)) show(error.message, "invoices-message");
    }).then(function () {
      button.disabled = false;
    });
  }

  // --- Live updates -------------------------------------------------------------------------

  function liveStatus(text) {
    $("live").textContent = text;
  }

  // What is owed changes with the invoices: read again after a live change.
  function refreshAccount() {
    ask(ACCOUNT).then(function (data) {
      if (session && data.viewer.managedAccount) account.show(data.viewer.managedAccount);
    }).catch(function () {});
  }

  function changed(invoice) {
    refreshAccount();
    var before = invoices.get(invoice.id);
    invoices.set(invoice.id, invoice);
    render();
    var status = statusOf(invoice).text;
    if (!before) announce((invoice.number || "An invoice") + " was issued.");
    else announce((invoice.number || "The invoice") + ": " + status + ", " + money(invoice.amountDue, invoice.currency) + " due.");
    var shown = document.querySelector('tr[data-id="' + CSS.escape(invoice.id) + '"]');
    if (shown) shown.classList.add("changed");
  }

  function startLive() {
    if (live || !session) return;
    var client = shared.liveClient(function () { return session && session.token; }, {
      connected: function (socket, payload, wasRetry) {
        liveStatus("Live updates on");
        // Events are not replayed: what changed while the socket was down is read again.
        if (wasRetry) load().catch(function () {});
      },
      closed: function (event) {
        if (live !== client) return;
        if (event && event.code === 4403) endSession(EXPIRED);
        else liveStatus("Live updates paused: reconnecting…");
      },
    });
    live = client;
    liveStatus("Connecting for live updates…");
    subscribe(client);
  }

  function subscribe(client) {
    client.subscribe({ query: LIVE }, {
      next: function (message) {
        if (message.data && message.data.invoiceStatusChanged) changed(message.data.invoiceStatusChanged.invoice);
      },
      error: function (error) {
        if (live !== client) return;
        var codes = Array.isArray(error) ? error.map(function (e) { return e.extensions && e.extensions.code; }) : [];
        if (codes.indexOf("UNAUTHENTICATED") >= 0) {
          endSession(EXPIRED);
        } else if (codes.length) {
          // FELL_BEHIND, EVENTS_MISSED, SHUTTING_DOWN: subscribe again, then read again what
          // may have been missed, after a pause (a restarting server needs a moment).
          setTimeout(function () {
            if (live !== client) return;
            subscribe(client);
            load().catch(function () {});
          }, 1000 + Math.random() * 2000);
        } else if (!(error && error.code === 4403)) {
          liveStatus("Live updates are off: reload the page to try again.");
        }
      },
      complete: function () {},
    });
  }

  function stopLive() {
    var client = live;
    live = null;
    liveStatus("");
    if (client) client.dispose();
  }

  // --- Start --------------------------------------------------------------------------------

  var account = PortalAccount.create({
    $: $, element: element, money: money, day: day, month: month, show: show, ask: ask, save: save,
    ended: function (error) { return error instanceof SessionEnded; },
  });

  $("sign-in-form").addEventListener("submit", shared.signIn(LOGIN, signedIn));
  $("sign-out").addEventListener("click", signOut);

  var kept = shared.kept(STORED);
  if (kept && !expired(kept)) {
    session = kept;
    open();
  } else {
    remember(null);
    showSignIn(kept ? EXPIRED : "");
  }
})();
