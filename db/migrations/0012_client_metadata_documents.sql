-- Issue 16: clients say how they came to be (operator, dynamic registration, or a client ID
-- metadata document whose URL is their client_id), until when a fetched document is fresh, and
-- when pruning first saw them in use (self-registered clients never used are pruned). Clients that
-- exist already count as made by an operator. ta_rotate_session: a refresh token of a session
-- that is already revoked, in a family with nothing live left, answers 'revoked' (no theft).
CREATE TYPE "public"."client_registration" AS ENUM('operator', 'dynamic', 'document');--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "registration" "client_registration" DEFAULT 'operator' NOT NULL;--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "document_expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "first_used_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "clients_unused_idx" ON "clients" USING btree ("created_at") WHERE registration <> 'operator' and first_used_at is null;
--> statement-breakpoint
-- Functions generated from db/functions/ by scripts/function-migration.ts.
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
  v_revoked integer;
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

  IF v.status = 'revoked' THEN
    v_revoked := ta_revoke_sessions(ARRAY[v.id], 'refresh_token_reuse');
    RETURN QUERY SELECT (CASE WHEN v_revoked > 0 THEN 'reuse' ELSE 'revoked' END)::text, v.id, NULL::text, NULL::text,
      NULL::text[], NULL::timestamptz, NULL::timestamptz, false;
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
