// The central API from a browser: sign in with MSAL.js (authorization code with PKCE, redirect
// flow), list and search customers page by page, edit one with If-Match, answer a claims
// challenge, sign out. Plain JS on purpose: every step a framework would hide is here to read.
//
// The configuration (window.CENTRAL_API_CONFIG) comes from config.js, which the dev stack
// generates: authority, client id, redirect URI, API URL, scopes and the subscription key.
"use strict";

const config = window.CENTRAL_API_CONFIG;
const RETRY_KEY = "central-api-sample.retry"; // what to do again after a claims challenge
const $ = (id) => document.getElementById(id);

if (typeof msal === "undefined") {
  // vendor/msal-browser.min.js answered 404: the npm packages are not installed.
  $("status").textContent =
    "@azure/msal-browser did not load: run `make spa` (npm ci in samples/spa), then reload.";
  $("status").className = "error";
  throw new Error("@azure/msal-browser is missing");
}

const msalApp = new msal.PublicClientApplication({
  auth: {
    clientId: config.client_id,
    authority: config.authority,
    // Not a Microsoft cloud host: MSAL.js trusts it as configured, without instance discovery.
    knownAuthorities: config.known_authorities,
    redirectUri: config.redirect_uri,
    postLogoutRedirectUri: config.redirect_uri,
  },
  // Tokens last as long as the tab: sessionStorage, as Microsoft recommends for SPAs.
  cache: { cacheLocation: "sessionStorage" },
});

const view = { query: { q: "", pageSize: "10" }, pageTokens: [null], page: 0, record: null };

class ApiError extends Error {
  constructor(status, body) {
    const code = body && body.code ? body.code : "error";
    const message = body && body.message ? body.message : "The API answered " + status + ".";
    super(status + " " + code + ": " + message);
    this.status = status;
    this.code = code;
    this.correlationId = body ? body.correlationId : undefined;
  }
}

function say(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind || "info";
  status.dataset.kind = kind || "info";
}

function account() {
  return msalApp.getActiveAccount();
}

// --- tokens ----------------------------------------------------------------------------------

async function accessToken() {
  const request = { scopes: config.scopes, account: account() };
  try {
    return (await msalApp.acquireTokenSilent(request)).accessToken;
  } catch (error) {
    if (!(error instanceof msal.InteractionRequiredAuthError)) throw error;
    await msalApp.acquireTokenRedirect(request); // leaves the page
    return new Promise(() => {});
  }
}

// The claims JSON of a 401 insufficient_claims challenge (README, "Claims challenges"), or null.
// The API lists WWW-Authenticate in Access-Control-Expose-Headers, so the page may read it.
function claimsChallenge(response) {
  if (response.status !== 401) return null;
  const header = response.headers.get("WWW-Authenticate") || "";
  if (!header.includes('error="insufficient_claims"')) return null;
  const match = header.match(/claims="([^"]*)"/);
  return match ? atob(match[1]) : null;
}

