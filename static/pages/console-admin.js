// The owner's side of the settings a month needs: billing rules (create, edit, end after the
// month, delete), people (invite, change a role, remove, revoke or resend an invitation,
// reactivate) and API tokens (create, with the secret shown once; revoke). Viewers get the
// same lists without a control, and the API refuses them anyway. Each change is a modal
// dialog: focus stays inside it (Tab goes round), Escape closes it, and the API's typed
// errors are shown at the field they name. Its documents are constants, added to
// console-api.js's, so that the server's validation cache serves them too.
(function () {
  "use strict";

  var p = window.consoleParts;
  var $ = p.$, api = p.api, state = p.state, element = p.element, button = p.button, cells = p.cells;

  var ERROR = " ... on UserError { code message field }";
  var DOCUMENTS = {
    RULE_CREATE: "mutation ConsoleRuleCreate($input: CreateBillingRuleInput!) { createBillingRule(input: $input) {" +
      " __typename ... on BillingRuleSaved { billingRule { id name } }" + ERROR + " } }",
    RULE_UPDATE: "mutation ConsoleRuleUpdate($id: ID!, $input: UpdateBillingRuleInput!) {" +
      " updateBillingRule(id: $id, input: $input) { __typename ... on BillingRuleSaved { billingRule { id name } }" + ERROR + " } }",
    RULE_DELETE: "mutation ConsoleRuleDelete($id: ID!) { deleteBillingRule(id: $id) { __typename" + ERROR + " } }",
    INVITE: "mutation ConsoleInvite($input: InviteUserInput!) { inviteUser(input: $input) { __typename" +
      " ... on UserInvited { user { id email } }" + ERROR + " } }",
    RESEND: "mutation ConsoleResendInvitation($id: ID!) { resendInvitation(userId: $id) { __typename" +
      " ... on UserInvited { user { id email } }" + ERROR + " } }",
    ROLE: "mutation ConsoleRole($id: ID!, $scope: Scope!, $account: ID) { changeUserScope(userId: $id, scope: $scope," +
      " managedAccountId: $account) { __typename ... on UserUpdated { user { id email scope } }" + ERROR + " } }",
    DEACTIVATE: "mutation ConsoleDeactivate($id: ID!) { deactivateUser(userId: $id) { __typename" +
      " ... on UserUpdated { user { id email } }" + ERROR + " } }",
    REACTIVATE: "mutation ConsoleReactivate($id: ID!) { reactivateUser(userId: $id) { __typename" +
      " ... on UserUpdated { user { id email } }" + ERROR + " } }",
    TOKEN_CREATE: "mutation ConsoleTokenCreate($input: CreateApiTokenInput!) { createApiToken(input: $input) { __typename" +
      " ... on ApiTokenCreated { token apiToken { id name } }" + ERROR + " } }",
    TOKEN_REVOKE: "mutation ConsoleTokenRevoke($id: ID!) { revokeToken(id: $id) { __typename" +
      " ... on TokenRevoked { apiToken { id name } }" + ERROR + " } }",
  };
  Object.keys(DOCUMENTS).forEach(function (name) { api.DOCUMENTS[name] = DOCUMENTS[name]; });

  var KINDS = { CREDIT: "Credit", DISCOUNT: "Discount", MARKUP: "Markup", TAX: "Tax" };
  var STATES = { ACTIVE: "Active", INVITED: "Invited", DEACTIVATED: "Deactivated" };
  // The API's input fields, and the control each one's error is shown at.
  var RULE_FIELDS = {
    name: "rule-name", kind: "rule-kind", calculation: "rule-calculation", value: "rule-value", accountId: "rule-account",
    providerName: "rule-provider", serviceName: "rule-service", serviceCategory: "rule-category",
    startsOn: "rule-starts", endsOn: "rule-ends", isActive: "rule-active",
  };
  var PERSON_FIELDS = {
    email: "person-email", name: "person-name", userId: "person-scope", scope: "person-scope", managedAccountId: "person-account",
  };
  var TOKEN_FIELDS = { name: "token-name", expiresInDays: "token-days" };
  // What the Decimal scalar takes; anything else would be refused as a malformed request.
  var FIGURE = /^-?\d+(\.\d+)?$/;

  // An answer other than the success type: the API's typed error (code, message, field).
  function Refusal(answer) { this.message = answer.message; this.field = answer.field; }

  function send(name, variables, field, success) {
    return api.ask(name, variables).then(function (data) {
      var answer = data[field];
      if (answer.__typename !== success) throw new Refusal(answer);
      return answer;
    });
  }

  // --- Dialogs ------------------------------------------------------------------------------

  function openDialog(dialog, first, fallback) {
    clearErrors(dialog);
    p.openDialog(dialog, first, fallback);
  }

  function fieldError(input, message) {
    var box = input.closest(".field");
    var note = box.querySelector(".field-error");
    if (!note) {
      note = element("p", null, "field-error");
      note.id = input.id + "-error";
      box.appendChild(note);
    }
    note.textContent = message;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", note.id);
    input.focus();
  }

  function clearErrors(dialog) {
    dialog.querySelectorAll(".field-error").forEach(function (node) { node.remove(); });
    dialog.querySelectorAll("[aria-invalid]").forEach(function (node) {
      node.removeAttribute("aria-invalid");
      node.removeAttribute("aria-describedby");
    });
    var box = dialog.querySelector(".notice.error");
    if (box) show(box, "");
  }

  function show(box, message) {
    box.textContent = message;
    box.hidden = !message;
  }

  // A refusal naming a field shows at that field; any other failure at the dialog's top.
  function refused(dialog, fields, error) {
    if (error instanceof api.SessionEnded) return dialog.close();
    var at = error instanceof Refusal && error.field && fields[error.field] ? $(fields[error.field]) : null;
    if (at) return fieldError(at, error.message);
    show(dialog.querySelector(".notice.error"), error.message);
  }

  function busy(control, work) {
    control.disabled = true;
    var free = function () { control.disabled = false; };
    return work.then(free, free);
  }

  // The change is saved: the lists are read again behind the dialog, then it closes.
  function done(dialog, message) {
    p.announce(message);
    return window.consoleSettings.load().then(function () { dialog.close(); });
  }

  function option(value, text) {
    var node = element("option", text);
    node.value = value;
    return node;
  }

  function accountOptions(select, first, current) {
    var options = first ? [option("", first)] : [];
    window.consoleSettings.accountList().forEach(function (a) { options.push(option(a.id, a.name)); });
    if (current && !options.some(function (o) { return o.value === current.id; })) options.push(option(current.id, current.name));
    select.replaceChildren.apply(select, options);
    select.value = current ? current.id : "";
  }

  // Owner's buttons for a row: [text, accessible name, key, handler], nulls skipped.
  function controls(list) {
    var box = element("div", null, "row-actions");
    list.forEach(function (c) {
      if (!c) return;
      var node = button(c[0], c[3], "secondary", c[1]);
      node.dataset.key = c[2];
      box.appendChild(node);
    });
    return box;
  }

  function rows(id, list, empty) {
    var body = $(id);
    body.replaceChildren.apply(body, list);
    if (!list.length) body.appendChild(cells(element("tr"), state.owner ? empty.concat([""]) : empty));
  }

  var pending = null; // the confirmed action of the confirm dialog

  function confirmThen(title, text, action, fallback, run) {
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-yes").textContent = action;
    pending = run;
    // The safe choice has the focus: Enter alone changes nothing.
    openDialog($("confirm-dialog"), $("confirm-dialog").querySelector("[data-close]"), fallback);
  }

  function confirmed(event) {
    event.preventDefault();
    var dialog = $("confirm-dialog");
    clearErrors(dialog);
    busy($("confirm-yes"), pending().then(function (message) {
      return done(dialog, message);
    }).catch(function (error) { refused(dialog, {}, error); }));
  }

  // --- Billing rules ------------------------------------------------------------------------

  var editing = null; // the rule the dialog edits; null: a new one

  function months(r) {
    if (r.startsOn && r.endsOn) return p.monthName(r.startsOn) + " to " + p.monthName(r.endsOn);
    if (r.startsOn) return "From " + p.monthName(r.startsOn);
    if (r.endsOn) return "Until " + p.monthName(r.endsOn);
    return "Every month";
  }

  function ruleRow(r) {
    var scope = [r.account ? r.account.name : "Every account", r.providerName, r.serviceName, r.serviceCategory];
    var values = [r.name + (r.isActive ? "" : " (inactive)"), KINDS[r.kind], r.calculation === "PERCENT" ? r.value + " %" : r.value,
      scope.filter(Boolean).join(" · "), months(r)];
    if (state.owner) {
      var open = !r.endsOn || r.endsOn > state.month;
      values.push(controls([
        ["Edit", "Edit rule " + r.name, "rule-edit-" + r.id, function () { editRule(r); }],
        open ? ["End", "End rule " + r.name + " after " + p.monthName(state.month), "rule-end-" + r.id, function () { endRule(r); }] : null,
        ["Delete", "Delete rule " + r.name, "rule-delete-" + r.id, function () { deleteRule(r); }],
      ]));
    }
    var tr = cells(element("tr"), values);
    tr.dataset.id = r.id;
    return tr;
  }

  function editRule(rule) {
    editing = rule;
    $("rule-title").textContent = rule ? "Edit billing rule " + rule.name : "New billing rule";
    accountOptions($("rule-account"), "Every account", rule && rule.account);
    $("rule-name").value = rule ? rule.name : "";
    $("rule-kind").value = rule ? rule.kind : "DISCOUNT";
    $("rule-calculation").value = rule ? rule.calculation : "PERCENT";
    $("rule-value").value = rule ? rule.value : "";
    $("rule-provider").value = rule && rule.providerName || "";
    $("rule-service").value = rule && rule.serviceName || "";
    $("rule-category").value = rule && rule.serviceCategory || "";
    $("rule-starts").value = rule && rule.startsOn || "";
    $("rule-ends").value = rule && rule.endsOn || "";
    $("rule-active").checked = rule ? rule.isActive : true;
    openDialog($("rule-dialog"), $("rule-name"), "rule-new");
  }

  function text(id) { return $(id).value.trim() || null; }

  function saveRule(event) {
    event.preventDefault();
    var dialog = $("rule-dialog");
    clearErrors(dialog);
    var figure = $("rule-value").value.trim();
    if (!FIGURE.test(figure)) return fieldError($("rule-value"), "Enter the value as a number, such as 10 or 12.5.");
    var input = {
      name: $("rule-name").value.trim(), kind: $("rule-kind").value, calculation: $("rule-calculation").value, value: figure,
      accountId: $("rule-account").value || null, providerName: text("rule-provider"), serviceName: text("rule-service"),
      serviceCategory: text("rule-category"), startsOn: $("rule-starts").value || null, endsOn: $("rule-ends").value || null,
      isActive: $("rule-active").checked,
    };
    var work = editing
      ? send("RULE_UPDATE", { id: editing.id, input: input }, "updateBillingRule", "BillingRuleSaved")
      : send("RULE_CREATE", { input: input }, "createBillingRule", "BillingRuleSaved");
    busy($("rule-save"), work.then(function (answer) {
      return done(dialog, "Billing rule " + answer.billingRule.name + " saved.");
    }).catch(function (error) { refused(dialog, RULE_FIELDS, error); }));
  }

  function endRule(rule) {
    var last = p.monthName(state.month);
    confirmThen("End billing rule " + rule.name, "The rule applies up to " + last + " and to no later month. Invoices " +
      "already generated keep what it computed until they are generated again.", "End after " + last, "rule-new", function () {
      return send("RULE_UPDATE", { id: rule.id, input: { endsOn: state.month } }, "updateBillingRule", "BillingRuleSaved")
        .then(function () { return "Billing rule " + rule.name + " ends after " + last + "."; });
    });
  }

  function deleteRule(rule) {
    confirmThen("Delete billing rule " + rule.name, "Invoices generated from now on are computed without it; those " +
      "already generated keep the lines it made.", "Delete rule", "rule-new", function () {
      return send("RULE_DELETE", { id: rule.id }, "deleteBillingRule", "BillingRuleDeleted")
        .then(function () { return "Billing rule " + rule.name + " deleted."; });
    });
  }

  // --- People -------------------------------------------------------------------------------

  var changing = null; // the user whose role the person dialog changes; null: it invites one

  function personRow(u) {
    var role = p.SCOPES[u.scope] + (u.managedAccount ? " · " + u.managedAccount.name : "");
    var values = [u.name || "—", u.email, role, STATES[u.state]];
    if (state.owner) {
      var self = state.viewer && state.viewer.user.email === u.email;
      var who = u.name || u.email;
      values.push(self ? element("span", "You", "muted") : controls([
        u.state !== "DEACTIVATED" ? ["Change role", "Change the role of " + who, "person-role-" + u.id, function () { personDialog(u); }] : null,
        u.state === "INVITED" ? ["Resend", "Resend the invitation of " + who, "person-resend-" + u.id, function () { resend(u); }] : null,
        u.state === "INVITED" ? ["Revoke invitation", "Revoke the invitation of " + who, "person-revoke-" + u.id,
          function () { remove(u); }] : null,
        u.state === "ACTIVE" ? ["Remove", "Remove " + who, "person-remove-" + u.id, function () { remove(u); }] : null,
        u.state === "DEACTIVATED" ? ["Reactivate", "Reactivate " + who, "person-reactivate-" + u.id, function () { reactivate(u); }] : null,
      ]));
    }
    var tr = cells(element("tr"), values);
    tr.dataset.id = u.id;
    return tr;
  }

  // The account choice is only for a customer user.
  function scoped() {
    $("person-account").closest(".field").hidden = $("person-scope").value !== "CUSTOMER";
  }

  function role(scope) { return p.SCOPES[scope].toLowerCase(); }

  // The person dialog: inviting someone (`user` null), or changing `user`'s role.
  function personDialog(user) {
    changing = user;
    $("person-title").textContent = user ? "Change the role of " + (user.name || user.email) : "Invite a person";
    $("person-note").textContent = user ? user.email + " is " + role(user.scope) + " now."
      : "The person is e-mailed a link to choose a password.";
    $("person-save").textContent = user ? "Save role" : "Send invitation";
    ["person-email", "person-name"].forEach(function (id) {
      $(id).value = "";
      $(id).closest(".field").hidden = !!user;
    });
    $("person-scope").value = user ? user.scope : "VIEWER";
    accountOptions($("person-account"), null, user && user.managedAccount);
    scoped();
    openDialog($("person-dialog"), user ? $("person-scope") : $("person-email"), "person-new");
  }

  // The person dialog's change (the role, or the invitation): what is announced once it is saved.
  function personChange() {
    var scope = $("person-scope").value;
    var account = scope === "CUSTOMER" ? $("person-account").value || null : null;
    if (changing) {
      return send("ROLE", { id: changing.id, scope: scope, account: account }, "changeUserScope", "UserUpdated")
        .then(function (answer) { return answer.user.email + " is " + role(answer.user.scope) + " now."; });
    }
    var input = { email: $("person-email").value.trim(), name: text("person-name"), scope: scope, managedAccountId: account };
    return send("INVITE", { input: input }, "inviteUser", "UserInvited")
      .then(function (answer) { return answer.user.email + " is invited: an e-mail with a link is on its way."; });
  }

  function savePerson(event) {
    event.preventDefault();
    var dialog = $("person-dialog");
    clearErrors(dialog);
    busy($("person-save"), personChange().then(function (message) {
      return done(dialog, message);
    }).catch(function (error) { refused(dialog, PERSON_FIELDS, error); }));
  }

  function remove(user) {
    var invited = user.state === "INVITED";
    confirmThen(invited ? "Revoke the invitation of " + user.email : "Remove " + user.email,
      invited ? "The links e-mailed to " + user.email + " stop working at once." :
        user.email + " can no longer sign in: their sessions and API tokens are revoked at once. You can reactivate them later.",
      invited ? "Revoke invitation" : "Remove", "person-new", function () {
        return send("DEACTIVATE", { id: user.id }, "deactivateUser", "UserUpdated").then(function () {
          return invited ? "The invitation of " + user.email + " is revoked." : user.email + " is removed.";
        });
      });
  }

  function resend(user) {
    send("RESEND", { id: user.id }, "resendInvitation", "UserInvited").then(function () {
      p.show("A new invitation is on its way to " + user.email + "; earlier links stop working.", "message", true);
      p.announce("Invitation sent again to " + user.email + ".");
    }).catch(p.failed);
  }

  function reactivate(user) {
    send("REACTIVATE", { id: user.id }, "reactivateUser", "UserUpdated").then(function () {
      p.announce(user.email + " may sign in again.");
      return window.consoleSettings.load();
    }).then(function () {
      var again = document.querySelector('[data-key="person-role-' + CSS.escape(user.id) + '"]');
      if (again) again.focus();
    }).catch(p.failed);
  }

  // --- API tokens ---------------------------------------------------------------------------

  function tokenRow(t) {
    return cells(element("tr"), [t.name, t.user.email, p.day(t.expiresAt), t.lastUsedAt ? p.day(t.lastUsedAt) : "Never",
      controls([["Revoke", "Revoke token " + t.name, "token-revoke-" + t.id, function () { revokeToken(t); }]])]);
  }

  function newToken() {
    $("token-name").value = "";
    $("token-days").value = "90";
    openDialog($("token-dialog"), $("token-name"), "token-new");
  }

  function createToken(event) {
    event.preventDefault();
    var dialog = $("token-dialog");
    clearErrors(dialog);
    var days = Number($("token-days").value);
    if (!Number.isInteger(days)) return fieldError($("token-days"), "A whole number of days, 1 to 730.");
    var input = { name: $("token-name").value.trim(), expiresInDays: days };
    busy($("token-save"), send("TOKEN_CREATE", { input: input }, "createApiToken", "ApiTokenCreated").then(function (answer) {
      // The secret goes to the dialog's field alone; closing the dialog empties it.
      $("token-form").hidden = true;
      $("token-made").hidden = false;
      dialog.setAttribute("aria-labelledby", "token-made-title");
      $("token-secret").value = answer.token;
      $("token-secret").focus();
      $("token-secret").select();
      p.announce("API token " + answer.apiToken.name + " created: copy its secret now, it is shown this once.");
      return window.consoleSettings.load();
    }).catch(function (error) { refused(dialog, TOKEN_FIELDS, error); }));
  }

  function copySecret() {
    var field = $("token-secret");
    var said = $("token-copied");
    var copying = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(field.value) : Promise.reject(new Error("no clipboard"));
    copying.then(function () {
      said.textContent = "Copied to the clipboard.";
    }, function () {
      field.focus();
      field.select();
      said.textContent = "Selected: copy it with Ctrl+C (⌘C on a Mac).";
    });
  }

  function forgetSecret() {
    $("token-secret").value = "";
    $("token-copied").textContent = "";
    $("token-made").hidden = true;
    $("token-form").hidden = false;
    $("token-dialog").setAttribute("aria-labelledby", "token-title");
  }

  function revokeToken(token) {
    confirmThen("Revoke token " + token.name, "Scripts using it are refused from the next request on.", "Revoke token",
      "token-new", function () {
        return send("TOKEN_REVOKE", { id: token.id }, "revokeToken", "TokenRevoked")
          .then(function () { return "API token " + token.name + " revoked."; });
      });
  }

  // --- The lists ----------------------------------------------------------------------------

  function render(data) {
    rows("rule-rows", data.billingRules.edges.map(function (e) { return ruleRow(e.node); }),
      ["No billing rules", "—", "—", "—", "—"]);
    rows("people-rows", data.users.edges.map(function (e) { return personRow(e.node); }), ["No people", "—", "—", "—"]);
    $("token-note").hidden = state.owner;
    var tokens = data.apiTokens ? data.apiTokens.edges : [];
    var body = $("token-rows");
    body.replaceChildren.apply(body, tokens.map(function (e) { return tokenRow(e.node); }));
    if (!tokens.length) body.appendChild(cells(element("tr"), ["No API tokens", "—", "—", "—", ""]));
  }

  ["rule-dialog", "person-dialog", "token-dialog", "confirm-dialog"].forEach(function (id) { p.keepDialog($(id)); });
  $("token-dialog").addEventListener("close", forgetSecret);
  $("rule-new").addEventListener("click", function () { editRule(null); });
  $("rule-form").addEventListener("submit", saveRule);
  $("person-new").addEventListener("click", function () { personDialog(null); });
  $("person-form").addEventListener("submit", savePerson);
  $("person-scope").addEventListener("change", scoped);
  $("token-new").addEventListener("click", newToken);
  $("token-form").addEventListener("submit", createToken);
  $("token-copy").addEventListener("click", copySecret);
  $("confirm-form").addEventListener("submit", confirmed);
  // A session that ends (signed out, expired, refused) closes any dialog: nothing of it stays on screen.
  new MutationObserver(function () {
    if ($("sign-in").hidden) return;
    document.querySelectorAll("dialog[open]").forEach(function (dialog) { dialog.close(); });
  }).observe($("sign-in"), { attributes: true, attributeFilter: ["hidden"] });

  window.consoleAdmin = { render: render };
})();
