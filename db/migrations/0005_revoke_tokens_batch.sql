-- ta_revoke_tokens: several revocations in one statement, one transaction, one round trip.
-- The server coalesces the revocations that arrive while earlier ones are at the database
-- (db/batcher.ts): a commit, a round trip and the statement's overhead are shared by the
-- batch instead of paid by each revocation. Each item gets exactly what ta_revoke_token
-- (0004) gives it alone, in the same order of checks: p_items is a JSON array of
-- {"i": position, "kind", "jti", "client_id", "reason"}; one row per item comes back.
-- Items are taken in (kind, jti) order, so two batches lock the rows they share in the same
-- order. Two families locked in opposite orders by two batches is a deadlock PostgreSQL
-- detects and breaks: the server then runs the items of the failed batch one by one.

CREATE OR REPLACE FUNCTION ta_revoke_tokens(p_items jsonb)
RETURNS TABLE (i integer, outcome text, session_id uuid, revoked_count integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_item record;
  v_result record;
BEGIN
  FOR v_item IN
    SELECT x.i, x.kind, x.jti, x.client_id, x.reason
      FROM jsonb_to_recordset(p_items) AS x(i integer, kind text, jti text, client_id text, reason text)
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