// One call to the API. `retry` says how to repeat the user's action after a claims challenge:
// the page leaves for Entra (the user completes, for example, MFA) and comes back to do it again.
async function callApi(method, path, { body, etag, retry } = {}) {
  const headers = {
    Authorization: "Bearer " + (await accessToken()),
    "Ocp-Apim-Subscription-Key": config.subscription_key,
  };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = etag;
  const response = await fetch(config.api_url + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const claims = claimsChallenge(response);
  if (claims && retry && !retry.afterChallenge) {
    sessionStorage.setItem(RETRY_KEY, JSON.stringify({ ...retry, afterChallenge: true }));
    say("The API asks for more than this sign-in gave (a claims challenge): signing in again…");
    await msalApp.acquireTokenRedirect({ scopes: config.scopes, account: account(), claims });
    return new Promise(() => {});
  }
  if (!response.ok) {
    let error = null;
    try {
      error = await response.json();
    } catch {
      // the host's own answers (404, 413, ...) have an empty body
    }
    // Retry once only: a second challenge after the new sign-in is an error to show.
    throw new ApiError(response.status, error);
  }
  return response;
}

// --- customers ---------------------------------------------------------------------------------

async function listCustomers(retry) {
  const params = new URLSearchParams({ pageSize: view.query.pageSize });
  if (view.query.q) params.set("q", view.query.q);
  const token = view.pageTokens[view.page];
  if (token) params.set("pageToken", token);
  const response = await callApi("GET", "/customers?" + params, {
    retry: retry || { action: "list", query: view.query },
  });
  const page = await response.json();
  const rows = $("customers").tBodies[0];
  rows.replaceChildren(
    ...page.items.map((customer) => {
      const row = document.createElement("tr");
      row.dataset.id = customer.id;
      for (const text of [customer.fullName, customer.email, customer.city]) {
        const cell = document.createElement("td");
        cell.textContent = text || "";
        row.append(cell);
      }
      row.addEventListener("click", () => run(() => openCustomer(customer.id)));
      return row;
    }),
  );
  view.pageTokens[view.page + 1] = page.nextPageToken;
  $("next-page").disabled = !page.nextPageToken;
  $("first-page").disabled = view.page === 0;
  $("page-number").textContent = "Page " + (view.page + 1);
  say(page.items.length ? "" : "No customers match.", "info");
}

async function openCustomer(id, retry) {
  const response = await callApi("GET", "/customers/" + encodeURIComponent(id), {
    retry: retry || { action: "open", id, query: view.query },
  });
  showRecord(await response.json());
  say("");
}

function showRecord(record) {
  view.record = record;
  const form = $("editor");
  for (const input of form.querySelectorAll("input[name]")) {
    input.value = record[input.name] == null ? "" : record[input.name];
  }
  $("editing").textContent = record.fullName || "";
  $("etag").textContent = record.etag;
  form.hidden = false;
}

async function saveCustomer() {
  const record = view.record;
  const changes = {};
  for (const input of $("editor").querySelectorAll("input[name]")) {
    const before = record[input.name] == null ? "" : record[input.name];
    if (input.value !== before) changes[input.name] = input.value === "" ? null : input.value;
  }
  if (!Object.keys(changes).length) {
    say("Nothing changed.");
    return;
  }
  try {
    // The etag from the record's body: the page could read the ETag header as well (it is
    // exposed), but the body has it with every record, lists included.
    const response = await callApi("PATCH", "/customers/" + record.id, {
      body: changes,
      etag: record.etag,
    });
    showRecord(await response.json());
    await listCustomers(); // the list shows the new values too
    say("Saved.", "info");
  } catch (error) {
    if (error.status !== 412) throw error;
    say(
      "412 precondition_failed: someone changed this customer since you loaded it, so nothing " +
        "was saved. Reload to see their version, then make your change again.",
      "error",
    );
  }
}

// --- wiring ------------------------------------------------------------------------------------

async function run(action) {
  try {
    await action();
  } catch (error) {
    const text = String(error.message || error);
    // the correlation id is what a user quotes to the API's operators
    say(error.correlationId ? text + " (correlation id " + error.correlationId + ")" : text, "error");
  }
}

function render() {
  const user = account();
  $("who").textContent = user ? user.name || user.username : "";
  $("sign-in").hidden = !!user;
  $("sign-out").hidden = !user;
  $("signed-in").hidden = !user;
}

async function resume() {
  const saved = sessionStorage.getItem(RETRY_KEY);
  sessionStorage.removeItem(RETRY_KEY);
  const retry = saved ? JSON.parse(saved) : null;
  if (retry) {
    view.query = retry.query || view.query;
    $("q").value = view.query.q;
    $("page-size").value = view.query.pageSize;
  }
  await listCustomers(retry && retry.action === "list" ? retry : undefined);
  if (retry && retry.action === "open") await openCustomer(retry.id, retry);
}

async function start() {
  await msalApp.initialize();
  const result = await msalApp.handleRedirectPromise(); // the answer from Entra, if any
  if (result && result.account) msalApp.setActiveAccount(result.account);
  if (!account() && msalApp.getAllAccounts().length) {
    msalApp.setActiveAccount(msalApp.getAllAccounts()[0]);
  }
  render();
  if (account()) await resume();
  else say("Sign in to see your customers.");
}

$("sign-in").addEventListener("click", () =>
  run(() => msalApp.loginRedirect({ scopes: config.scopes, prompt: "select_account" })),
);
$("sign-out").addEventListener("click", () =>
  run(() => msalApp.logoutRedirect({ account: account() })),
);
$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  view.query = { q: $("q").value.trim(), pageSize: $("page-size").value };
  view.pageTokens = [null];
  view.page = 0;
  run(() => listCustomers());
});
$("next-page").addEventListener("click", () => {
  view.page += 1;
  run(() => listCustomers());
});
$("first-page").addEventListener("click", () => {
  view.page = 0;
  run(() => listCustomers());
});
$("editor").addEventListener("submit", (event) => {
  event.preventDefault();
  run(saveCustomer);
});
$("reload").addEventListener("click", () => run(() => openCustomer(view.record.id)));
$("close").addEventListener("click", () => {
  $("editor").hidden = true;
  view.record = null;
});

run(start);
