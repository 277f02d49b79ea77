CREATE TYPE "public"."client_type" AS ENUM('confidential', 'public');--> statement-breakpoint
CREATE TYPE "public"."session_status" AS ENUM('created', 'refreshed', 'revoked', 'expired');--> statement-breakpoint
CREATE TYPE "public"."signing_key_status" AS ENUM('active', 'retired');--> statement-breakpoint
CREATE TABLE "authorization_grants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"code_hash" text,
	"client_id" text NOT NULL,
	"user_id" uuid,
	"code_challenge" text,
	"code_challenge_method" text,
	"redirect_uri" text,
	"scope" text DEFAULT '' NOT NULL,
	"resources" text[] DEFAULT '{}'::text[] NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"redeemed_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "authorization_grants_code_hash_unique" UNIQUE("code_hash")
);
--> statement-breakpoint
CREATE TABLE "clients" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"client_id" text NOT NULL,
	"name" text NOT NULL,
	"type" "client_type" NOT NULL,
	"secret_hash" text,
	"token_endpoint_auth_method" text NOT NULL,
	"redirect_uris" text[] DEFAULT '{}'::text[] NOT NULL,
	"grant_types" text[] NOT NULL,
	"response_types" text[] DEFAULT '{}'::text[] NOT NULL,
	"scope" text DEFAULT '' NOT NULL,
	"access_token_ttl" integer,
	"refresh_token_ttl" integer,
	"resource_server" text,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "clients_client_id_unique" UNIQUE("client_id")
);
--> statement-breakpoint
CREATE TABLE "revocation_events" (
	"cursor" bigserial PRIMARY KEY NOT NULL,
	"jti" text NOT NULL,
	"token_kind" text NOT NULL,
	"session_id" uuid NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sessions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"grant_id" uuid,
	"parent_id" uuid,
	"client_id" text NOT NULL,
	"subject" text NOT NULL,
	"scope" text DEFAULT '' NOT NULL,
	"audience" text[] DEFAULT '{}'::text[] NOT NULL,
	"access_token_jti" text NOT NULL,
	"refresh_token_jti" text,
	"status" "session_status" DEFAULT 'created' NOT NULL,
	"access_expires_at" timestamp with time zone NOT NULL,
	"refresh_expires_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	"revocation_reason" text,
	CONSTRAINT "sessions_access_token_jti_unique" UNIQUE("access_token_jti"),
	CONSTRAINT "sessions_refresh_token_jti_unique" UNIQUE("refresh_token_jti")
);
--> statement-breakpoint
CREATE TABLE "signing_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"alg" text NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"private_jwk" jsonb NOT NULL,
	"status" "signing_key_status" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"retired_at" timestamp with time zone,
	"verify_until" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"username" text NOT NULL,
	"password_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "users_username_unique" UNIQUE("username")
);
--> statement-breakpoint
ALTER TABLE "authorization_grants" ADD CONSTRAINT "authorization_grants_client_id_clients_client_id_fk" FOREIGN KEY ("client_id") REFERENCES "public"."clients"("client_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "authorization_grants" ADD CONSTRAINT "authorization_grants_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_grant_id_authorization_grants_id_fk" FOREIGN KEY ("grant_id") REFERENCES "public"."authorization_grants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_client_id_clients_client_id_fk" FOREIGN KEY ("client_id") REFERENCES "public"."clients"("client_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "authorization_grants_client_id_idx" ON "authorization_grants" USING btree ("client_id");--> statement-breakpoint
CREATE INDEX "authorization_grants_user_id_idx" ON "authorization_grants" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "authorization_grants_expires_at_idx" ON "authorization_grants" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "revocation_events_expires_at_idx" ON "revocation_events" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "sessions_grant_id_idx" ON "sessions" USING btree ("grant_id");--> statement-breakpoint
CREATE INDEX "sessions_client_id_live_idx" ON "sessions" USING btree ("client_id") WHERE status = 'created';--> statement-breakpoint
CREATE INDEX "sessions_subject_live_idx" ON "sessions" USING btree ("subject") WHERE status = 'created';--> statement-breakpoint
CREATE INDEX "sessions_expiry_idx" ON "sessions" USING btree ("refresh_expires_at","access_expires_at");--> statement-breakpoint
CREATE UNIQUE INDEX "signing_keys_one_active_idx" ON "signing_keys" USING btree ("status") WHERE status = 'active';