// The server-rendered pages: sign-in, consent, the user's authorized applications, and the
// error page. Plain forms, no script: they work with JavaScript turned off.
import type { AuthorizedClient } from "../../oauth/consents.ts";
import { describeScope } from "../../oauth/authorization.ts";
import type { Html } from "./html.ts";
import { hiddenFields, html } from "./html.ts";
import { STYLESHEET_PATH, STYLESHEET_VERSION } from "./style.ts";

export function layout(title: string, content: Html, options: { wide?: boolean } = {}): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · TokenAuthority</title>
<link rel="stylesheet" href="${STYLESHEET_PATH}?v=${STYLESHEET_VERSION}">
</head>
<body>
<main${options.wide ? html` class="wide"` : ""} aria-labelledby="title">
<p class="brand">TokenAuthority</p>
${content}
</main>
</body>
</html>
`;
}

export interface SignedInAs {
  username: string;
  csrfToken: string;
  /** False when the user is named by a trusted proxy header (the proxy owns signing out). */
  canSignOut: boolean;
}

function signedIn(user: SignedInAs, returnTo?: string): Html {
  return html`<div class="signed-in">Signed in as <strong>${user.username}</strong>${
    user.canSignOut
      ? html`. <form method="post" action="/oauth/logout">${hiddenFields([
          ["csrf_token", user.csrfToken],
          ...(returnTo ? [["return_to", returnTo] as [string, string]] : []),
        ])}<button type="submit" class="link">Sign out</button></form>`
      : ""
  }</div>`;
}

export interface LoginView {
  csrfToken: string;
  returnTo: string;
  username?: string;
  clientName?: string;
  error?: string;
}

export function loginPage(view: LoginView): Html {
  return layout(
    "Sign in",
    html`<h1 id="title">Sign in</h1>
${view.clientName ? html`<p class="lead">to continue to <strong>${view.clientName}</strong></p>` : ""}
${view.error ? html`<p class="alert" role="alert" id="login-error">${view.error}</p>` : ""}
<form class="login" method="post" action="/oauth/login">
${hiddenFields([["csrf_token", view.csrfToken], ["return_to", view.returnTo]])}
<label for="username">Username</label>
<input type="text" id="username" name="username" value="${view.username ?? ""}" autocomplete="username"
  autocapitalize="none" spellcheck="false" required autofocus maxlength="256"${view.error ? html` aria-describedby="login-error"` : ""}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required maxlength="1024">
<button type="submit" class="primary">Sign in</button>
</form>`,
  );
}

export interface ConsentView {
  clientName: string;
  clientUri?: string;
  logoUri?: string;
  redirectHost: string;
  /**
   * A client known by its metadata document: the host that published it. Its name and logo are
   * whatever that host says, so the host is what the user is asked to trust.
   */
  documentHost?: string;
  /** Every redirect URI is on this device (localhost): any local program could be the client. */
  loopbackOnly?: boolean;
  scopes: string[];
  resources: string[];
  /** The authorization request, carried through the form unchanged. */
  fields: [string, string][];
  user: SignedInAs;
  returnTo: string;
}

export function consentPage(view: ConsentView): Html {
  return layout(
    `Authorize ${view.clientName}`,
    html`<div class="client">
${view.logoUri ? html`<img src="${view.logoUri}" alt="" width="56" height="56">` : ""}
<div>
<h1 id="title">Authorize ${view.clientName}</h1>
${view.documentHost ? html`<p class="document-host">published by <strong>${view.documentHost}</strong></p>` : ""}
${view.clientUri ? html`<p><a href="${view.clientUri}" rel="noopener noreferrer">${view.clientUri}</a></p>` : ""}
</div>
</div>
<p><strong>${view.clientName}</strong> wants to access your account <strong>${view.user.username}</strong>.</p>
${view.documentHost
  ? html`<p class="note warning">This application describes itself at <strong>${view.documentHost}</strong>: its name and logo are what that site says. Approve only if you trust <strong>${view.documentHost}</strong>.</p>`
  : ""}
${view.loopbackOnly
  ? html`<p class="note warning">It returns to an address on this device (<strong>${view.redirectHost}</strong>): approve only if you started it just now.</p>`
  : ""}
<h2 id="scopes-title">It will be able to</h2>
<ul class="scopes" aria-labelledby="scopes-title">
${view.scopes.map((scope) => html`<li><span class="scope-name">${scope}</span>${describeScope(scope)}</li>`)}
</ul>
${view.resources.length
  ? html`<h2 id="resources-title">At</h2><ul class="scopes" aria-labelledby="resources-title">${view.resources.map(
      (resource) => html`<li>${resource}</li>`,
    )}</ul>`
  : ""}
