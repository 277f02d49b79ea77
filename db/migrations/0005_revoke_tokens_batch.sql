-- ta_revoke_tokens: several revocations in one statement, one transaction, one round trip.
-- The server coalesces the revocations that arrive while earlier ones are at the database
-- (db/batcher.ts): a commit, a round trip and the statement's overhead are shared by the
-- batch instead of paid by each revocation. Each item gets exactly what ta_revoke_token
-- (0004) gives it alone: p_items is a JSON array of {"i": position, "kind", "jti",
-- "client_id", "reason"}; one row per item comes back.
--   * Set-based fast path: the live access tokens of sessions without a grant (client
--     credentials), owned by the item's client, are revoked by one UPDATE with their feed
--     entries — ta_revoke_token's own fast path, for all of them at once. An item naming the
--     same token as an earlier one is left to the next step, where it is found revoked.
--   * Every other item goes through ta_revoke_token, in (kind, jti) order, so two batches lock
--     the rows they share in the same order. Two families locked in opposite orders by two
--     batches is a deadlock PostgreSQL detects and breaks: the server then runs the items of
--     the failed batch one by one.

CREATE OR REPLACE FUNCTION ta_revoke_tokens(p_items jsonb)
RETURNS TABLE (i integer, outcome text, session_id uuid, revoked_count integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_item record;
  v_result record;
  v_done integer[];
  v_ids uuid[];
BEGIN
  WITH items AS (
    SELECT DISTINCT ON (x.jti) x.i, x.jti, x.client_id, x.reason
      FROM jsonb_to_recordset(p_items) AS x(i integer, kind text, jti text, client_id text, reason text)
     WHERE x.kind = 'access_token'
     ORDER BY x.jti, x.i
  ), revoked AS (
    UPDATE sessions s
       SET status = 'revoked', revoked_at = now(), updated_at = now(), revocation_reason = it.reason
      FROM items it
     WHERE s.access_token_jti = it.jti AND s.grant_id IS NULL AND s.status = 'created'
       AND (it.client_id IS NULL OR s.client_id = it.client_id)
    RETURNING it.i, s.id, s.access_token_jti, s.refresh_token_jti, s.access_expires_at, s.refresh_expires_at
  ), events AS (
    INSERT INTO revocation_events (jti, token_kind, session_id, expires_at)
    SELECT r.access_token_jti, 'access_token', r.id, r.access_expires_at FROM revoked r
     WHERE r.access_expires_at > now()
    UNION ALL
    SELECT r.refresh_token_jti, 'refresh_token', r.id, r.refresh_expires_at FROM revoked r
     WHERE r.refresh_token_jti IS NOT NULL AND r.refresh_expires_at > now()
  )
  SELECT coalesce(array_agg(r.i), '{}'), coalesce(array_agg(r.id), '{}') INTO v_done, v_ids FROM revoked r;
  RETURN QUERY SELECT d.i, 'revoked'::text, d.id, 1 FROM unnest(v_done, v_ids) AS d(i, id);
  FOR v_item IN
    SELECT x.i, x.kind, x.jti, x.client_id, x.reason
      FROM jsonb_to_recordset(p_items) AS x(i integer, kind text, jti text, client_id text, reason text)
     WHERE NOT (x.i = ANY (v_done))
     ORDER BY x.kind, x.jti
  LOOP
    SELECT * INTO v_result FROM ta_revoke_token(v_item.kind, v_item.jti, v_item.client_id, v_item.reason);
    i := v_item.i;
    outcome := v_result.outcome;
    session_id := v_result.session_id;
    revoked_count := v_result.revoked_count;
    RETURN NEXT;
  END LOOP;
END
$$;
