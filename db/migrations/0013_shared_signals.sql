-- Issue 17 (Shared Signals): revocation_events becomes the committed event log — token entries as
-- before, plus security events (account disabled, enabled, purged, credential changed) and stream
-- events (verification, stream updated), each with the writing transaction's id (txn; a default
-- set after the column is added, so existing rows are not rewritten). ta_revoke_sessions' entries
-- also name subject, client and family (its callers may delete the sessions in the same
-- transaction). SSF streams, the subjects receivers removed, and the events settled above a
-- stream's position.
CREATE TYPE "public"."ssf_stream_status" AS ENUM('enabled', 'paused', 'disabled');--> statement-breakpoint
CREATE TABLE "ssf_acks" (
	"stream_id" uuid NOT NULL,
	"cursor" bigint NOT NULL,
	CONSTRAINT "ssf_acks_stream_id_cursor_pk" PRIMARY KEY("stream_id","cursor")
);
--> statement-breakpoint
CREATE TABLE "ssf_excluded_subjects" (
	"stream_id" uuid NOT NULL,
	"subject_key" text NOT NULL,
	"subject" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "ssf_excluded_subjects_stream_id_subject_key_pk" PRIMARY KEY("stream_id","subject_key")
);
--> statement-breakpoint
CREATE TABLE "ssf_streams" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"client_id" text NOT NULL,
	"audience" text NOT NULL,
	"events_requested" text[],
	"events_delivered" text[] NOT NULL,
	"delivery_method" text NOT NULL,
	"endpoint_url" text,
	"authorization_header" text,
	"description" text,
	"status" "ssf_stream_status" DEFAULT 'enabled' NOT NULL,
	"status_reason" text,
	"position" bigint NOT NULL,
	"lease_owner" text,
	"lease_until" timestamp with time zone,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"failures" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"last_verification_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "revocation_events" ALTER COLUMN "jti" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "revocation_events" ALTER COLUMN "token_kind" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "revocation_events" ALTER COLUMN "session_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "revocation_events" ADD COLUMN "event" text;--> statement-breakpoint
ALTER TABLE "revocation_events" ADD COLUMN "subject" text;--> statement-breakpoint
ALTER TABLE "revocation_events" ADD COLUMN "client_id" text;--> statement-breakpoint
ALTER TABLE "revocation_events" ADD COLUMN "family_id" uuid;--> statement-breakpoint
ALTER TABLE "revocation_events" ADD COLUMN "stream_id" uuid;--> statement-breakpoint
ALTER TABLE "revocation_events" ADD COLUMN "detail" jsonb;--> statement-breakpoint
ALTER TABLE "revocation_events" ADD COLUMN "txn" text;--> statement-breakpoint
ALTER TABLE "revocation_events" ALTER COLUMN "txn" SET DEFAULT pg_current_xact_id()::text;--> statement-breakpoint
ALTER TABLE "ssf_acks" ADD CONSTRAINT "ssf_acks_stream_id_ssf_streams_id_fk" FOREIGN KEY ("stream_id") REFERENCES "public"."ssf_streams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ssf_excluded_subjects" ADD CONSTRAINT "ssf_excluded_subjects_stream_id_ssf_streams_id_fk" FOREIGN KEY ("stream_id") REFERENCES "public"."ssf_streams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ssf_streams" ADD CONSTRAINT "ssf_streams_client_id_clients_client_id_fk" FOREIGN KEY ("client_id") REFERENCES "public"."clients"("client_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "ssf_streams_client_id_idx" ON "ssf_streams" USING btree ("client_id");
--> statement-breakpoint
-- Functions generated from db/functions/ by scripts/function-migration.ts.
CREATE OR REPLACE FUNCTION public.ta_revoke_sessions(p_session_ids uuid[], p_reason text)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
  v_grants uuid[];
  v_count integer;
BEGIN
  SELECT array_agg(DISTINCT s.grant_id) INTO v_grants
    FROM sessions s WHERE s.id = ANY (p_session_ids) AND s.grant_id IS NOT NULL;
  IF v_grants IS NOT NULL THEN
    PERFORM 1 FROM authorization_grants g WHERE g.id = ANY (v_grants) ORDER BY g.id FOR UPDATE;
  END IF;
  WITH revoked AS (
    UPDATE sessions s
       SET status = 'revoked', revoked_at = now(), updated_at = now(), revocation_reason = p_reason
     WHERE s.status = 'created'
       AND (s.id = ANY (p_session_ids) OR (v_grants IS NOT NULL AND s.grant_id = ANY (v_grants)))
    RETURNING s.id, s.access_token_jti, s.refresh_token_jti, s.access_expires_at, s.refresh_expires_at, s.revocation_reason,
              s.subject, s.client_id, coalesce(s.grant_id, s.id) AS family_id
  ), events AS (
    INSERT INTO revocation_events (jti, token_kind, session_id, expires_at, reason, subject, client_id, family_id)
    SELECT r.access_token_jti, 'access_token', r.id, r.access_expires_at, r.revocation_reason, r.subject, r.client_id, r.family_id
      FROM revoked r
     WHERE r.access_expires_at > now()
    UNION ALL
    SELECT r.refresh_token_jti, 'refresh_token', r.id, r.refresh_expires_at, r.revocation_reason, r.subject, r.client_id, r.family_id
      FROM revoked r
     WHERE r.refresh_token_jti IS NOT NULL AND r.refresh_expires_at > now()
  )
  SELECT count(*) INTO v_count FROM revoked;
  RETURN v_count;
END
$function$;
