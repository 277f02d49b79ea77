-- Issue 18 (DPoP, RFC 9449): the proofs seen, by key thumbprint and jti, until a replay could no
-- longer pass the freshness check (§11.1).
CREATE TABLE "dpop_proofs" (
	"id" text PRIMARY KEY NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "dpop_proofs_expires_at_idx" ON "dpop_proofs" USING btree ("expires_at");