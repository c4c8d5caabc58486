// The owner's actions on one invoice (PDF, approve, regenerate, void and re-issue, credit
// note) and the settings a month needs: its exchange rates, the billing rules, each account's
// automatic invoicing, people and tokens. Viewers read them all and get no control.
(function () {
  "use strict";

  var p = window.consoleParts;
  var $ = p.$, api = p.api, state = p.state, element = p.element, button = p.button, cells = p.cells;
  var accounts = [];

  // --- Actions on one invoice ---------------------------------------------------------------

  function render(invoice) {
    var box = $("detail-actions");
    box.replaceChildren();
    if (invoice.pdfUrl) box.appendChild(button("Download PDF", function (e) { pdf(invoice, e.target); }, "secondary"));
    if (!state.owner) return;
    var s = invoice.status;
    if (s === "AWAITING_APPROVAL") box.appendChild(button("Approve", function () { window.consoleList.askApproval([invoice.id]); }));
    if (s === "AWAITING_APPROVAL" || s === "ERROR") {
      box.appendChild(button("Regenerate", function () { bulk("REGENERATE", { ids: [invoice.id] }, "regenerateInvoices", "sent to generation"); }, "secondary"));
    }
    if (s === "APPROVED") {
      box.appendChild(button("Void…", function () {
        reason(box, "Void invoice", function (text) {
          return bulk("VOID", { ids: [invoice.id], reason: text, key: api.key() }, "voidInvoices", "voided");
        });
      }, "secondary"));
      box.appendChild(button("Credit note…", function () {
        reason(box, "Issue credit note", function (text) {
          return api.ask("CREDIT", { input: { invoiceId: invoice.id, reason: text, mode: "FULL" }, key: api.key() }).then(function (data) {
            var r = data.createCreditNote;
            if (r.__typename !== "CreditNoteCreated") throw new Error(r.message);
            p.announce("Credit note " + r.creditNote.number + " issued.");
            p.show("Credit note " + r.creditNote.number + " issued for " + p.money(r.creditNote.total, invoice.currency) + ".", "message", true);
            window.consoleList.update(r.invoice, false);
            return window.consoleList.open(invoice.id);
          });
        });
      }, "secondary"));
    }
    if (s === "VOIDED" && !invoice.replacedBy) {
      box.appendChild(button("Re-issue", function () {
        api.ask("REISSUE", { id: invoice.id, key: api.key() }).then(function (data) {
          var r = data.reissueInvoice;
          if (r.__typename !== "InvoiceReissued") throw new Error(r.message);
          window.consoleList.update(r.replaced, false);
          p.show("A new draft replaces " + invoice.number + ": generate it when its costs are right.", "message", true);
          return window.consoleList.open(invoice.id);
        }).catch(p.failed);
      }, "secondary"));
    }
  }

  function bulk(name, variables, field, verb) {
    return api.ask(name, variables).then(function (data) {
      window.consoleList.results(data[field], verb);
      if (state.detail) return window.consoleList.open(state.detail, true);
      return null;
    }).catch(p.failed);
  }

  // A short form asking why, for a void or a credit note.
  function reason(box, action, run) {
    var form = element("form", null, "inline");
    var field = element("div", null, "field");
    var label = element("label", "Reason");
    label.htmlFor = "action-reason";
    var input = element("input");
    input.id = "action-reason";
    input.required = true;
    field.appendChild(label);
    field.appendChild(input);
    form.appendChild(field);
    var submit = element("button", action);
    submit.type = "submit";
    form.appendChild(submit);
    form.appendChild(button("Cancel", function () { form.remove(); }, "secondary"));
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (!input.value.trim()) { input.focus(); return; }
      submit.disabled = true;
      Promise.resolve(run(input.value.trim())).catch(p.failed).then(function () { form.remove(); });
    });
    box.appendChild(form);
    input.focus();
  }

  function pdf(invoice, target) {
    // A link is signed for a few minutes: a fresh one for each download.
    target.disabled = true;
    api.ask("INVOICE", { id: invoice.id }).then(function (data) {
      var url = data.node && data.node.pdfUrl;
      if (!url) throw new Error("The PDF is not available right now.");
      var link = element("a");
      link.href = url;
      link.download = (invoice.number || "invoice") + ".pdf";
      link.hidden = true;
      document.body.appendChild(link);
      link.click();
      link.remove();
    }).catch(p.failed).then(function () { target.disabled = false; });
  }

  // --- Settings -----------------------------------------------------------------------------

  function loadAccounts() {
    var found = [];
    return api.pages("ACCOUNTS", {}, function (d) { return d.managedAccounts; }, function (c) {
      c.edges.forEach(function (e) { found.push(e.node); });
    }).then(function () {
      accounts = found.sort(function (a, b) { return a.name.localeCompare(b.name); });
      var select = $("filter-account");
      var first = select.firstElementChild;
      select.replaceChildren(first);
      accounts.forEach(function (a) {
        var option = element("option", a.name);
        option.value = a.id;
        select.appendChild(option);
      });
      if (state.view === "settings") renderAccounts();
    }).catch(p.failed);
  }

  function load() {
    $("settings").removeAttribute("data-ready");
    return api.ask("SETTINGS", { month: state.month, owner: state.owner }).then(function (data) {
      renderRates(data.exchangeRates.edges.map(function (e) { return e.node; }));
      renderAccounts();
      // The billing rules, the people and the API tokens, with the owner's controls.
      window.consoleAdmin.render(data);
      $("settings").setAttribute("data-ready", "true");
      p.focusTitle("settings-title");
    }).catch(p.failed);
  }

  function renderRates(rates) {
    var rows = $("rate-rows");
    rows.replaceChildren.apply(rows, rates.map(function (r) { return cells(element("tr"), [r.baseCurrency, r.currency, r.rate]); }));
    if (!rates.length) rows.appendChild(cells(element("tr"), ["No rates for " + p.monthName(state.month), "—", "—"]));
  }

  function renderAccounts() {
    var rows = $("account-rows");
    rows.replaceChildren.apply(rows, accounts.map(function (a) {
      var control = p.AUTO[a.autoInvoice];
      if (state.owner) {
        control = element("select");
        control.setAttribute("aria-label", "Automatic invoicing for " + a.name);
        Object.keys(p.AUTO).forEach(function (mode) {
          var option = element("option", p.AUTO[mode]);
          option.value = mode;
          control.appendChild(option);
        });
        control.value = a.autoInvoice;
        control.addEventListener("change", function (e) { autoInvoice(a, e.target); });
      }
      return cells(element("tr"), [a.name, a.currency, control]);
    }));
  }

  function autoInvoice(account, select) {
    var mode = select.value;
    api.ask("AUTO_INVOICE", { id: account.id, mode: mode }).then(function (data) {
      var r = data.updateManagedAccount;
      if (r.__typename !== "ManagedAccountSaved") throw new Error(r.message);
      account.autoInvoice = r.managedAccount.autoInvoice;
      p.announce("Automatic invoicing for " + account.name + ": " + p.AUTO[mode] + ".");
    }).catch(function (error) {
      select.value = account.autoInvoice;
      p.failed(error);
    });
  }

  function setRate(event) {
    event.preventDefault();
    var input = {
      month: state.month, baseCurrency: $("rate-base").value.trim().toUpperCase(),
      currency: $("rate-currency").value.trim().toUpperCase(), rate: $("rate-value").value.trim(),
    };
    api.ask("SET_RATE", { input: input }).then(function (data) {
      var r = data.setExchangeRate;
      if (r.__typename !== "ExchangeRateSaved") {
        p.show(r.message);
        var at = { rate: "rate-value", currency: "rate-currency", baseCurrency: "rate-base" }[r.field];
        if (at) $(at).focus();
        return null;
      }
      p.show("");
      p.announce("1 " + r.exchangeRate.baseCurrency + " = " + r.exchangeRate.rate + " " + r.exchangeRate.currency + " saved.");
      $("rate-value").value = "";
      return load();
    }).catch(p.failed);
  }

  $("rate-form").addEventListener("submit", setRate);

  window.consoleActions = { render: render };
  window.consoleSettings = { load: load, accounts: loadAccounts, accountList: function () { return accounts; } };
})();
