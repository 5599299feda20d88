-- Integrity of jobs, projects, sessions and API tokens (issue 16): what runs
-- and who sees it, project membership, and the credentials themselves carry
-- a MAC like the rows of 0012 (store/seal.rs). Rows that exist at this
-- upgrade are sealed once at the next open; the `meta_seal` marker moves to
-- its second version then, so the tables of 0012 are not sealed again.
ALTER TABLE jobs ADD COLUMN mac TEXT;
ALTER TABLE projects ADD COLUMN mac TEXT;
ALTER TABLE sessions ADD COLUMN mac TEXT;
ALTER TABLE api_tokens ADD COLUMN mac TEXT;
