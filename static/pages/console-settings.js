// The settings a month needs: its exchange rates, the billing rules, each account's automatic
// invoicing, people and tokens. Viewers read them all and get no control. (The actions on one
// invoice are console-actions.js.)
(function () {
  "use strict";

  var p = window.consoleParts;
  var $ = p.$, api = p.api, state = p.state, element = p.element, button = p.button, cells = p.cells;
  var accounts = [];

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

  window.consoleSettings = { load: load, accounts: loadAccounts, accountList: function () { return accounts; } };
})();
