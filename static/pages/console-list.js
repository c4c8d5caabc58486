// The approval work: the month's invoices, paged from the API and virtualised on screen (only
// the rows in sight are in the document), filtered, selected and approved many at once with
// their warnings acknowledged; one invoice's checks, revision diff, lines and the costs behind
// each line, its PDF, and the owner's actions on it. Text only, never markup.
(function () {
  "use strict";

  var p = window.consoleParts;
  var $ = p.$, api = p.api, state = p.state, element = p.element, button = p.button, cells = p.cells;
  var CHECK_NAMES = {
    TOTAL_CHANGED: "Total changed", SERVICE_CHANGED: "Service changed", NEW_SERVICE: "New service",
    SERVICE_GONE: "Service gone", NO_DATA: "No data", ZERO_TOTAL: "Zero total", NEGATIVE_TOTAL: "Negative total",
    RATE_CHANGED: "Exchange rate changed", STALE_REVISION: "Costs arrived since generation",
    INCOMPLETE_DATA: "Incomplete cost data",
  };
  var topSpacer = spacer(), bottomSpacer = spacer();
  var drawn = { start: -1, end: -1, count: -1 };

  function spacer() {
    var tr = element("tr", null, "spacer");
    tr.setAttribute("aria-hidden", "true");
    var td = element("td");
    td.colSpan = 6;
    tr.appendChild(td);
    return tr;
  }

  function filter() {
    var f = { periodFrom: state.month, periodTo: state.month };
    if ($("filter-status").value) f.status = [$("filter-status").value];
    if ($("filter-account").value) f.accountIds = [$("filter-account").value];
    var search = $("filter-search").value.trim();
    if (search) f.search = search;
    return f;
  }

  function load() {
    var run = ++state.listRun;
    state.rows.clear();
    state.order = [];
    state.elements.clear();
    $("approval").removeAttribute("data-ready");
    $("list-count").textContent = "Loading…";
    applyChecks();
    return api.pages("INVOICES", { filter: filter() }, function (d) { return d.invoices; }, function (c) {
      if (run !== state.listRun) return false;
      c.edges.forEach(function (e) {
        if (!state.rows.has(e.node.id)) state.order.push(e.node.id);
        state.rows.set(e.node.id, e.node);
      });
      applyChecks();
    }).then(function () {
      if (run !== state.listRun) return;
      Array.from(state.selected).forEach(function (id) { if (!state.rows.has(id)) state.selected.delete(id); });
      applyChecks();
      $("approval").setAttribute("data-ready", "true");
      p.focusTitle("approval-title");
    }).catch(p.failed);
  }

  function passes(invoice) {
    var checks = $("filter-checks").value;
    if (checks === "WARNING") return p.warnings(invoice).length > 0;
    if (checks === "CLEAN") return p.warnings(invoice).length === 0;
    return true;
  }

  function applyChecks() {
    state.shown = state.order.filter(function (id) { return passes(state.rows.get(id)); });
    $("list-count").textContent = state.shown.length.toLocaleString("en-GB") + " invoices";
    drawn.count = -1;
    render();
    selectionChanged();
  }

  // Only the rows in sight (and a margin) are in the table; spacers stand for the others.
  function render() {
    var list = $("list");
    var count = state.shown.length;
    var start = Math.max(0, Math.floor(list.scrollTop / p.ROW_HEIGHT) - p.OVERSCAN);
    var end = Math.min(count, Math.ceil((list.scrollTop + (list.clientHeight || 600)) / p.ROW_HEIGHT) + p.OVERSCAN);
    if (start === drawn.start && end === drawn.end && count === drawn.count) return;
    drawn = { start: start, end: end, count: count };
    topSpacer.firstChild.style.height = start * p.ROW_HEIGHT + "px";
    bottomSpacer.firstChild.style.height = (count - end) * p.ROW_HEIGHT + "px";
    var wanted = [topSpacer].concat(state.shown.slice(start, end).map(rowElement), [bottomSpacer]);
    var keep = new Set(wanted);
    var body = $("rows");
    // Rows leaving sight go first, so that the ones staying are never moved (a moved row would
    // lose the keyboard focus it holds).
    Array.from(body.children).forEach(function (tr) { if (!keep.has(tr)) tr.remove(); });
    var at = body.firstChild;
    wanted.forEach(function (tr) {
      if (at === tr) at = at.nextSibling;
      else body.insertBefore(tr, at);
    });
  }

  function checksText(invoice) {
    var warned = p.warnings(invoice).length;
    var notes = (invoice.checks || []).length - warned;
    if (warned) return warned + (warned === 1 ? " warning" : " warnings");
    if (notes) return notes + (notes === 1 ? " note" : " notes");
    return "Clean";
  }

  function rowElement(id) {
    var tr = state.elements.get(id);
    if (tr) return tr;
    tr = element("tr");
    tr.dataset.id = id;
    state.elements.set(id, tr);
    fill(tr, state.rows.get(id));
    return tr;
  }

  function fill(tr, invoice) {
    var name = (invoice.number || "Draft") + " · " + invoice.account.name;
    var values = [];
    if (state.owner) {
      var box = element("input");
      box.type = "checkbox";
      box.checked = state.selected.has(invoice.id);
      box.disabled = invoice.status !== "AWAITING_APPROVAL";
      box.setAttribute("aria-label", "Select " + name);
      box.addEventListener("change", function () {
        if (box.checked) state.selected.add(invoice.id);
        else state.selected.delete(invoice.id);
        selectionChanged();
      });
      values.push(box);
    }
    values.push(button(invoice.number || "Draft", function () { openDetail(invoice.id); }, "link", "Open " + name));
    values.push(invoice.account.name);
    values.push(element("span", p.STATUS[invoice.status], "badge " + invoice.status.toLowerCase()));
    values.push(p.money(invoice.total, invoice.currency));
    values.push(element("span", checksText(invoice), p.warnings(invoice).length ? "warn" : "muted"));
    tr.replaceChildren();
    values.forEach(function (value, i) {
      var td = element(i === (state.owner ? 1 : 0) ? "th" : "td");
      if (td.tagName === "TH") td.scope = "row";
      if (value instanceof Node) td.appendChild(value);
      else td.textContent = value;
      if (i === values.length - 2) td.className = "amount";
      tr.appendChild(td);
    });
  }

  // An invoice as an answer or a live event has it now.
  function update(invoice, live) {
    var before = state.rows.get(invoice.id);
    if (!before) {
      if (!live || state.view !== "approval" || invoice.period !== state.month) return;
      var f = filter();
      if (f.status && f.status.indexOf(invoice.status) < 0) return;
      if (f.accountIds && f.accountIds.indexOf(invoice.account.id) < 0) return;
      if (f.search) return;
      state.order.push(invoice.id);
    }
    state.rows.set(invoice.id, invoice);
    if (invoice.status !== "AWAITING_APPROVAL") state.selected.delete(invoice.id);
    var tr = state.elements.get(invoice.id);
    if (tr) {
      var focused = tr.contains(document.activeElement) ? Array.prototype.indexOf.call(tr.querySelectorAll("input,button"), document.activeElement) : -1;
      fill(tr, invoice);
      if (focused >= 0) tr.querySelectorAll("input,button")[focused].focus();
      if (live) {
        tr.classList.remove("changed");
        void tr.offsetWidth;
        tr.classList.add("changed");
      }
    }
    if (!before) applyChecks();
    else selectionChanged();
    if (live && before && before.status !== invoice.status) {
      p.announce((invoice.number || invoice.account.name) + " is now " + p.STATUS[invoice.status].toLowerCase() + ".");
    }
    if (state.detail === invoice.id && live) openDetail(invoice.id, true);
  }

  function selectionChanged() {
    var n = state.selected.size;
    var approve = $("approve-selected");
    approve.disabled = n === 0;
    approve.textContent = n ? "Approve " + n + " selected" : "Approve selected";
    var selectable = state.shown.filter(function (id) { return state.rows.get(id).status === "AWAITING_APPROVAL"; });
    var all = $("select-all");
    all.checked = selectable.length > 0 && selectable.every(function (id) { return state.selected.has(id); });
    all.disabled = selectable.length === 0;
  }

  function selectAll() {
    var on = $("select-all").checked;
    state.shown.forEach(function (id) {
      if (state.rows.get(id).status !== "AWAITING_APPROVAL") return;
      if (on) state.selected.add(id);
      else state.selected.delete(id);
      var box = state.elements.has(id) && state.elements.get(id).querySelector("input");
      if (box) box.checked = on;
    });
    selectionChanged();
  }

  // --- Approval -----------------------------------------------------------------------------

  function askApproval(ids) {
    var codes = {};
    ids.forEach(function (id) {
      p.warnings(state.rows.get(id) || { checks: [] }).forEach(function (c) {
        (codes[c.code] = codes[c.code] || []).push(c.message);
      });
    });
    var dialog = $("approve-dialog");
    dialog.dataset.ids = JSON.stringify(ids);
    $("approve-summary").textContent = ids.length === 1
      ? "Approve this invoice? It is numbered for good and can no longer change."
      : "Approve these " + ids.length + " invoices? They are numbered for good and can no longer change.";
    var box = $("approve-codes");
    box.replaceChildren.apply(box, Object.keys(codes).sort().map(function (code) {
      var label = element("label", null, "check");
      var input = element("input");
      input.type = "checkbox";
      input.value = code;
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + (CHECK_NAMES[code] || code) + " (" + codes[code].length +
        (codes[code].length === 1 ? " invoice" : " invoices") + "): " + codes[code][0]));
      return label;
    }));
    $("approve-warnings").hidden = Object.keys(codes).length === 0;
    p.openDialog(dialog, dialog.querySelector("input"), "approve-selected");
  }

  function approve(event) {
    event.preventDefault();
    var dialog = $("approve-dialog");
    var ids = JSON.parse(dialog.dataset.ids || "[]");
    var acknowledge = Array.from($("approve-codes").querySelectorAll("input:checked")).map(function (i) { return i.value; });
    $("approve-confirm").disabled = true;
    api.ask("APPROVE", { ids: ids, acknowledge: acknowledge, notify: $("approve-notify").checked, key: api.key() })
      .then(function (data) {
        p.closeDialog(dialog);
        results(data.approveInvoices, "approved");
      }).catch(function (error) {
        dialog.close();
        p.failed(error);
      }).then(function () { $("approve-confirm").disabled = false; });
  }

  // A bulk answer: what succeeded, and each refusal with its invoice.
  function results(payload, verb) {
    var box = $("approval-results");
    box.replaceChildren();
    box.hidden = false;
    if (payload.__typename !== "InvoiceActionResults") {
      box.className = "notice error";
      box.textContent = payload.message;
      return;
    }
    var refused = payload.results.filter(function (r) { return r.error; });
    payload.results.forEach(function (r) { if (r.invoice) update(r.invoice, false); });
    box.className = "notice" + (refused.length ? " error" : "");
    box.appendChild(element("p", payload.succeeded + (payload.succeeded === 1 ? " invoice " : " invoices ") + verb +
      (refused.length ? "; " + refused.length + " refused:" : ".")));
    if (refused.length) {
      var list = element("ul");
      refused.forEach(function (r) {
        var invoice = state.rows.get(r.id);
        var name = invoice ? (invoice.number || "Draft") + " (" + invoice.account.name + ")" : r.id;
        list.appendChild(element("li", name + ": " + r.error.message));
      });
      box.appendChild(list);
    }
    box.focus();
  }

  // --- One invoice --------------------------------------------------------------------------

  function openDetail(id, quiet) {
    state.detail = id;
    return api.ask("INVOICE", { id: id }).then(function (data) {
      var invoice = data.node;
      if (!invoice || state.detail !== id) return;
      state.rows.set(id, Object.assign(state.rows.get(id) || {}, invoice));
      renderDetail(invoice);
      $("detail").hidden = false;
      if (!quiet) $("detail-title").focus();
    }).catch(p.failed);
  }

  function closeDetail() {
    var id = state.detail;
    state.detail = null;
    $("detail").hidden = true;
    var tr = id && state.elements.get(id);
    if (tr && tr.isConnected) tr.querySelector("th button").focus();
  }

  function renderDetail(invoice) {
    $("detail-title").textContent = (invoice.number || "Draft invoice") + " · " + invoice.account.name;
    var summary = p.STATUS[invoice.status] + " · " + p.monthName(invoice.period) + " · total " +
      p.money(invoice.total, invoice.currency) + (invoice.status === "APPROVED" ? " · due " + p.day(invoice.dueDate) : "");
    if (invoice.replaces) summary += " · replaces " + invoice.replaces.number;
    if (invoice.replacedBy) summary += " · replaced by " + (invoice.replacedBy.number || "a draft");
    if (Number(invoice.amountCredited) > 0) summary += " · credited " + p.money(invoice.amountCredited, invoice.currency);
    if (invoice.errorMessage) summary += " · " + invoice.errorMessage;
    $("detail-summary").textContent = summary;
    window.consoleActions.render(invoice);

    var checks = $("detail-checks");
    checks.replaceChildren.apply(checks, invoice.checks.map(function (c) {
      return element("li", (c.severity === "WARNING" ? "Warning" : "Note") + " — " + (CHECK_NAMES[c.code] || c.code) +
        ": " + c.message, c.severity === "WARNING" ? "warn" : "");
    }));
    if (!invoice.checks.length) checks.appendChild(element("li", "The checks found nothing."));

    var revisions = invoice.revisions.slice().sort(function (a, b) { return b.revision - a.revision; });
    var diff = revisions.length ? revisions[0].diff : null;
    var box = $("detail-diff");
    box.replaceChildren();
    if (!diff) {
      box.appendChild(element("p", revisions.length ? "The first revision: nothing to compare." : "Not generated yet.", "muted"));
    } else {
      box.appendChild(element("p", "Revision " + revisions[0].revision + " against revision " + diff.against +
        ": total " + signed(diff.totalChange, invoice.currency) +
        (diff.causes.length ? " (because of: " + diff.causes.join(", ").toLowerCase().replace(/_/g, " ") + ")" : "")));
      var table = element("table", null, "diff");
      table.appendChild(element("caption", "Lines that changed", "visually-hidden"));
      var head = element("tr");
      ["Line", "Before", "After", "Difference"].forEach(function (h) { var th = element("th", h); th.scope = "col"; head.appendChild(th); });
      table.appendChild(element("thead")).appendChild(head);
      var body = table.appendChild(element("tbody"));
      var money = function (v) { return v === null || v === undefined ? "—" : p.money(v, invoice.currency); };
      diff.added.concat(diff.removed, diff.changed).forEach(function (line) {
        body.appendChild(cells(element("tr"), [line.description, money(line.before), money(line.after),
          signed(line.difference, invoice.currency)]));
      });
      if (!body.children.length) body.appendChild(cells(element("tr"), ["No line changed", "—", "—", "—"]));
      box.appendChild(table);
    }

    var lines = $("detail-lines");
    lines.replaceChildren.apply(lines, invoice.lineItems.map(function (line) {
      var tr = cells(element("tr"), [String(line.position), line.description, line.service || line.kind.toLowerCase(),
        p.money(line.amount, invoice.currency)]);
      var td = element("td");
      if (line.kind === "USAGE") {
        td.appendChild(button("Costs", function () { drill(invoice, line); }, "secondary",
          "Costs behind line " + line.position + ": " + line.description));
      }
      tr.appendChild(td);
      return tr;
    }));
    $("drill").hidden = true;
    drilled = null;
  }

  function signed(amount, currency) {
    return (Number(amount) > 0 ? "+" : "") + p.money(amount, currency);
  }

  // The cost records behind a line, a page at a time ("Show the next 50" reads the next page
  // through its cursor), with how many there are in all.
  var drilled = null; // {invoice, line, after, shown, run}
  var drillRun = 0;

  function drill(invoice, line) {
    drilled = { invoice: invoice, line: line, after: null, shown: 0, run: ++drillRun };
    $("drill-rows").replaceChildren();
    $("drill-more").hidden = true;
    return drillPage(drilled).then(function () {
      $("drill").hidden = false;
      $("drill-title").focus();
    });
  }

  function drillPage(at) {
    $("drill").setAttribute("aria-busy", "true");
    return api.ask("LINE_COSTS", { id: at.invoice.id, position: at.line.position, after: at.after }).then(function (data) {
      if (at !== drilled || at.run !== drillRun) return null;
      var found = data.node && data.node.lineItem;
      var costs = found ? found.costs : { totalCount: 0, edges: [], pageInfo: { hasNextPage: false, endCursor: null } };
      var total = costs.totalCount;
      $("drill-title").textContent = "Costs behind line " + at.line.position + ": " + at.line.description + " (" +
        total.toLocaleString("en-GB") + (total === 1 ? " record" : " records") + ")";
      var added = costs.edges.map(function (e) {
        var c = e.node;
        var tr = cells(element("tr"), [c.subAccountName || c.subAccountId, c.serviceName || "—", c.resourceId || "—",
          p.money(c.billedCost, c.billingCurrency)]);
        tr.firstChild.tabIndex = -1;
        return tr;
      });
      added.forEach(function (tr) { $("drill-rows").appendChild(tr); });
      at.shown += added.length;
      at.after = costs.pageInfo.endCursor || at.after;
      var more = costs.pageInfo.hasNextPage;
      $("drill-count").textContent = at.shown.toLocaleString("en-GB") + " of " + total.toLocaleString("en-GB") +
        (total === 1 ? " record" : " records") + " shown" + (more ? "" : ": all of them");
      var left = total - at.shown;
      $("drill-more").textContent = left > api.COSTS_PAGE ? "Show the next " + api.COSTS_PAGE : "Show the last " + left;
      $("drill-more").hidden = !more;
      return added;
    }).catch(p.failed).then(function (added) {
      $("drill").removeAttribute("aria-busy");
      return added;
    });
  }

  function drillMore() {
    var at = drilled;
    if (!at) return;
    var more = $("drill-more");
    more.disabled = true;
    drillPage(at).then(function (added) {
      more.disabled = false;
      // The first row read takes the focus: reading on goes down the new rows, and Tab from
      // them reaches the button again while more remain.
      if (added && added.length) added[0].firstChild.focus();
      else if (!more.hidden) more.focus();
    });
  }

  // --- Start --------------------------------------------------------------------------------

  var typing = null;
  $("filters").addEventListener("submit", function (e) { e.preventDefault(); load(); });
  $("filter-status").addEventListener("change", load);
  $("filter-account").addEventListener("change", load);
  $("filter-checks").addEventListener("change", applyChecks);
  $("filter-search").addEventListener("input", function () { clearTimeout(typing); typing = setTimeout(load, 300); });
  $("list").addEventListener("scroll", function () { requestAnimationFrame(render); });
  window.addEventListener("resize", function () { requestAnimationFrame(render); });
  $("select-all").addEventListener("change", selectAll);
  $("approve-selected").addEventListener("click", function () { askApproval(Array.from(state.selected)); });
  $("approve-form").addEventListener("submit", approve);
  p.keepDialog($("approve-dialog"));
  $("detail-close").addEventListener("click", closeDetail);
  $("drill-more").addEventListener("click", drillMore);
  $("detail").addEventListener("keydown", function (e) { if (e.key === "Escape") closeDetail(); });

  window.consoleList = {
    load: load, update: update, open: openDetail, results: results, askApproval: askApproval, CHECK_NAMES: CHECK_NAMES,
  };
})();
