-- Operating a running server: users can be disabled, clients keep a previous secret through a
-- grace period, signing keys can be revoked (and sessions record the kid that signed their
-- tokens, so that revoking a key revokes exactly what it signed), and browser sign-ins are rows
-- (browser_sessions) that logout and "Sign out everywhere" end. Additive: instances of the 0009
-- release keep working beside it (their sessions record no kid).
ALTER TYPE "public"."signing_key_status" ADD VALUE 'revoked';--> statement-breakpoint
CREATE TABLE "browser_sessions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"token_hash" text NOT NULL,
	"user_id" uuid NOT NULL,
	"user_agent" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"end_reason" text,
	CONSTRAINT "browser_sessions_token_hash_unique" UNIQUE("token_hash")
);
--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "previous_secret_hash" text;--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "previous_secret_expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "updated_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "signing_kid" text;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "disabled_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "updated_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "browser_sessions" ADD CONSTRAINT "browser_sessions_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "browser_sessions_user_live_idx" ON "browser_sessions" USING btree ("user_id") WHERE ended_at is null;--> statement-breakpoint
CREATE INDEX "browser_sessions_expires_at_idx" ON "browser_sessions" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "sessions_signing_kid_live_idx" ON "sessions" USING btree ("signing_kid") WHERE status = 'created';
--> statement-breakpoint
-- Functions generated from db/functions/ by scripts/function-migration.ts.
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
--> statement-breakpoint
CREATE OR REPLACE FUNCTION public.ta_rotate_session(p_item jsonb)
 RETURNS TABLE(outcome text, new_session_id uuid, subject text, scope text, audience text[], access_expires_at timestamp with time zone, refresh_expires_at timestamp with time zone, signed boolean)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
  v sessions%ROWTYPE;
  v_child sessions%ROWTYPE;
  v_scope text;
  v_signed boolean;
  v_new_id uuid := gen_random_uuid();
  v_outcome text := 'rotated';
  v_access_expires_at timestamptz := (p_item->>'access_expires_at')::timestamptz;
BEGIN
  SELECT * INTO v FROM sessions s WHERE s.refresh_token_jti = p_item->>'refresh_jti';
  IF v.id IS NULL THEN
    RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::text, NULL::text, NULL::text[], NULL::timestamptz, NULL::timestamptz, false;
    RETURN;
  END IF;
  IF p_item->>'presented_sha256' IS NOT NULL AND v.refresh_token_sha256 IS DISTINCT FROM p_item->>'presented_sha256' THEN
    RETURN QUERY SELECT 'unverified'::text, NULL::uuid, NULL::text, NULL::text, NULL::text[], NULL::timestamptz, NULL::timestamptz, false;
    RETURN;
  END IF;
  IF v.grant_id IS NOT NULL THEN
    PERFORM 1 FROM authorization_grants g WHERE g.id = v.grant_id FOR UPDATE;
    SELECT * INTO v FROM sessions s WHERE s.id = v.id; -- re-read under the lock
  END IF;

  IF v.client_id <> p_item->>'client_id' THEN
    PERFORM ta_revoke_sessions(ARRAY[v.id], 'refresh_token_reuse');
    RETURN QUERY SELECT 'reuse'::text, v.id, NULL::text, NULL::text, NULL::text[], NULL::timestamptz, NULL::timestamptz, false;
    RETURN;
  END IF;

  IF v.status <> 'created' THEN
    IF (p_item->>'grace_seconds')::integer > 0 AND v.status = 'refreshed'
       AND v.updated_at > now() - make_interval(secs => (p_item->>'grace_seconds')::integer) THEN
      SELECT * INTO v_child FROM sessions s WHERE s.parent_id = v.id AND s.status = 'created';
    END IF;
    IF v_child.id IS NULL THEN
      PERFORM ta_revoke_sessions(ARRAY[v.id], 'refresh_token_reuse');
      RETURN QUERY SELECT 'reuse'::text, v.id, NULL::text, NULL::text, NULL::text[], NULL::timestamptz, NULL::timestamptz, false;
      RETURN;
    END IF;
    v_outcome := 'replaced';
  END IF;

  IF v.refresh_expires_at IS NULL OR v.refresh_expires_at <= now() THEN
    RETURN QUERY SELECT 'expired'::text, v.id, NULL::text, NULL::text, NULL::text[], NULL::timestamptz, NULL::timestamptz, false;
    RETURN;
  END IF;

  -- RFC 6749 §6: the requested scope MUST NOT include any scope not originally granted.
  v_scope := coalesce(nullif(p_item->>'scope', ''), v.scope);
  IF NOT (string_to_array(v_scope, ' ') <@ string_to_array(v.scope, ' ')) THEN
    RETURN QUERY SELECT 'invalid_scope'::text, v.id, NULL::text, NULL::text, NULL::text[], NULL::timestamptz, NULL::timestamptz, false;
    RETURN;
  END IF;

  IF v_outcome = 'replaced' THEN
    -- Grace period: the child alone is replaced, its tokens revoked and announced like any other.
    UPDATE sessions s SET status = 'revoked', revoked_at = now(), updated_at = now(), revocation_reason = 'replaced_by_retry'
     WHERE s.id = v_child.id;
    INSERT INTO revocation_events (jti, token_kind, session_id, expires_at, reason)
    SELECT v_child.access_token_jti, 'access_token', v_child.id, v_child.access_expires_at, 'replaced_by_retry' WHERE v_child.access_expires_at > now()
    UNION ALL
    SELECT v_child.refresh_token_jti, 'refresh_token', v_child.id, v_child.refresh_expires_at, 'replaced_by_retry' WHERE v_child.refresh_expires_at > now();
  ELSE
    UPDATE sessions s SET status = 'refreshed', updated_at = now() WHERE s.id = v.id;
    -- The rotated-away access token dies with its session: resource servers following the
    -- revocation feed must learn of it like of any revocation.
    INSERT INTO revocation_events (jti, token_kind, session_id, expires_at, reason)
    SELECT v.access_token_jti, 'access_token', v.id, v.access_expires_at, 'refreshed' WHERE v.access_expires_at > now();
  END IF;
  -- The tokens signed beforehand hold exactly what the child session will.
  v_signed := v.subject = p_item->>'subject'
          AND v.audience = ARRAY(SELECT jsonb_array_elements_text(p_item->'audience'))
          AND v_scope = p_item->>'signed_scope'
          AND v.refresh_expires_at = (p_item->>'refresh_expires_at')::timestamptz;
  INSERT INTO sessions (id, grant_id, parent_id, client_id, subject, scope, audience, access_token_jti,
                        refresh_token_jti, access_token_sha256, refresh_token_sha256, signing_kid, status,
                        access_expires_at, refresh_expires_at)
  VALUES (v_new_id, v.grant_id, v.id, v.client_id, v.subject, v_scope, v.audience, p_item->>'new_access_jti',
          p_item->>'new_refresh_jti',
          CASE WHEN v_signed THEN p_item->>'access_sha256' END, CASE WHEN v_signed THEN p_item->>'refresh_sha256' END,
          p_item->>'signing_kid', 'created', v_access_expires_at, v.refresh_expires_at);
  RETURN QUERY SELECT v_outcome, v_new_id, v.subject, v_scope, v.audience, v_access_expires_at, v.refresh_expires_at,
                      coalesce(v_signed, false);
END
$function$;
