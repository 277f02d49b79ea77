-- Redeems an authorization code (RFC 6749 §4.1.3) in one statement: finds its grant by the code's
-- SHA-256, checks the request against it, compare-and-sets the grant to redeemed and inserts the
-- session, under the grant's row lock. Outcomes: redeemed | unknown | reuse | expired |
-- other_client | redirect_mismatch | pkce_unexpected_verifier | pkce_required | pkce_method |
-- pkce_verifier_required | pkce_failed | no_user | invalid_scope | invalid_target; nothing
-- changes but for `redeemed` and `reuse`.
--
-- The server signs the session's tokens BEFORE this statement from what the code says it grants
-- ("signed_subject", "signed_scope", "signed_audience"; src/oauth/authorization-codes.ts); their
-- digests are stored only if the grant says the same ('signed'), else the server signs again
-- from the returned values. Two redemptions of one code: the second waits for the first's row
-- lock, finds the code redeemed and revokes what the first issued (RFC 6749 §4.1.2).
-- p_item: {"code_hash", "client_id", "public_client", "redirect_uri", "implied_redirect_uri",
-- "verifier_s256", "scope", "resource", "default_audience", "access_jti", "refresh_jti",
-- "access_expires_at", "refresh_expires_at", "signed_subject", "signed_scope", "signed_audience",
-- "access_sha256", "refresh_sha256", "signing_kid"}.
CREATE OR REPLACE FUNCTION public.ta_redeem_code(p_item jsonb)
 RETURNS TABLE(outcome text, session_id uuid, grant_id uuid, revoked_count integer, subject text, scope text, audience text[], signed boolean)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
  g authorization_grants%ROWTYPE;
  v_redirect text := p_item->>'redirect_uri';
  v_verifier text := p_item->>'verifier_s256';
  v_scope text;
  v_allowed text[];
  v_audience text[];
  v_signed boolean;
  v_count integer;
  v_session uuid;
