-- API tokens carry scopes and expire by default (issue 16).
-- Tokens made before this had every power of their account and no expiry:
-- they keep their scopes (the role still limits them) and expire 90 days
-- from now, the new default lifetime.

ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,jobs,review,admin';

UPDATE api_tokens
   SET expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+90 days')
 WHERE expires_at IS NULL AND revoked_at IS NULL;
