-- ta_rotate_sessions: several refresh-token rotations in one statement, one transaction, one
-- round trip, coalesced by the server like revocations (db/batcher.ts). Each item gets exactly
-- what ta_rotate_session (0003) gives it alone, in (refresh_jti, position) order: two
-- rotations of one token in one batch are the same race as two at once — the first rotates,
-- the second is reuse (or, within the grace period, a replacement). p_items is a JSON array of
-- {"i": position, "refresh_jti", "client_id", "scope", "new_access_jti", "new_refresh_jti",
-- "access_ttl", "grace_seconds"}; one row per item comes back.

CREATE OR REPLACE FUNCTION ta_rotate_sessions(p_items jsonb)
RETURNS TABLE (
  i integer,
  outcome text,
  new_session_id uuid,
  subject text,
  scope text,
  audience text[],
  access_expires_at timestamptz,
  refresh_expires_at timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_item record;
  v record;
BEGIN
  FOR v_item IN
    SELECT x.*
      FROM jsonb_to_recordset(p_items) AS x(i integer, refresh_jti text, client_id text, scope text,
           new_access_jti text, new_refresh_jti text, access_ttl integer, grace_seconds integer)
     ORDER BY x.refresh_jti, x.i
  LOOP
    SELECT * INTO v FROM ta_rotate_session(v_item.refresh_jti, v_item.client_id, v_item.scope,
      v_item.new_access_jti, v_item.new_refresh_jti, v_item.access_ttl, v_item.grace_seconds);
    i := v_item.i;
    outcome := v.outcome;
    new_session_id := v.new_session_id;
    subject := v.subject;
    scope := v.scope;
    audience := v.audience;
    access_expires_at := v.access_expires_at;
    refresh_expires_at := v.refresh_expires_at;
    RETURN NEXT;
  END LOOP;
END
$$;
