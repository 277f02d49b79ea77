// A user's profile: the OpenID Connect Core 1.0 §5.1 standard claims an operator sets (the
// admin API and `users set-profile`), kept as the user's `profile` and released by the `profile`,
// `email` and `phone` scopes once the server is an OpenID Provider. A change is a patch: a
// claim given a value is set, a claim given null is removed, the others stay.
import { OAuthError } from "../errors.ts";

export type Profile = Record<string, string | boolean>;
export type ProfileChange = Record<string, string | boolean | null>;

const STRING_CLAIMS = [
  "name",
  "given_name",
  "family_name",
  "middle_name",
  "nickname",
  "preferred_username",
  "gender",
  "zoneinfo",
  "locale",
] as const;
/** §5.1: "URL of the End-User's profile page" / "profile picture" / "Web page or blog". */
const URL_CLAIMS = ["profile", "picture", "website"] as const;
const BOOLEAN_CLAIMS = ["email_verified", "phone_number_verified"] as const;
export const PROFILE_CLAIMS: readonly string[] = [...STRING_CLAIMS, ...URL_CLAIMS, "email", "phone_number", "birthdate", ...BOOLEAN_CLAIMS];

const MAX_LENGTH = 256;
/** RFC 5322's addr-spec, loosely: something@domain, no spaces (a mailbox the operator vouches for). */
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
/** §5.1 birthdate: "YYYY-MM-DD", or "YYYY" alone, or "0000-MM-DD" when the year is withheld. */
const BIRTHDATE = /^\d{4}(-\d{2}-\d{2})?$/;
/** §5.1 phone_number: E.164 recommended, "+1 (425) 555-1212" allowed. */
const PHONE = /^\+?[0-9 ()\-.]{3,32}(;ext=[0-9]{1,10})?$/;

const invalid = (description: string) => OAuthError.invalidRequest(description);

/** Checks one claim's new value (null removes it); answers the value to store. */
function checkedClaim(name: string, value: unknown): string | boolean | null {
  if (value === null) return null;
  if (!PROFILE_CLAIMS.includes(name)) throw invalid(`"${name.slice(0, 40)}" is not a profile claim (${PROFILE_CLAIMS.join(", ")})`);
  if ((BOOLEAN_CLAIMS as readonly string[]).includes(name)) {
    if (typeof value !== "boolean") throw invalid(`${name} is true or false`);
    return value;
  }
  if (typeof value !== "string" || value.trim() === "" || value.length > MAX_LENGTH) throw invalid(`${name} is a non-empty string of at most ${MAX_LENGTH} characters`);
  if ((URL_CLAIMS as readonly string[]).includes(name)) {
    if (!URL.canParse(value) || !["https:", "http:"].includes(new URL(value).protocol)) throw invalid(`${name} is an http(s) URL`);
  }
  if (name === "email" && !EMAIL.test(value)) throw invalid("email is an e-mail address");
  if (name === "birthdate" && !BIRTHDATE.test(value)) throw invalid("birthdate is YYYY-MM-DD or YYYY");
  if (name === "phone_number" && !PHONE.test(value)) throw invalid("phone_number is a telephone number, E.164 preferably");
  return value;
}

/** The profile after `change` (validated as a whole: a *_verified flag needs its claim). */
export function changedProfile(current: Profile, change: ProfileChange): Profile {
  if (typeof change !== "object" || change === null || Array.isArray(change)) throw invalid("a profile change is a JSON object of claims");
  const next: Profile = { ...current };
  for (const [name, value] of Object.entries(change)) {
    const checked = checkedClaim(name, value);
    if (checked === null) delete next[name];
    else next[name] = checked;
  }
  for (const [flag, claim] of [["email_verified", "email"], ["phone_number_verified", "phone_number"]] as const) {
    if (next[flag] !== undefined && next[claim] === undefined) throw invalid(`${flag} needs ${claim}`);
  }
  return next;
}
