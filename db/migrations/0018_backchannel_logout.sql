-- OpenID Connect Back-Channel Logout 1.0: the end of a browser sign-in is logged by a trigger (in
-- the ending transaction) for the clients to tell, and each delivery to a client is tracked.
CREATE TABLE "logout_deliveries" (
	"cursor" bigint NOT NULL,
	"client_id" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_status" integer,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "logout_deliveries_cursor_client_id_pk" PRIMARY KEY("cursor","client_id")
);
--> statement-breakpoint
ALTER TABLE "logout_deliveries" ADD CONSTRAINT "logout_deliveries_cursor_revocation_events_cursor_fk" FOREIGN KEY ("cursor") REFERENCES "public"."revocation_events"("cursor") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "logout_deliveries" ADD CONSTRAINT "logout_deliveries_client_id_clients_client_id_fk" FOREIGN KEY ("client_id") REFERENCES "public"."clients"("client_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "logout_deliveries_due_idx" ON "logout_deliveries" USING btree ("next_attempt_at") WHERE status = 'pending';--> statement-breakpoint
CREATE INDEX "revocation_events_browser_session_ended_idx" ON "revocation_events" USING btree ("cursor") WHERE event = 'browser-session-ended';
--> statement-breakpoint
-- Functions generated from db/functions/ by scripts/function-migration.ts.
CREATE OR REPLACE FUNCTION public.ta_browser_session_ended()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
  INSERT INTO revocation_events (event, subject, reason, detail, expires_at)
  SELECT 'browser-session-ended', NEW.user_id::text, NEW.end_reason,
         jsonb_build_object('sid', NEW.id::text, 'clients', jsonb_agg(DISTINCT g.client_id)),
         now() + interval '1 hour'
    FROM authorization_grants g
    JOIN clients c ON c.client_id = g.client_id
   WHERE g.browser_session_id = NEW.id
     AND c.metadata ? 'backchannel_logout_uri'
     AND 'openid' = ANY (string_to_array(g.scope, ' '))
  HAVING count(*) > 0;
  RETURN NULL;
END
$function$;
--> statement-breakpoint
CREATE TRIGGER ta_browser_session_ended AFTER UPDATE OF ended_at ON browser_sessions
  FOR EACH ROW WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)
  EXECUTE FUNCTION ta_browser_session_ended();
