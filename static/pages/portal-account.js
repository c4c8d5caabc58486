// The customer's account in the portal (portal.js uses it): what it owes (balance and ageing,
// per currency), its statement of account for a date range as PDF (printed on the server's
// worker: asked for with `printStatement`, then its signed link read until it is there), and
// its usage by service category where the MSP allows it (`usageVisibleToCustomer`). Text
// only (textContent), like the rest of the page.
(function () {
  "use strict";

  var FIELDS =
    "id name usageVisibleToCustomer balance { currency open overdue credit net }" +
    " ageing { currency current days1To30 days31To60 days61To90 over90Days total }";
  var PRINT =
    "mutation PortalStatement($account: ID!, $from: Date!, $to: Date!) {" +
    " printStatement(accountId: $account, from: $from, to: $to) {" +
    " __typename ... on StatementPrinting { ready } ... on UserError { message } } }";
  var STATEMENT_LINK =
    "query PortalStatementLink($account: ID!, $from: Date!, $to: Date!) { node(id: $account) {" +
    " ... on ManagedAccount { statement(from: $from, to: $to) { pdfUrl } } } }";
  var USAGE =
    "query PortalUsage($account: ID!, $from: Month!, $to: Month!) {" +
    " usage(accountId: $account, from: $from, to: $to) { csvUrl lines { month serviceCategory currency amount } } }";
  // The worker prints a statement in a second or two; a busy one may take longer.
  var POLL_MS = 1000;
  var POLL_TRIES = 90;
  var AGEING = ["current", "days1To30", "days31To60", "days61To90", "over90Days", "total"];

  function iso(date) {
    return date.toISOString().slice(0, 10);
  }

  function create(tools) {
    var $ = tools.$;
    var element = tools.element;
    var account = null;
    var printing = 0; // which statement request is under way (a newer one or a sign-out ends it)

    function card(balance) {
      var box = element("div", null, "card");
      box.appendChild(element("h3", balance.currency));
      var list = element("dl");
      [["Open", balance.open], ["Overdue", balance.overdue], ["Credit on account", balance.credit]]
        .forEach(function (pair) {
          list.appendChild(element("dt", pair[0]));
          list.appendChild(element("dd", tools.money(pair[1], balance.currency), "amount"));
        });
      box.appendChild(list);
      return box;
    }

    function ageingRow(ageing) {
      var tr = element("tr");
      var head = element("th", ageing.currency);
      head.scope = "row";
      tr.appendChild(head);
      AGEING.forEach(function (name) {
        tr.appendChild(element("td", tools.money(ageing[name], ageing.currency), "amount"));
      });
      return tr;
    }

    function showBalance(found) {
      var owed = found.balance.filter(function (b) {
        return Number(b.open) !== 0 || Number(b.credit) !== 0;
      });
      $("balance-cards").replaceChildren.apply($("balance-cards"), owed.map(card));
      $("balance-none").hidden = owed.length !== 0;
      $("ageing-rows").replaceChildren.apply($("ageing-rows"), found.ageing.map(ageingRow));
      $("ageing-table").hidden = found.ageing.length === 0;
      $("balance").hidden = false;
    }

    // The statement's range starts as this year so far.
    function defaultRange() {
      var today = new Date();
      if (!$("statement-from").value) $("statement-from").value = today.getFullYear() + "-01-01";
      if (!$("statement-to").value) $("statement-to").value = iso(today);
      if (!$("usage-to").value) $("usage-to").value = iso(today).slice(0, 7);
      if (!$("usage-from").value) {
        var start = new Date(Date.UTC(today.getFullYear(), today.getMonth() - 2, 1));
        $("usage-from").value = iso(start).slice(0, 7);
      }
    }

    function show(found) {
      account = found;
      if (!found) return clear();
      showBalance(found);
      defaultRange();
      $("statement").hidden = false;
      $("usage").hidden = !found.usageVisibleToCustomer;
    }

    function clear() {
      account = null;
      printing += 1;
      ["balance-cards", "ageing-rows", "usage-rows"].forEach(function (id) { $(id).replaceChildren(); });
      ["balance", "statement", "usage", "usage-table", "usage-csv", "usage-empty"].forEach(function (id) { $(id).hidden = true; });
      ["statement-message", "usage-message"].forEach(function (id) { tools.show("", id); });
    }

    function statusOf(message, calm) {
      tools.show(message, "statement-message", calm);
    }

    function printStatement(event) {
      event.preventDefault();
      var range = { account: account && account.id, from: $("statement-from").value, to: $("statement-to").value };
      if (!range.from || !range.to) {
        statusOf("Choose the first and the last day of the statement.");
        (range.from ? $("statement-to") : $("statement-from")).focus();
        return;
      }
      var mine = ++printing;
      var button = $("statement-button");
      button.disabled = true;
      statusOf("Printing your statement…", true);
      tools.ask(PRINT, range).then(function (data) {
        var result = data.printStatement;
        if (result.__typename !== "StatementPrinting") throw new Error(result.message);
        return waitForLink(range, mine, POLL_TRIES);
      }).then(function (url) {
        if (mine !== printing) return;
        tools.save(url, "statement-" + range.from + "-" + range.to + ".pdf");
        statusOf("Your statement from " + tools.day(range.from) + " to " + tools.day(range.to) + " is downloaded.", true);
      }).catch(function (error) {
        if (mine === printing && !tools.ended(error)) statusOf(error.message);
      }).then(function () {
        button.disabled = false;
      });
    }

    function waitForLink(range, mine, tries) {
      return tools.ask(STATEMENT_LINK, range).then(function (data) {
        var url = data.node && data.node.statement && data.node.statement.pdfUrl;
        if (url || mine !== printing) return url;
        if (tries <= 1) throw new Error("The statement is taking longer than usual. Please try again in a minute.");
        return new Promise(function (resolve) { setTimeout(resolve, POLL_MS); }).then(function () {
          return waitForLink(range, mine, tries - 1);
        });
      });
    }

    function showUsage(event) {
      event.preventDefault();
      var range = { account: account && account.id, from: $("usage-from").value, to: $("usage-to").value };
      if (!range.from || !range.to) {
        tools.show("Choose the first and the last month.", "usage-message");
        return;
      }
      var button = $("usage-button");
      button.disabled = true;
      tools.ask(USAGE, range).then(function (data) {
        var usage = data.usage;
        if (!usage) throw new Error("Your usage is not available.");
        $("usage-rows").replaceChildren.apply($("usage-rows"), usage.lines.map(function (line) {
          var tr = element("tr");
          var head = element("th", tools.month(line.month));
          head.scope = "row";
          tr.appendChild(head);
          tr.appendChild(element("td", line.serviceCategory || "Other"));
          tr.appendChild(element("td", tools.money(line.amount, line.currency), "amount"));
          return tr;
        }));
        $("usage-table").hidden = usage.lines.length === 0;
        $("usage-empty").hidden = usage.lines.length !== 0;
        $("usage-csv").hidden = usage.lines.length === 0;
        tools.show("", "usage-message");
      }).catch(function (error) {
        if (!tools.ended(error)) tools.show(error.message, "usage-message");
      }).then(function () {
        button.disabled = false;
      });
    }

    function usageCsv() {
      // The list's link may be older than its few minutes: a fresh one for each download.
      var range = { account: account && account.id, from: $("usage-from").value, to: $("usage-to").value };
      tools.ask(USAGE, range).then(function (data) {
        if (!data.usage) throw new Error("Your usage is not available.");
        tools.save(data.usage.csvUrl, "usage-" + range.from + "-" + range.to + ".csv");
      }).catch(function (error) {
        if (!tools.ended(error)) tools.show(error.message, "usage-message");
      });
    }

    $("statement-form").addEventListener("submit", printStatement);
    $("usage-form").addEventListener("submit", showUsage);
    $("usage-csv").addEventListener("click", usageCsv);
    return { show: show, clear: clear };
  }

  window.PortalAccount = { FIELDS: FIELDS, create: create };
})();
