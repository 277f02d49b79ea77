-- Several revocations in one statement, one transaction, one round trip: the server coalesces
-- the revocations that arrive while earlier ones are at the database (db/batcher.ts), so a
-- commit, a round trip and the statement's overhead are shared by the batch. Each item gets
-- exactly what ta_revoke_token gives it alone. p_items is a JSON array of {"i": position,
-- "kind", "jti", "client_id", "reason", "sha256"}; one row per item comes back.
--   * Token digests: "sha256" null means the server verified the token's signature; a digest
--     means it did not, and the item takes effect only on the session whose stored digest
--     equals it. An item whose session holds no digest, or another one, comes back as
--     'unverified', without effect: the server then verifies the signature and, if it holds,
--     sends the item again without a digest.
--   * Set-based fast path: the live access tokens of sessions without a grant (client
--     credentials), owned by the item's client, are revoked by one UPDATE with their feed
--     entries — ta_revoke_token's own fast path, for all of them at once. An item naming the same token as an earlier one is
--     left to the next step, where it is found revoked.
--   * Every other item goes through ta_revoke_token, in (kind, jti) order, so two batches lock
--     the rows they share in the same order. Two families locked in opposite orders by two
--     batches is a deadlock PostgreSQL detects and breaks: the server then runs the items of
--     the failed batch one by one.
--   * Every batch takes a transaction id, so its commit is a WAL record that waits for the
--     synchronous standby even when no item changed anything (unknown, already revoked, another
--     client's): an old primary that hung and woke up, not yet demoted, would otherwise answer
--     200 from what it holds — "already revoked" by a commit no standby has, or "unknown" for a
--     session minted on the new primary (test/cluster-faults.test.ts, the split).
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
