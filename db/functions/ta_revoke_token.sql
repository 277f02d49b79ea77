-- Finds the session of a token by the jti column of its kind, checks that it belongs to the
-- revoking client, and revokes its whole family (RFC 7009 §2.1: "the authorization server
-- SHOULD also invalidate" the tokens of the same grant). Outcomes: revoked | already_revoked |
-- unknown | other_client (nothing changed for the last three). Log entries: see ta_revoke_sessions
-- (each names the subject, client and family, so that it reads the same once the session is pruned).
--   * fast path: a live access token of a session without an authorization grant
--     (client_credentials) has no family and no grant row to lock first: one UPDATE;
--   * family path (sessions of an authorization grant): the grant row is locked first, then its
--     live sessions are revoked by grant_id in a fresh snapshot (see ta_revoke_sessions).
CREATE OR REPLACE FUNCTION public.ta_revoke_token(p_kind text, p_jti text, p_client_id text, p_reason text)
 RETURNS TABLE(outcome text, session_id uuid, revoked_count integer)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
  v_id uuid;
  v_client text;
  v_grant uuid;
  v_count integer;
BEGIN
  IF p_kind = 'access_token' THEN
    WITH revoked AS (
      UPDATE sessions s
         SET status = 'revoked', revoked_at = now(), updated_at = now(), revocation_reason = p_reason
       WHERE s.access_token_jti = p_jti AND s.grant_id IS NULL AND s.status = 'created'
         AND (p_client_id IS NULL OR s.client_id = p_client_id)
      RETURNING s.id, s.access_token_jti, s.refresh_token_jti, s.access_expires_at, s.refresh_expires_at, s.revocation_reason,
                s.subject, s.client_id
    ), events AS (
      INSERT INTO revocation_events (jti, token_kind, session_id, expires_at, reason, subject, client_id, family_id)
      SELECT r.access_token_jti, 'access_token', r.id, r.access_expires_at, r.revocation_reason, r.subject, r.client_id, r.id FROM revoked r
       WHERE r.access_expires_at > now()
      UNION ALL
      SELECT r.refresh_token_jti, 'refresh_token', r.id, r.refresh_expires_at, r.revocation_reason, r.subject, r.client_id, r.id FROM revoked r
       WHERE r.refresh_token_jti IS NOT NULL AND r.refresh_expires_at > now()
    )
    SELECT r.id INTO v_id FROM revoked r;
    IF v_id IS NOT NULL THEN
      RETURN QUERY SELECT 'revoked'::text, v_id, 1;
      RETURN;
    END IF;
    SELECT s.id, s.client_id, s.grant_id INTO v_id, v_client, v_grant FROM sessions s WHERE s.access_token_jti = p_jti;
  ELSIF p_kind = 'refresh_token' THEN
    SELECT s.id, s.client_id, s.grant_id INTO v_id, v_client, v_grant FROM sessions s WHERE s.refresh_token_jti = p_jti;
  ELSE
    RAISE EXCEPTION 'unknown token kind %', p_kind USING ERRCODE = '22023';
  END IF;
  IF v_id IS NULL THEN
    RETURN QUERY SELECT 'unknown'::text, NULL::uuid, 0;
    RETURN;
  END IF;
  IF p_client_id IS NOT NULL AND v_client <> p_client_id THEN
    RETURN QUERY SELECT 'other_client'::text, v_id, 0;
    RETURN;
  END IF;
  IF v_grant IS NULL THEN
    v_count := ta_revoke_sessions(ARRAY[v_id], p_reason);
  ELSE
    -- Lock the grant first (no rotation or redemption of this family can commit meanwhile),
    -- then revoke every live session of it, read in this statement's fresh snapshot.
    -- status::text, not status: with "status = 'created'" the cached generic plan was seen
    -- to AND the grant_id index with a whole partial index of live sessions
    -- (sessions_subject_live_idx), a cost growing with every live session in the table.
    PERFORM 1 FROM authorization_grants g WHERE g.id = v_grant FOR UPDATE;
    WITH revoked AS (
      UPDATE sessions s
         SET status = 'revoked', revoked_at = now(), updated_at = now(), revocation_reason = p_reason
       WHERE s.grant_id = v_grant AND s.status::text = 'created'
      RETURNING s.id, s.access_token_jti, s.refresh_token_jti, s.access_expires_at, s.refresh_expires_at, s.revocation_reason,
                s.subject, s.client_id
    ), events AS (
      INSERT INTO revocation_events (jti, token_kind, session_id, expires_at, reason, subject, client_id, family_id)
      SELECT r.access_token_jti, 'access_token', r.id, r.access_expires_at, r.revocation_reason, r.subject, r.client_id, v_grant FROM revoked r
       WHERE r.access_expires_at > now()
      UNION ALL
      SELECT r.refresh_token_jti, 'refresh_token', r.id, r.refresh_expires_at, r.revocation_reason, r.subject, r.client_id, v_grant FROM revoked r
       WHERE r.refresh_token_jti IS NOT NULL AND r.refresh_expires_at > now()
    )
    SELECT count(*) INTO v_count FROM revoked;
  END IF;
  RETURN QUERY SELECT CASE WHEN v_count > 0 THEN 'revoked' ELSE 'already_revoked' END, v_id, v_count;
END
$function$;
