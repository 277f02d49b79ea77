-- ta_revoke_tokens takes a transaction id, so that every revocation batch commits a WAL record
-- that waits for the synchronous standby, even one that changed nothing (db/functions/ta_revoke_tokens.sql).
--> statement-breakpoint
-- Functions generated from db/functions/ by scripts/function-migration.ts.
CREATE OR REPLACE FUNCTION public.ta_revoke_tokens(p_items jsonb)
 RETURNS TABLE(i integer, outcome text, session_id uuid, revoked_count integer)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
  v_item record;
  v_result record;
  v_stored text;
  v_done integer[];
  v_ids uuid[];
BEGIN
  PERFORM pg_current_xact_id();
  WITH items AS (
    SELECT DISTINCT ON (x.jti) x.i, x.jti, x.client_id, x.reason, x.sha256
      FROM jsonb_to_recordset(p_items) AS x(i integer, kind text, jti text, client_id text, reason text, sha256 text)
     WHERE x.kind = 'access_token'
     ORDER BY x.jti, x.i
  ), revoked AS (
    UPDATE sessions s
       SET status = 'revoked', revoked_at = now(), updated_at = now(), revocation_reason = it.reason
      FROM items it
     WHERE s.access_token_jti = it.jti AND s.grant_id IS NULL AND s.status = 'created'
       AND (it.client_id IS NULL OR s.client_id = it.client_id)
       AND (it.sha256 IS NULL OR s.access_token_sha256 = it.sha256)
    RETURNING it.i, s.id, s.access_token_jti, s.refresh_token_jti, s.access_expires_at, s.refresh_expires_at, s.revocation_reason
  ), events AS (
    INSERT INTO revocation_events (jti, token_kind, session_id, expires_at, reason)
    SELECT r.access_token_jti, 'access_token', r.id, r.access_expires_at, r.revocation_reason FROM revoked r
     WHERE r.access_expires_at > now()
    UNION ALL
    SELECT r.refresh_token_jti, 'refresh_token', r.id, r.refresh_expires_at, r.revocation_reason FROM revoked r
     WHERE r.refresh_token_jti IS NOT NULL AND r.refresh_expires_at > now()
  )
  SELECT coalesce(array_agg(r.i), '{}'), coalesce(array_agg(r.id), '{}') INTO v_done, v_ids FROM revoked r;
  RETURN QUERY SELECT d.i, 'revoked'::text, d.id, 1 FROM unnest(v_done, v_ids) AS d(i, id);
  FOR v_item IN
    SELECT x.i, x.kind, x.jti, x.client_id, x.reason, x.sha256
      FROM jsonb_to_recordset(p_items) AS x(i integer, kind text, jti text, client_id text, reason text, sha256 text)
     WHERE NOT (x.i = ANY (v_done))
     ORDER BY x.kind, x.jti
  LOOP
    i := v_item.i;
    IF v_item.sha256 IS NOT NULL THEN
      IF v_item.kind = 'access_token' THEN
        SELECT s.access_token_sha256 INTO v_stored FROM sessions s WHERE s.access_token_jti = v_item.jti;
      ELSE
        SELECT s.refresh_token_sha256 INTO v_stored FROM sessions s WHERE s.refresh_token_jti = v_item.jti;
      END IF;
      -- A session that cannot vouch for the token: nothing happens until its signature is checked.
      IF FOUND AND v_stored IS DISTINCT FROM v_item.sha256 THEN
        outcome := 'unverified';
        session_id := NULL;
        revoked_count := 0;
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;
    SELECT * INTO v_result FROM ta_revoke_token(v_item.kind, v_item.jti, v_item.client_id, v_item.reason);
    outcome := v_result.outcome;
    session_id := v_result.session_id;
    revoked_count := v_result.revoked_count;
    RETURN NEXT;
  END LOOP;
END
$function$;
