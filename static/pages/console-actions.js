// The actions on one invoice: its PDF, and the owner's approve, regenerate, void, re-issue and
// credit notes (in full, by an amount or by chosen lines, in part or whole, with a reason), as
// `createCreditNote` takes them, its typed refusals said beside the form. The invoice's credit
// notes are listed with their PDFs for everyone. Viewers get no control. Text only.
(function () {
  "use strict";

  var p = window.consoleParts;
  var $ = p.$, api = p.api, state = p.state, element = p.element, button = p.button;
  var save = window.pagesApi.save;
  var MODES = { FULL: "in full", AMOUNT: "by an amount", LINES: "by lines" };
  // What `createCreditNote` credits by lines: usage and billing-rule lines with an amount.
  var CREDITABLE = ["USAGE", "RULE"];

  function render(invoice) {
    var box = $("detail-actions");
    box.replaceChildren();
    renderCreditNotes(invoice);
    // An open credit form stays while its invoice is shown and can still be credited.
    var credit = $("detail-credit");
    if (credit.dataset.invoice !== invoice.id || !state.owner || invoice.status !== "APPROVED") close();
    if (invoice.pdfUrl) box.appendChild(button("Download PDF", function (e) { pdf(invoice, e.target); }, "secondary"));
    if (!state.owner) return;
    var s = invoice.status;
    if (s === "AWAITING_APPROVAL") box.appendChild(button("Approve", function () { window.consoleList.askApproval([invoice.id]); }));
    if (s === "AWAITING_APPROVAL" || s === "ERROR") {
      box.appendChild(button("Regenerate", function () { bulk("REGENERATE", { ids: [invoice.id] }, "regenerateInvoices", "sent to generation"); }, "secondary"));
    }
    // Approved, delivered or not, paid or not: the API credits any approved invoice.
    if (s === "APPROVED") {
      box.appendChild(button("Void…", function () {
        reason(box, "Void invoice", function (text) {
          return bulk("VOID", { ids: [invoice.id], reason: text, key: api.key() }, "voidInvoices", "voided");
        });
      }, "secondary"));
      box.appendChild(button("Credit note…", function (e) { creditForm(invoice, e.target); }, "secondary"));
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

  // A short form asking why, for a void.
  function reason(box, action, run) {
    var form = element("form", null, "inline");
    var input = field(form, "Reason", "action-reason");
    input.required = true;
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

  // A labelled input in `parent`: the input.
  function field(parent, text, id) {
    var wrap = element("div", null, "field");
    var label = element("label", text);
    label.htmlFor = id;
    var input = element("input");
    input.id = id;
    wrap.appendChild(label);
    wrap.appendChild(input);
    parent.appendChild(wrap);
    return input;
  }

  function check(parent, text, name, value) {
    var label = element("label", null, "check");
    var input = element("input");
    input.type = name ? "radio" : "checkbox";
    if (name) input.name = name;
    if (value) input.value = value;
    label.appendChild(input);
    label.appendChild(document.createTextNode(" " + text));
    parent.appendChild(label);
    return input;
  }

  // --- Credit notes -------------------------------------------------------------------------

  function creditForm(invoice, opener) {
    var box = $("detail-credit");
    box.replaceChildren();
    box.dataset.invoice = invoice.id;
    var form = element("form", null, "credit");
    form.noValidate = true;
    form.setAttribute("aria-labelledby", "credit-title");
    var title = element("h3", "Credit note on " + (invoice.number || "the invoice"));
    title.id = "credit-title";
    form.appendChild(title);
    form.appendChild(element("p", "Total " + p.money(invoice.total, invoice.currency) + " · credited so far " +
      p.money(invoice.amountCredited, invoice.currency) + ". Taxes and charges follow what is credited.", "muted"));
    var problem = element("p", null, "notice error");
    problem.id = "credit-problem";
    problem.setAttribute("role", "alert");
    problem.hidden = true;
    form.appendChild(problem);

    var modes = element("fieldset");
    modes.appendChild(element("legend", "What to credit"));
    var radios = {
      FULL: check(modes, "The whole invoice (what is left of it)", "credit-mode", "FULL"),
      AMOUNT: check(modes, "An amount, taxes included", "credit-mode", "AMOUNT"),
      LINES: check(modes, "Chosen lines, whole or in part", "credit-mode", "LINES"),
    };
    radios.FULL.checked = true;
    form.appendChild(modes);

    var amountBox = element("div");
    var amount = field(amountBox, "Amount to credit, taxes included (" + invoice.currency + ")", "credit-amount");
    amount.inputMode = "decimal";
    amount.autocomplete = "off";
    form.appendChild(amountBox);

    var linesBox = element("fieldset");
    linesBox.appendChild(element("legend", "Lines to credit"));
    var chosen = invoice.lineItems.filter(function (l) { return CREDITABLE.indexOf(l.kind) >= 0 && Number(l.amount) > 0; })
      .map(function (line) {
        var row = element("div", null, "credit-line");
        var box = check(row, "Line " + line.position + ": " + line.description + " (" + p.money(line.amount, invoice.currency) + ")");
        box.value = String(line.position);
        var part = field(row, "Part of line " + line.position + " to credit, net of tax (empty: all that is left)",
          "credit-line-" + line.position);
        part.inputMode = "decimal";
        part.autocomplete = "off";
        linesBox.appendChild(row);
        return { position: line.position, box: box, part: part };
      });
    if (!chosen.length) linesBox.appendChild(element("p", "No usage or rule line to credit.", "muted"));
    form.appendChild(linesBox);

    var why = field(form, "Reason (printed and e-mailed)", "credit-reason");
    why.maxLength = 1024;
    var notify = check(form, "E-mail the credit note to the customer");
    notify.id = "credit-notify";
    notify.checked = true;

    var actions = element("div", null, "actions");
    var submit = element("button", "Issue credit note");
    submit.type = "submit";
    actions.appendChild(submit);
    actions.appendChild(button("Cancel", function () { close(opener); }, "secondary"));
    form.appendChild(actions);

    function mode() { return Object.keys(radios).filter(function (m) { return radios[m].checked; })[0]; }
    function modeChanged() {
      amountBox.hidden = mode() !== "AMOUNT";
      linesBox.hidden = mode() !== "LINES";
    }
    Object.keys(radios).forEach(function (m) { radios[m].addEventListener("change", modeChanged); });
    modeChanged();

    function refuse(message, at) {
      problem.textContent = message;
      problem.hidden = false;
      if (at) at.focus();
    }

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      problem.hidden = true;
      var input = { invoiceId: invoice.id, reason: why.value.trim(), mode: mode(), notifyCustomer: notify.checked };
      if (input.mode === "AMOUNT") {
        input.amount = amount.value.trim();
        if (!input.amount) return refuse("Give the amount to credit.", amount);
      }
      if (input.mode === "LINES") {
        input.lines = chosen.filter(function (c) { return c.box.checked; }).map(function (c) {
          var part = c.part.value.trim();
          return part ? { position: c.position, amount: part } : { position: c.position };
        });
        if (!input.lines.length) return refuse("Choose at least one line to credit.", chosen.length ? chosen[0].box : null);
      }
      if (!input.reason) return refuse("Say why the invoice is credited.", why);
      submit.disabled = true;
      return api.ask("CREDIT", { input: input, key: api.key() }).then(function (data) {
        var r = data.createCreditNote;
        if (r.__typename !== "CreditNoteCreated") {
          var message = r.message;
          if (r.maximum !== undefined && r.maximum !== null) {
            message += " The most that may be credited now: " + p.money(r.maximum, invoice.currency) + ".";
          }
          var at = { amount: amount, reason: why, lines: chosen.length ? chosen[0].box : null }[r.field];
          return refuse(message, at || why);
        }
        close();
        var said = "Credit note " + r.creditNote.number + " issued for " + p.money(r.creditNote.total, invoice.currency) + ".";
        p.announce(said);
        p.show(said, "message", true);
        window.consoleList.update(r.invoice, false);
        return window.consoleList.open(invoice.id, true).then(function () { $("credit-notes-title").focus(); });
      }).catch(function (error) {
        if (!(error instanceof api.SessionEnded)) refuse(error.message, null);
      }).then(function () { submit.disabled = false; });
    });
    form.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { e.stopPropagation(); close(opener); }
    });
    box.appendChild(form);
    box.hidden = false;
    radios.FULL.focus();
  }

  function close(opener) {
    var box = $("detail-credit");
    box.replaceChildren();
    box.hidden = true;
    delete box.dataset.invoice;
    if (opener && opener.isConnected) opener.focus();
  }

  function renderCreditNotes(invoice) {
    var list = $("detail-credit-notes");
    var notes = invoice.creditNotes || [];
    list.replaceChildren.apply(list, notes.map(function (note) {
      var item = element("li", note.number + " · " + p.day(note.issueDate) + " · " + p.money(note.total, invoice.currency) +
        " credited " + MODES[note.mode] + " · " + note.reason + " ");
      item.dataset.number = note.number;
      item.appendChild(button("PDF", function (e) { creditNotePdf(note, e.target); }, "secondary",
        "Download credit note " + note.number + " as PDF"));
      return item;
    }));
    if (!notes.length) list.appendChild(element("li", "No credit note.", "muted"));
  }

  // A link is signed for a few minutes: a fresh one for each download.
  function download(name, id, field, filename, target) {
    target.disabled = true;
    return api.ask(name, { id: id }).then(function (data) {
      var url = data.node && data.node[field];
      if (!url) throw new Error(filename + " is not available yet: it is printed moments after issue. Try again shortly.");
      save(url, filename);
    }).catch(p.failed).then(function () { target.disabled = false; });
  }

  function pdf(invoice, target) {
    download("INVOICE", invoice.id, "pdfUrl", (invoice.number || "invoice") + ".pdf", target);
  }

  function creditNotePdf(note, target) {
    download("CREDIT_NOTE_PDF", note.id, "pdfUrl", note.number + ".pdf", target);
  }

  window.consoleActions = { render: render, close: close };
})();