BEGIN
  SELECT * INTO g FROM authorization_grants x WHERE x.code_hash = p_item->>'code_hash';
  IF g.id IS NULL THEN
    RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::uuid, 0, NULL::text, NULL::text, NULL::text[], false;
    RETURN;
  END IF;
  -- RFC 6749 §4.1.2: a code used more than once is refused, and the tokens it issued SHOULD be revoked.
  IF g.redeemed_at IS NOT NULL THEN
    v_count := ta_revoke_sessions(ARRAY(SELECT s.id FROM sessions s WHERE s.grant_id = g.id AND s.status = 'created'), 'authorization_code_reuse');
    RETURN QUERY SELECT 'reuse'::text, NULL::uuid, g.id, v_count, NULL::text, NULL::text, NULL::text[], false;
    RETURN;
  END IF;
  -- Judged by the clock, not by when this transaction began: see the compare-and-set below.
  IF g.expires_at <= clock_timestamp() THEN
    RETURN QUERY SELECT 'expired'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
    RETURN;
  END IF;
  -- RFC 6749 §4.1.3: ensure the code was issued to the authenticated client.
  IF g.client_id <> p_item->>'client_id' THEN
    RETURN QUERY SELECT 'other_client'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
    RETURN;
  END IF;
  -- RFC 6749 §4.1.3: redirect_uri, if it was in the authorization request, MUST be identical. A
  -- grant without one (the client relied on its only registered URI) accepts that URI or none.
  IF (g.redirect_uri IS NULL AND v_redirect IS DISTINCT FROM p_item->>'implied_redirect_uri')
     OR (g.redirect_uri IS NOT NULL AND v_redirect IS DISTINCT FROM g.redirect_uri) THEN
    RETURN QUERY SELECT 'redirect_mismatch'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
    RETURN;
  END IF;
  IF g.code_challenge IS NULL THEN
    -- OAuth 2.1 §4.1.3: without a code_challenge the request MUST NOT contain code_verifier (no
    -- PKCE downgrade); RFC 9700 §2.1.1: public clients MUST use PKCE.
    IF v_verifier IS NOT NULL THEN
      RETURN QUERY SELECT 'pkce_unexpected_verifier'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
      RETURN;
    END IF;
    IF (p_item->>'public_client')::boolean THEN
      RETURN QUERY SELECT 'pkce_required'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
      RETURN;
    END IF;
  ELSE
    -- OAuth 2.1 §7.5.2: only S256; `plain` is refused. RFC 7636 §4.6: BASE64URL(SHA256(verifier)) = challenge.
    IF g.code_challenge_method IS DISTINCT FROM 'S256' THEN
      RETURN QUERY SELECT 'pkce_method'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
      RETURN;
    END IF;
    IF v_verifier IS NULL THEN
      RETURN QUERY SELECT 'pkce_verifier_required'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
      RETURN;
    END IF;
    IF v_verifier <> g.code_challenge THEN
      RETURN QUERY SELECT 'pkce_failed'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
      RETURN;
    END IF;
  END IF;
  IF g.user_id IS NULL THEN
    RETURN QUERY SELECT 'no_user'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
    RETURN;
  END IF;
  -- RFC 6749 §3.3: the scope may be narrowed, never widened.
  v_scope := coalesce(p_item->>'scope', g.scope);
  IF NOT (string_to_array(v_scope, ' ') <@ string_to_array(g.scope, ' ')) THEN
    RETURN QUERY SELECT 'invalid_scope'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
    RETURN;
  END IF;
  -- RFC 8707 §2.2: the audience is one granted resource when one is requested, else every one.
  v_allowed := CASE WHEN cardinality(g.resources) > 0 THEN g.resources ELSE ARRAY[p_item->>'default_audience'] END;
  IF p_item->>'resource' IS NOT NULL THEN
    IF NOT (p_item->>'resource' = ANY (v_allowed)) THEN
      RETURN QUERY SELECT 'invalid_target'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
      RETURN;
    END IF;
    v_audience := ARRAY[p_item->>'resource'];
  ELSE
    v_audience := v_allowed;
  END IF;
  -- The compare-and-set. Withdrawing access on the account page sets expires_at = now() on the
  -- codes not yet redeemed, then revokes the sessions; clock_timestamp(), not now(): now() is
  -- when this transaction began, possibly before that withdrawal committed, and a redemption
  -- winning after it would mint a session its revocation no longer sees. A concurrent
  -- redemption holds the row: this one waits, then finds it redeemed.
  UPDATE authorization_grants x SET redeemed_at = now()
   WHERE x.id = g.id AND x.redeemed_at IS NULL AND x.expires_at > clock_timestamp();
  IF NOT FOUND THEN
    SELECT * INTO g FROM authorization_grants x WHERE x.id = g.id;
    IF g.redeemed_at IS NOT NULL THEN
      v_count := ta_revoke_sessions(ARRAY(SELECT s.id FROM sessions s WHERE s.grant_id = g.id AND s.status = 'created'), 'authorization_code_reuse');
      RETURN QUERY SELECT 'reuse'::text, NULL::uuid, g.id, v_count, NULL::text, NULL::text, NULL::text[], false;
    ELSE
      RETURN QUERY SELECT 'expired'::text, NULL::uuid, g.id, 0, NULL::text, NULL::text, NULL::text[], false;
    END IF;
    RETURN;
  END IF;
  -- The tokens signed beforehand hold exactly what the session will.
  v_signed := false;
  IF jsonb_typeof(p_item->'signed_audience') = 'array' THEN
    v_signed := coalesce(g.user_id::text = p_item->>'signed_subject'
            AND v_scope = p_item->>'signed_scope'
            AND v_audience = ARRAY(SELECT jsonb_array_elements_text(p_item->'signed_audience')), false);
  END IF;
  INSERT INTO sessions (grant_id, client_id, subject, scope, audience, access_token_jti, refresh_token_jti,
                        access_token_sha256, refresh_token_sha256, signing_kid, access_expires_at, refresh_expires_at)
  VALUES (g.id, g.client_id, g.user_id::text, v_scope, v_audience, p_item->>'access_jti', p_item->>'refresh_jti',
          CASE WHEN v_signed THEN p_item->>'access_sha256' END, CASE WHEN v_signed THEN p_item->>'refresh_sha256' END,
          p_item->>'signing_kid', (p_item->>'access_expires_at')::timestamptz, (p_item->>'refresh_expires_at')::timestamptz)
  RETURNING id INTO v_session;
  RETURN QUERY SELECT 'redeemed'::text, v_session, g.id, 0, g.user_id::text, v_scope, v_audience, v_signed;
END
$function$;
