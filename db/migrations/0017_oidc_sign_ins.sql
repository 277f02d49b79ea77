-- OpenID Connect: each authorization grant remembers the browser sign-in it was given in (the ID
-- token's sid), so that the end of that sign-in reaches the grant's client (Back-Channel Logout 1.0);
-- each sign-in remembers when the user last proved who they are in it (auth_time; the sign-ins
-- before this migration, when they began).
ALTER TABLE "authorization_grants" ADD COLUMN "browser_session_id" uuid;--> statement-breakpoint
ALTER TABLE "browser_sessions" ADD COLUMN "authenticated_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
UPDATE "browser_sessions" SET "authenticated_at" = "created_at";--> statement-breakpoint
CREATE INDEX "authorization_grants_browser_session_idx" ON "authorization_grants" USING btree ("browser_session_id") WHERE browser_session_id is not null;