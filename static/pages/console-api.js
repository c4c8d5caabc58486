// The month-end console's side of the public GraphQL API: its documents, each a constant (the
// same text for every request, so that the server's validation cache serves it), the session
// (a `login` token in the tab's sessionStorage) and the live client (graphql-transport-ws),
// on the calls the portal shares (pages-api.js). Nothing here touches the page: console.js does.
(function () {
  "use strict";

  var shared = window.pagesApi;
  var SessionEnded = shared.SessionEnded;
  var STORED = "invoicing.console.session";
  // The portal's key: a customer who signs in here is handed over to it, signed in.
  var PORTAL_STORED = "invoicing.portal.session";
  var PAGE = 100; // the server's largest page
  var COSTS_PAGE = 50; // the cost records behind a line, read a page at a time

  var ROW = "fragment ConsoleRow on Invoice { id number status displayStatus deliveryStatus currency total period" +
    " account { id name } checks { code severity message } }";
  var RESULTS = "... on InvoiceActionResults { succeeded results { id error { code message } invoice { ...ConsoleRow } } }" +
    " ... on UserError { code message }";

  var DOCUMENTS = {
    LOGIN: "mutation ConsoleLogin($email: String!, $password: String!) { login(email: $email, password: $password) {" +
      " __typename ... on LoginSuccess { token expiresAt viewer { scope } } ... on UserError { code message } } }",
    SIGN_OUT: "mutation ConsoleSignOut { revokeToken { __typename } }",
    VIEWER: "query ConsoleViewer { viewer { scope user { email name } organization { name } }" +
      " billingPeriods(first: 24, orderBy: {field: MONTH, direction: DESC}) { edges { node { month } } } }",
    MONTH: "query ConsoleMonth($month: Month!) {" +
      " billingPeriods(first: 1, filter: {from: $month, to: $month}) { edges { node { month state completeness" +
      " forcedAt invoiceCount sourceCompleteness { provider state writtenAt costSource { name } } } } }" +
      " monthSummary(period: $month) { invoiceCount totals { displayStatus currency count total }" +
      " attention { ready awaitingApproval errors warnings invoicesWithWarnings undelivered lateDeliveries } }" +
      " reconciliation(period: $month) { totals { currency imported invoiced notInvoiced integrationExcluded unclaimed late } }" +
      " costImports(first: 5, orderBy: {field: CREATED_AT, direction: DESC}) { edges { node { id filename state rowsDone rows } } } }",
    INVOICES: "query ConsoleInvoices($filter: InvoiceFilter!, $after: String) { invoices(first: " + PAGE +
      ", after: $after, filter: $filter, orderBy: {field: NUMBER, direction: ASC}) { totalCount" +
      " pageInfo { hasNextPage endCursor } edges { node { ...ConsoleRow } } } } " + ROW,
    INVOICE: "query ConsoleInvoice($id: ID!) { node(id: $id) { ... on Invoice { ...ConsoleRow paymentStatus amountDue" +
      " issueDate dueDate errorMessage pdfUrl replaces { number } replacedBy { number }" +
      " amountCredited creditNotes { id number issueDate total mode reason } revisions { revision createdAt total diff { against totalChange causes" +
      " added { description after difference } removed { description before difference }" +
      " changed { description before after difference } } }" +
      " lineItems { position kind description provider service amount } } } } " + ROW,
    // A page of one line's costs, from the cursor of the page before.
    LINE_COSTS: "query ConsoleLineCosts($id: ID!, $position: Int!, $after: String) { node(id: $id) { ... on Invoice {" +
      " lineItem(position: $position) { position costs(first: " + COSTS_PAGE + ", after: $after) { totalCount" +
      " pageInfo { hasNextPage endCursor } edges { node { id subAccountId subAccountName serviceName resourceId" +
      " billedCost billingCurrency } } } } } } }",
    APPROVE: "mutation ConsoleApprove($ids: [ID!]!, $acknowledge: [InvoiceCheckCode!], $notify: Boolean!, $key: String) {" +
      " approveInvoices(ids: $ids, acknowledge: $acknowledge, notifyCustomer: $notify, idempotencyKey: $key) {" +
      " __typename " + RESULTS + " } } " + ROW,
    REGENERATE: "mutation ConsoleRegenerate($ids: [ID!]!) { regenerateInvoices(ids: $ids) { __typename " + RESULTS +
      " } } " + ROW,
    VOID: "mutation ConsoleVoid($ids: [ID!]!, $reason: String!, $key: String) { voidInvoices(ids: $ids, reason: $reason," +
      " idempotencyKey: $key) { __typename " + RESULTS + " } } " + ROW,
    REISSUE: "mutation ConsoleReissue($id: ID!, $key: String) { reissueInvoice(id: $id, idempotencyKey: $key) {" +
      " __typename ... on InvoiceReissued { invoice { ...ConsoleRow } replaced { ...ConsoleRow } }" +
      " ... on UserError { code message } } } " + ROW,
    CREDIT: "mutation ConsoleCredit($input: CreateCreditNoteInput!, $key: String) { createCreditNote(input: $input," +
      " idempotencyKey: $key) { __typename ... on CreditNoteCreated { creditNote { number total } invoice { ...ConsoleRow } }" +
      " ... on CreditExceededError { maximum } ... on UserError { code message field } } } " + ROW,
    CREDIT_NOTE_PDF: "query ConsoleCreditNotePdf($id: ID!) { node(id: $id) { ... on CreditNote { pdfUrl } } }",
    SETTINGS: "query ConsoleSettings($month: Month!, $owner: Boolean!) {" +
      " exchangeRates(first: 100, filter: {monthFrom: $month, monthTo: $month}) { edges { node { id baseCurrency currency rate } } }" +
      " billingRules(first: 100) { edges { node { id name kind calculation value isActive providerName serviceName" +
      " serviceCategory startsOn endsOn account { id name } } } }" +
      " users(first: 100) { edges { node { id name email scope state managedAccount { id name } } } }" +
      " apiTokens(first: 100) @include(if: $owner) { edges { node { id name expiresAt lastUsedAt user { email } } } } }",
    ACCOUNTS: "query ConsoleAccounts($after: String) { managedAccounts(first: " + PAGE + ", after: $after) {" +
      " pageInfo { hasNextPage endCursor } edges { node { id name currency autoInvoice } } } }",
    SET_RATE: "mutation ConsoleSetRate($input: SetExchangeRateInput!) { setExchangeRate(input: $input) { __typename" +
      " ... on ExchangeRateSaved { exchangeRate { id baseCurrency currency rate } } ... on UserError { code message field } } }",
    AUTO_INVOICE: "mutation ConsoleAutoInvoice($id: ID!, $mode: AutoInvoice!) { updateManagedAccount(id: $id," +
      " input: {autoInvoice: $mode}) { __typename ... on ManagedAccountSaved { managedAccount { id autoInvoice } }" +
      " ... on UserError { code message } } }",
    LIVE: "subscription ConsoleLive { invoiceStatusChanged { invoice { ...ConsoleRow } } } " + ROW,
    IMPORT_LIVE: "subscription ConsoleImport($id: ID!) { costImportChanged(id: $id) { id filename state rowsDone rows } }",
  };

  function Refused(message) { this.message = message; }

  var session = null; // {token, expiresAt}

  // A field the role may not use is said as such, not in the server's words.
  function call(query, variables, token) {
    return shared.call(query, variables, token).catch(function (error) {
      if (error.codes && error.codes.indexOf("FORBIDDEN") >= 0) throw new Refused("Your role cannot do this.");
      throw error;
    });
  }

  var onEnded = function () {};

  // As the signed-in user: a refused token ends the session on screen too.
  function ask(name, variables) {
    if (!session) return Promise.reject(new SessionEnded());
    return call(DOCUMENTS[name], variables, session.token).catch(function (error) {
      if (error instanceof SessionEnded) onEnded();
      throw error;
    });
  }

  // Every page of a connection, `pick(data)` being the connection; `each(page)` as they come.
  function pages(name, variables, pick, each) {
    function next(after) {
      var v = Object.assign({}, variables, { after: after });
      return ask(name, v).then(function (data) {
        var connection = pick(data);
        if (each(connection) === false) return null;
        return connection.pageInfo.hasNextPage ? next(connection.pageInfo.endCursor) : null;
      });
    }
    return next(null);
  }

  function remember(value, key) {
    if (!key) session = value;
    shared.keep(key || STORED, value);
  }

  function stored() { return shared.kept(STORED); }

  function liveClient(on) {
    return shared.liveClient(function () { return session && session.token; }, on);
  }

  // An idempotency key: a retried click does the work once (crypto.randomUUID needs HTTPS).
  function key() {
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  window.consoleApi = {
    DOCUMENTS: DOCUMENTS, COSTS_PAGE: COSTS_PAGE, SessionEnded: SessionEnded, Refused: Refused, PORTAL_STORED: PORTAL_STORED,
    call: call, ask: ask, pages: pages, remember: remember, stored: stored, liveClient: liveClient, key: key,
    session: function () { return session; },
    onSessionEnded: function (callback) { onEnded = callback; },
  };
})();
