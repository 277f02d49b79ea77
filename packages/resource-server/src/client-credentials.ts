// How the resource server authenticates to the authorization server: its confidential
// client's credentials as HTTP Basic (RFC 6749 §2.3.1: both parts form-urlencoded first).

export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
}

const formEncode = (value: string) => encodeURIComponent(value).replace(/%20/g, "+");

export function basicAuthorization({ clientId, clientSecret }: ClientCredentials): string {
  const pair = `${formEncode(clientId)}:${formEncode(clientSecret)}`;
  return `Basic ${btoa(pair)}`;
}
