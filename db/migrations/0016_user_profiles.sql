-- Issue 19 (OpenID Connect), first step: users carry the OIDC Core §5.1 standard claims an
-- operator sets (name, email, …), for the profile and email scopes to come.
ALTER TABLE "users" ADD COLUMN "profile" jsonb DEFAULT '{}'::jsonb NOT NULL;