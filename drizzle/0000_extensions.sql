-- Trigram indexes make case-insensitive substring search on users and groups fast at 100k rows.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
