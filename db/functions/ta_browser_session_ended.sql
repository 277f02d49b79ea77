-- The trigger on browser_sessions that logs the end of a browser sign-in (logout, "Sign out
-- everywhere", a user disabled, deleted or given a new password, an operator's end) as a
-- `browser-session-ended` entry of the event log, in the transaction that ended it — so a change
-- that rolls back logs nothing, and every way a sign-in ends is covered by one definition. The
-- entry names the user, the sign-in (`sid`) and the clients to tell over the back channel
-- (OpenID Connect Back-Channel Logout 1.0 §2.5): those with a backchannel_logout_uri that were
-- given an openid grant in it. A sign-in no such client used logs nothing. Kept an hour: the
-- retries of a delivery fit in it (src/oauth/backchannel-logout.ts).
CREATE OR REPLACE FUNCTION public.ta_browser_session_ended()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
  INSERT INTO revocation_events (event, subject, reason, detail, expires_at)
  SELECT 'browser-session-ended', NEW.user_id::text, NEW.end_reason,
         jsonb_build_object('sid', NEW.id::text, 'clients', jsonb_agg(DISTINCT g.client_id)),
         now() + interval '1 hour'
    FROM authorization_grants g
    JOIN clients c ON c.client_id = g.client_id
   WHERE g.browser_session_id = NEW.id
     AND c.metadata ? 'backchannel_logout_uri'
     AND 'openid' = ANY (string_to_array(g.scope, ' '))
  HAVING count(*) > 0;
  RETURN NULL;
END
$function$
