// The month-end console: an OWNER or VIEWER signs in (`login`) and works through a month: the
// month at a glance, the approval work (filters, checks, revision diffs, lines and the costs
// behind them, bulk approval acknowledging warnings, regenerate, void and re-issue, credit
// notes) and the settings a month needs, all live (`invoiceStatusChanged`). A CUSTOMER is
// handed to the portal. Viewers see everything and get no control. The page writes text only
// (textContent), never markup; its GraphQL documents are constants (console-api.js).
(function () {
  "use strict";

  var api = window.consoleApi;
  var shared = window.pagesApi;
  var element = shared.element;
  var ROW_HEIGHT = 44; // px, as console.css sets it: the list renders only the rows in sight
  var OVERSCAN = 12;
  var EXPIRED = shared.EXPIRED;
  var DISPLAY = [
    ["DRAFT", "Draft"], ["PENDING", "Pending"], ["SENT", "Sent"], ["PAID", "Paid"], ["OVERDUE", "Overdue"],
    ["REFUNDED", "Refunded"], ["VOIDED", "Voided"],
  ];
  var STATUS = {
    READY_TO_INVOICE: "Ready to generate", GENERATING: "Generating", AWAITING_APPROVAL: "Awaiting approval",
    ERROR: "Error", APPROVED: "Approved", VOIDED: "Voided",
  };
  var AUTO = { OFF: "Off", GENERATE: "Generate", SEND: "Generate and send" };
  // A cell that reads as an amount ("€1,234.00", "+£5.00", "12.5 %") is aligned as one.
  var AMOUNT = /^[+\-−]?\D{0,3}\d[\d.,\s]*( %)?$/;
  var SCOPES = { OWNER: "Owner", VIEWER: "Viewer", CUSTOMER: "Customer" };

  var $ = function (id) { return document.getElementById(id); };
  var state = {
    viewer: null, month: null, view: "month", owner: false,
    rows: new Map(), order: [], shown: [], selected: new Set(), elements: new Map(),
    detail: null, live: null, imports: new Map(), listRun: 0, monthRun: 0, refreshTimer: null, accounts: null,
  };

  // --- Formatting ---------------------------------------------------------------------------

  function button(text, handler, className, label) {
    var node = element("button", text, className);
    node.type = "button";
    if (label) node.setAttribute("aria-label", label);
    node.addEventListener("click", handler);
    return node;
  }

  function cells(tr, values) {
    values.forEach(function (value, i) {
      var td = element(i === 0 ? "th" : "td");
      if (i === 0) td.scope = "row";
      if (value instanceof Node) td.appendChild(value);
      else td.textContent = value;
      if (i > 0 && typeof value === "string" && AMOUNT.test(value)) td.className = "amount";
      tr.appendChild(td);
    });
    return tr;
  }

  function money(amount, currency) {
    try {
      return new Intl.NumberFormat("en-GB", { style: "currency", currency: currency }).format(Number(amount));
    } catch (e) {
      return currency + " " + amount;
    }
  }

  function monthName(period) {
    return new Intl.DateTimeFormat("en-GB", { month: "long", year: "numeric", timeZone: "UTC" })
      .format(new Date(period + "-01T00:00:00Z"));
  }

  function day(iso) {
    if (!iso) return "—";
    return new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" })
      .format(new Date(iso.length === 10 ? iso + "T00:00:00Z" : iso));
  }

  function warnings(invoice) {
    return (invoice.checks || []).filter(function (c) { return c.severity === "WARNING"; });
  }

  // A message in the page's alert box (`target`, else the one under the bar); an error unless `calm`.
  function show(message, target, calm) { shared.notice(message, target || "message", calm); }

  function announce(message) { $("announcer").textContent = message; }

  function failed(error) {
    if (!(error instanceof api.SessionEnded)) show(error.message);
  }

  // --- Session ------------------------------------------------------------------------------

  function showSignIn(message) {
    ["month", "approval", "settings", "nav", "who"].forEach(function (id) { $(id).hidden = true; });
    shared.showSignIn(message);
  }

  function endSession(message) {
    stopLive();
    api.remember(null);
    state.viewer = null;
    state.rows.clear();
    state.order = [];
    state.shown = [];
    state.selected.clear();
    state.elements.clear();
    $("rows").replaceChildren();
    ["by-status-rows", "source-rows", "import-rows", "reconciliation-rows", "attention", "rate-rows", "rule-rows",
      "account-rows", "people-rows", "token-rows", "detail-lines", "drill-rows", "drill-count", "detail-credit",
      "detail-credit-notes"].forEach(function (id) {
      $(id).replaceChildren();
    });
    $("detail").hidden = true;
    show("");
    showSignIn(message);
  }

  function toPortal(token, expiresAt) {
    api.remember({ token: token, expiresAt: expiresAt }, api.PORTAL_STORED);
    api.remember(null);
    location.assign("/portal");
  }

  // A customer's sign-in is handed to the portal; anyone else's opens the console.
  function signedIn(result) {
    if (result.viewer.scope === "CUSTOMER") return toPortal(result.token, result.expiresAt);
    api.remember({ token: result.token, expiresAt: result.expiresAt });
    return open();
  }

  function signOut() {
    var session = api.session();
    endSession(shared.SIGNED_OUT);
    if (session) api.call(api.DOCUMENTS.SIGN_OUT, {}, session.token).catch(function () {});
  }

  function open() {
    return api.ask("VIEWER").then(function (data) {
      var viewer = data.viewer;
      if (viewer.scope === "CUSTOMER") {
        var session = api.session();
        return toPortal(session.token, session.expiresAt);
      }
      state.viewer = viewer;
      state.owner = viewer.scope === "OWNER";
      document.querySelectorAll(".owner-only").forEach(function (node) { node.hidden = !state.owner; });
      var months = data.billingPeriods.edges.map(function (e) { return e.node.month; });
      var picker = $("month-picker");
      picker.replaceChildren.apply(picker, months.map(function (m) {
        var option = element("option", monthName(m));
        option.value = m;
        return option;
      }));
      state.month = months.indexOf(state.month) >= 0 ? state.month : months[0] || null;
      if (state.month) picker.value = state.month;
      $("who-email").textContent = viewer.user.email;
      $("who-scope").textContent = SCOPES[viewer.scope] + " · " + viewer.organization.name;
      $("sign-in").hidden = true;
      $("who").hidden = false;
      $("nav").hidden = false;
      startLive();
      state.accounts = null;
      route();
    }).catch(function (error) {
      if (!(error instanceof api.SessionEnded)) show(error.message, "sign-in-message");
    });
  }

  // --- Views --------------------------------------------------------------------------------

  function route() {
    if (!state.viewer) return;
    var view = (location.hash || "#month").slice(1);
    if (["month", "approval", "settings"].indexOf(view) < 0) view = "month";
    state.view = view;
    ["month", "approval", "settings"].forEach(function (id) {
      $(id).hidden = id !== view;
      var link = $("nav-" + id);
      if (id === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    });
    show("");
    if (!state.month) {
      show("No month has been closed yet: invoices appear once a month closes.", "message", true);
      return;
    }
    document.title = { month: "The month", approval: "Approval", settings: "Settings" }[view] + " · " +
      monthName(state.month) + " · Month-end console";
    if (view === "month") loadMonth();
    else if (view === "approval") loadList();
    else loadSettings();
    if (view !== "month") loadAccounts();
  }

  function focusTitle(id) {
    if (document.activeElement === document.body || document.activeElement === $("main") ||
        (document.activeElement && document.activeElement.closest("nav"))) {
      $(id).focus();
    }
  }

  // --- The month at a glance ------------------------------------------------------------------

  // The month's figures come from the server in the one request (`monthSummary`: summed by
  // the database); the invoice list is read only by the approval view, page by page.
  function loadMonth() {
    var run = ++state.monthRun;
    var month = state.month;
    $("month-title").textContent = monthName(month);
    $("month").removeAttribute("data-ready");
    return api.ask("MONTH", { month: month }).then(function (data) {
      if (run !== state.monthRun) return;
      renderMonth(data);
      $("month").setAttribute("data-ready", month);
      window.consoleTimings = { monthReady: performance.now(), invoices: data.monthSummary.invoiceCount };
      focusTitle("month-title");
      loadAccounts();
    }).catch(failed);
  }

  function renderMonth(data) {
    var summary = data.monthSummary;
    var byStatus = {};
    summary.totals.forEach(function (t) {
      var entry = byStatus[t.displayStatus] = byStatus[t.displayStatus] || { count: 0, totals: [] };
      entry.count += t.count;
      entry.totals.push(money(t.total, t.currency));
    });
    $("by-status-rows").replaceChildren.apply($("by-status-rows"), DISPLAY.filter(function (d) {
      return byStatus[d[0]];
    }).map(function (d) {
      var entry = byStatus[d[0]];
      return cells(element("tr"), [d[1], String(entry.count), entry.totals.join(" · ")]);
    }));
    if (!summary.invoiceCount) $("by-status-rows").appendChild(cells(element("tr"), ["No invoices this month", "0", "—"]));

    var a = summary.attention;
    var needs = [];
    if (a.invoicesWithWarnings) {
      needs.push([a.warnings + " warnings to acknowledge on " + a.invoicesWithWarnings + " invoices", "WARNING"]);
    }
    if (a.errors) needs.push([a.errors + " invoices failed to generate", "ERROR"]);
    if (a.awaitingApproval) needs.push([a.awaitingApproval + " invoices await approval", "AWAITING_APPROVAL"]);
    if (a.ready) needs.push([a.ready + " invoices are ready to generate", "READY_TO_INVOICE"]);
    if (a.undelivered) needs.push([a.undelivered + " approved invoices were not delivered", "APPROVED"]);
    if (a.lateDeliveries) {
      needs.push([a.lateDeliveries + " approved invoices had costs delivered after approval, not billed yet", "APPROVED"]);
    }
    var period = data.billingPeriods.edges.length ? data.billingPeriods.edges[0].node : null;
    if (period && period.completeness && period.completeness !== "COMPLETE") {
      needs.push(["The month's cost data is " + period.completeness.toLowerCase(), null]);
    }
    var list = $("attention");
    list.replaceChildren.apply(list, needs.map(function (need) {
      var item = element("li");
      if (need[1]) {
        item.appendChild(button(need[0], function () { openApproval(need[1]); }, "link"));
      } else {
        item.textContent = need[0];
      }
      return item;
    }));
    if (!needs.length) list.appendChild(element("li", "Nothing needs a person."));

    $("completeness").textContent = period
      ? "The month is " + period.state.toLowerCase() + (period.completeness ? ", its data " + period.completeness.toLowerCase() : "") +
        (period.forcedAt ? " (closed early)" : "") + "."
      : "The month has not closed yet.";
    var sources = period ? period.sourceCompleteness : [];
    $("source-rows").replaceChildren.apply($("source-rows"), sources.map(function (s) {
      return cells(element("tr"), [s.costSource.name, s.provider || "All", s.state[0] + s.state.slice(1).toLowerCase() +
        (s.writtenAt ? " (" + day(s.writtenAt) + ")" : "")]);
    }));
    if (!sources.length) $("source-rows").appendChild(cells(element("tr"), ["No cost sources", "—", "Imported by hand"]));

    var imports = data.costImports.edges.map(function (e) { return e.node; });
    $("import-rows").replaceChildren.apply($("import-rows"), imports.map(importRow));
    imports.forEach(function (i) { if (i.state === "QUEUED" || i.state === "RUNNING") followImport(i.id); });

    $("reconciliation-rows").replaceChildren.apply($("reconciliation-rows"), data.reconciliation.totals.map(function (t) {
      return cells(element("tr"), [t.currency, money(t.imported, t.currency), money(t.invoiced, t.currency),
        money(t.notInvoiced, t.currency), money(t.integrationExcluded, t.currency), money(t.unclaimed, t.currency),
        money(t.late, t.currency)]);
    }));
  }

  function importRow(i) {
    var tr = cells(element("tr"), [i.filename, i.state[0] + i.state.slice(1).toLowerCase(),
      i.rows ? i.rowsDone.toLocaleString("en-GB") + " of " + i.rows.toLocaleString("en-GB") : i.rowsDone.toLocaleString("en-GB")]);
    tr.dataset.id = i.id;
    return tr;
  }

  function followImport(id) {
    if (!state.live || state.imports.has(id)) return;
    state.imports.set(id, state.live.subscribe({ query: api.DOCUMENTS.IMPORT_LIVE, variables: { id: id } }, {
      next: function (message) {
        var found = message.data && message.data.costImportChanged;
        var old = found && document.querySelector('#import-rows tr[data-id="' + CSS.escape(found.id) + '"]');
        if (old) old.replaceWith(importRow(found));
      },
      error: function () { state.imports.delete(id); },
      complete: function () { state.imports.delete(id); },
    }));
  }

  function openApproval(filter) {
    $("filter-status").value = filter === "WARNING" ? "AWAITING_APPROVAL" : filter === "ERROR" ? "ERROR" : filter;
    $("filter-checks").value = filter === "WARNING" ? "WARNING" : "";
    if (location.hash === "#approval") loadList();
    else location.hash = "#approval";
  }

  // --- Dialogs ------------------------------------------------------------------------------
  // Each change is a modal dialog: focus stays inside it (Tab goes round), Escape or its
  // [data-close] control closes it, and the focus goes back where it came from.

  var FOCUSABLE = "button, input, select, textarea, [href], [tabindex]:not([tabindex='-1'])";
  var back = { node: null, key: null, fallback: null }; // where the focus returns on closing

  function focusables(dialog) {
    return Array.prototype.filter.call(dialog.querySelectorAll(FOCUSABLE), function (node) {
      return !node.disabled && node.getClientRects().length > 0;
    });
  }

  // Tab and Shift+Tab go round the dialog's controls and never leave it.
  function trap(event) {
    if (event.key !== "Tab") return;
    var controls = focusables(event.currentTarget);
    if (!controls.length) return;
    var first = controls[0];
    var last = controls[controls.length - 1];
    if (event.shiftKey && (document.activeElement === first || controls.indexOf(document.activeElement) < 0)) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || controls.indexOf(document.activeElement) < 0)) {
      event.preventDefault();
      first.focus();
    }
  }

  function openDialog(dialog, first, fallback) {
    var from = document.activeElement;
    back = { node: from, key: from && from.dataset ? from.dataset.key : null, fallback: fallback };
    dialog.showModal();
    first.focus();
  }

  // Back to the control that opened the dialog, or to its successor once the list was drawn
  // again (same `data-key`), or to the section's own control when the row is gone.
  function returnFocus() {
    var target = back.node && back.node.isConnected ? back.node : null;
    if (!target && back.key) target = document.querySelector('[data-key="' + CSS.escape(back.key) + '"]');
    if (!target && back.fallback) target = $(back.fallback);
    back = { node: null, key: null, fallback: null };
    if (target && target.getClientRects().length) target.focus();
  }

  function keepDialog(dialog) {
    dialog.addEventListener("keydown", trap);
    dialog.addEventListener("close", returnFocus);
    dialog.querySelectorAll("[data-close]").forEach(function (node) {
      node.addEventListener("click", function () { dialog.close(); });
    });
  }

  // Closed by its answer, which takes the focus itself (a notice of what was done).
  function closeDialog(dialog) {
    back = { node: null, key: null, fallback: null };
    dialog.close();
  }

  window.consoleParts = {
    $: $, api: api, state: state, element: element, button: button, cells: cells, money: money, day: day,
    monthName: monthName, warnings: warnings, show: show, announce: announce, failed: failed, focusTitle: focusTitle,
    openDialog: openDialog, keepDialog: keepDialog, closeDialog: closeDialog,
    STATUS: STATUS, AUTO: AUTO, SCOPES: SCOPES, ROW_HEIGHT: ROW_HEIGHT, OVERSCAN: OVERSCAN,
  };

  // --- Live ---------------------------------------------------------------------------------

  function startLive() {
    if (state.live) return;
    var client = api.liveClient({
      connected: function (socket, payload, wasRetry) {
        $("live").textContent = "Live updates on";
        if (wasRetry) refresh();
      },
      closed: function (event) {
        if (state.live !== client) return;
        if (event && event.code === 4403) endSession(EXPIRED);
        else $("live").textContent = "Live updates paused: reconnecting…";
      },
    });
    state.live = client;
    $("live").textContent = "Connecting for live updates…";
    client.subscribe({ query: api.DOCUMENTS.LIVE }, {
      next: function (message) {
        var event = message.data && message.data.invoiceStatusChanged;
        if (event) changed(event.invoice);
      },
      error: function () {
        if (state.live === client) $("live").textContent = "Live updates are off: reload the page to try again.";
      },
      complete: function () {},
    });
  }

  function stopLive() {
    var client = state.live;
    state.live = null;
    state.imports.clear();
    $("live").textContent = "";
    if (client) client.dispose();
  }

  function changed(invoice) {
    window.consoleList.update(invoice, true);
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(function () {
      if (state.view === "month") loadMonth();
    }, 400);
  }

  function refresh() {
    if (state.view === "month") loadMonth();
    else if (state.view === "approval") loadList();
  }

  function loadList() { window.consoleList.load(); }
  function loadSettings() { window.consoleSettings.load(); }
  // The accounts (the list's filter, the settings' switches) once a session, after the month's
  // figures: they would otherwise compete with them for the server.
  function loadAccounts() {
    if (!state.accounts) state.accounts = window.consoleSettings.accounts();
  }

  // --- Start --------------------------------------------------------------------------------

  function start() {
    $("sign-in-form").addEventListener("submit", shared.signIn(api.DOCUMENTS.LOGIN, signedIn));
    $("sign-out").addEventListener("click", signOut);
    window.addEventListener("hashchange", route);
    $("month-picker").addEventListener("change", function () {
      state.month = $("month-picker").value;
      state.selected.clear();
      route();
    });
    api.onSessionEnded(function () { endSession(EXPIRED); });
    var kept = api.stored();
    if (kept && Date.parse(kept.expiresAt) > Date.now()) {
      api.remember(kept);
      open();
    } else {
      api.remember(null);
      showSignIn(kept ? EXPIRED : "");
    }
  }

  // The other parts (console-list.js, console-settings.js) are loaded by then.
  document.addEventListener("DOMContentLoaded", start);
})();