<form method="post" action="/oauth/consent">
${hiddenFields([["csrf_token", view.user.csrfToken], ...view.fields])}
<div class="actions">
<button type="submit" name="decision" value="approve" class="primary">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</div>
</form>
<p class="note">After your choice you return to <strong>${view.redirectHost}</strong>. You can withdraw this access at any time on <a href="/account/sessions">your authorized applications</a> page.</p>
${signedIn(view.user, view.returnTo)}`,
  );
}

export interface SessionsView {
  user: SignedInAs;
  clients: AuthorizedClient[];
  /** The user's signed-in browsers (none with a trusted proxy header). */
  browsers: Array<{ id: string; userAgent: string | null; createdAt: Date; lastSeenAt: Date; current: boolean }>;
  notice?: string;
}

const dateFormat = new Intl.DateTimeFormat("en", { dateStyle: "medium", timeStyle: "short", timeZone: "UTC" });

export function sessionsPage(view: SessionsView): Html {
  return layout(
    "Authorized applications",
    html`<h1 id="title">Authorized applications</h1>
<p class="lead">Applications you have allowed to access your account. Revoking access signs the application out everywhere at once.</p>
${view.notice ? html`<p class="note" role="status">${view.notice}</p>` : ""}
${view.clients.length === 0
  ? html`<p>You have not authorized any application.</p>`
  : html`<ul class="grants">${view.clients.map(
      (client) => html`<li>
<h2>${client.name}</h2>
<dl>
${client.clientUri ? html`<dt>Website</dt><dd>${client.clientUri}</dd>` : ""}
<dt>Authorized</dt><dd>${client.authorizedAt ? html`<time datetime="${client.authorizedAt.toISOString()}">${dateFormat.format(client.authorizedAt)} UTC</time>` : "—"}</dd>
<dt>Permissions</dt><dd>${client.scopes.length ? client.scopes.join(", ") : "—"}</dd>
<dt>Active sessions</dt><dd>${client.liveSessions}</dd>
</dl>
<form method="post" action="/account/sessions/revoke">
${hiddenFields([["csrf_token", view.user.csrfToken], ["client_id", client.clientId]])}
<button type="submit" class="danger" aria-label="Revoke access for ${client.name}">Revoke access</button>
</form>
</li>`,
    )}</ul>`}
${view.user.canSignOut
  ? html`<h2 id="browsers-title">Where you are signed in</h2>
<ul class="grants" aria-labelledby="browsers-title">${view.browsers.map(
      (browser) => html`<li>
<dl>
<dt>Browser</dt><dd>${browser.userAgent ?? "unknown"}${browser.current ? " (this browser)" : ""}</dd>
<dt>Signed in</dt><dd><time datetime="${browser.createdAt.toISOString()}">${dateFormat.format(browser.createdAt)} UTC</time></dd>
<dt>Last seen</dt><dd><time datetime="${browser.lastSeenAt.toISOString()}">${dateFormat.format(browser.lastSeenAt)} UTC</time></dd>
</dl>
</li>`,
    )}</ul>
<form method="post" action="/account/sign-out-everywhere">
${hiddenFields([["csrf_token", view.user.csrfToken]])}
<button type="submit" class="danger">Sign out everywhere</button>
</form>
<p class="note">Signing out everywhere ends every sign-in above and every application's access to your account at once.</p>`
  : ""}
${signedIn(view.user, "/account/sessions")}`,
    { wide: true },
  );
}

export function messagePage(title: string, message: string, hint?: string): Html {
  return layout(title, html`<h1 id="title">${title}</h1><p>${message}</p>${hint ? html`<p class="lead">${hint}</p>` : ""}`);
}

export interface LogoutView {
  username: string;
  csrfToken: string;
  /** The logout request, carried unchanged by the form. */
  fields: [string, string][];
  /** The application that asked, when it is known. */
  clientName?: string;
}

/** RP-Initiated Logout 1.0 §2: "the OP SHOULD ask the End-User whether to log out of the OP as well". */
export function logoutPage(view: LogoutView): Html {
  return layout(
    "Sign out",
    html`<h1 id="title">Sign out?</h1>
<p>${view.clientName ? html`<strong>${view.clientName}</strong> asks to sign you out. ` : ""}You are signed in as <strong>${view.username}</strong>.</p>
<form method="post" action="/oauth/end-session">
${hiddenFields([["csrf_token", view.csrfToken], ...view.fields])}
<div class="actions">
<button type="submit" name="decision" value="logout" class="primary">Sign out</button>
<button type="submit" name="decision" value="stay">Stay signed in</button>
</div>
</form>
<p class="note">Signing out ends your sign-in on this server; the applications you used it for are told.</p>`,
  );
}
