-- Users' email domains leave the trigram index. search_text becomes the username, full name and the
-- email's local part, a tab, then the whole email; the index covers what precedes the tab. Thousands
-- of users share a domain, and its trigrams were half of the keys an import wrote to the index.
-- email_domains lists the domains users have: a search reads whole search texts only when its text
-- has an "@" or lies inside one of them. Rows written before this have no tab: the index covers
-- their whole text, domain included, and they are found either way.
CREATE TABLE "email_domains" (
	"domain" text PRIMARY KEY NOT NULL
);
--> statement-breakpoint
DROP INDEX "users_search_text_trgm_idx";--> statement-breakpoint
CREATE INDEX "users_search_text_trgm_idx" ON "users" USING gin (split_part("search_text", E'\t', 1) gin_trgm_ops);
--> statement-breakpoint
-- The domains of the users there are, their emails folded as searchFold() does (see 0003). What
-- follows the first "@" is the domain, or more than it when a quoted local part holds an "@": a
-- search inside the domain still finds it there.
INSERT INTO "email_domains" ("domain")
SELECT DISTINCT substr(e, strpos(e, '@') + 1)
FROM (SELECT translate(normalize(regexp_replace(normalize(lower("email"), NFD), '[\u0300-\u036f]', '', 'g'), NFC), 'đøłħŧı', 'dolhti') AS e FROM "users") AS folded
WHERE strpos(e, '@') BETWEEN 1 AND length(e) - 1
ON CONFLICT DO NOTHING;
--> statement-breakpoint
-- Then every domain a statement writes. In order, so that two writers adding the same new domains
-- can't wait on each other in a cycle.
CREATE FUNCTION "users_email_domains"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "email_domains" ("domain")
  SELECT DISTINCT substr(e, strpos(e, '@') + 1)
  FROM (SELECT split_part(search_text, E'\t', 2) AS e FROM new_rows) AS emails
  WHERE strpos(e, '@') BETWEEN 1 AND length(e) - 1
  ORDER BY 1
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "users_email_domains_on_insert" AFTER INSERT ON "users"
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "users_email_domains"();
--> statement-breakpoint
CREATE TRIGGER "users_email_domains_on_update" AFTER UPDATE ON "users"
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "users_email_domains"();
