// Security headers for HTML pages (login, consent, account, API docs). JSON responses get none
// of these: a CSP or frame policy means nothing to an API client and some break CORS callers.
// - CSP without inline script: pages may use only scripts, styles and images they serve
//   themselves (inline style attributes are allowed; inline <script> is not).
// - frame-ancestors 'none' + X-Frame-Options: DENY: no clickjacking of the consent page.
// - no form-action: Chrome applies form-action to the redirect that follows a form post, which
//   would block the consent page's redirect to the client's redirect_uri.
export const HTML_SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; " +
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "X-Content-Type-Options": "nosniff",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cache-Control": "no-store",
});

/** An HTML response with the security headers. */
export function htmlResponse(html: string, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(html, {
    status,
    headers: { "Content-Type": "text/html; charset=utf-8", ...HTML_SECURITY_HEADERS, ...headers },
  });
}

/** Escapes text for an HTML element or a quoted attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
