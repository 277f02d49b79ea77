// The one stylesheet of the sign-in, consent and account pages, embedded in the executable
// and served from /assets/style.css (the pages' CSP allows styles from 'self' only).
import { createHash } from "node:crypto";

export const STYLESHEET = `
:root {
  color-scheme: light dark;
  --bg: #f4f5f7; --card: #fff; --text: #1d2330; --muted: #5a6272; --border: #d5d9e0;
  --primary: #1f5fd1; --primary-text: #fff; --danger: #b3261e; --focus: #f2a600;
  --alert-bg: #fdecea; --alert-text: #8a1c15; --note-bg: #eef3fc;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #12151b; --card: #1c2029; --text: #e8eaf0; --muted: #a3aabb; --border: #353b48;
    --primary: #6d9cf5; --primary-text: #0b1020; --danger: #f28b82;
    --alert-bg: #3b1f1d; --alert-text: #ffb4ab; --note-bg: #1f2736;
  }
}
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; min-height: 100vh; display: flex; flex-direction: column; align-items: center;
  background: var(--bg); color: var(--text);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
.skip { position: absolute; left: -9999px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--card); padding: .5rem 1rem; }
main {
  width: 100%; max-width: 30rem; margin: 3rem 1rem 1rem; padding: 2rem;
  background: var(--card); border: 1px solid var(--border); border-radius: 12px;
}
main.wide { max-width: 40rem; }
@media (max-width: 34rem) {
  main { margin: 0; border-radius: 0; border-width: 0 0 1px; padding: 1.5rem 1.25rem; }
}
.brand { margin: 0 0 1.5rem; color: var(--muted); font-size: .875rem; font-weight: 600; letter-spacing: .04em; text-transform: uppercase; }
h1 { margin: 0 0 .5rem; font-size: 1.5rem; line-height: 1.25; }
h2 { margin: 1.5rem 0 .5rem; font-size: 1.05rem; }
p { margin: 0 0 1rem; }
.lead { color: var(--muted); }
a { color: var(--primary); }
label { display: block; margin: 1rem 0 .25rem; font-weight: 600; }
input[type=text], input[type=password] {
  width: 100%; padding: .625rem .75rem; font: inherit; color: inherit;
  background: var(--card); border: 1px solid var(--border); border-radius: 8px;
}
button {
  font: inherit; font-weight: 600; padding: .625rem 1.25rem; border-radius: 8px; cursor: pointer;
  border: 1px solid var(--border); background: var(--card); color: var(--text); min-height: 2.75rem;
}
button.primary { background: var(--primary); border-color: var(--primary); color: var(--primary-text); }
button.danger { color: var(--danger); border-color: currentColor; }
button.link { border: 0; padding: 0; min-height: 0; background: none; color: var(--primary); text-decoration: underline; font-weight: 400; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
form.login button[type=submit] { width: 100%; margin-top: 1.5rem; }
.actions { display: flex; gap: .75rem; margin: 1.5rem 0 1.25rem; }
.actions button { flex: 1; }
@media (max-width: 22rem) { .actions { flex-direction: column; } }
.alert { padding: .75rem 1rem; border-radius: 8px; background: var(--alert-bg); color: var(--alert-text); }
.note { padding: .75rem 1rem; border-radius: 8px; background: var(--note-bg); font-size: .925rem; }
.client { display: flex; gap: 1rem; align-items: center; margin-bottom: 1rem; }
.client img { width: 56px; height: 56px; border-radius: 12px; object-fit: contain; border: 1px solid var(--border); }
.client h1 { margin: 0; }
.client p { margin: 0; font-size: .925rem; overflow-wrap: anywhere; }
.document-host strong { font-size: 1.05rem; }
.note.warning { border-left: 4px solid currentColor; }
ul.scopes { list-style: none; margin: 0; padding: 0; border: 1px solid var(--border); border-radius: 8px; }
ul.scopes li { padding: .625rem .875rem; border-top: 1px solid var(--border); }
ul.scopes li:first-child { border-top: 0; }
.scope-name { display: block; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .8rem; color: var(--muted); }
ul.grants { list-style: none; margin: 1rem 0 0; padding: 0; }
ul.grants > li { padding: 1rem 0; border-top: 1px solid var(--border); }
ul.grants h2 { margin: 0 0 .5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0 0 1rem; font-size: .925rem; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.signed-in { margin-top: 1.5rem; padding-top: 1rem; border-top: 1px solid var(--border); color: var(--muted); font-size: .925rem; }
.signed-in form { display: inline; }
footer { margin: 1rem; color: var(--muted); font-size: .8rem; }
`;

/** A short content hash, so the page can link the stylesheet with a long cache lifetime. */
export const STYLESHEET_VERSION = createHash("sha256").update(STYLESHEET).digest("hex").slice(0, 12);
export const STYLESHEET_PATH = "/assets/style.css";
