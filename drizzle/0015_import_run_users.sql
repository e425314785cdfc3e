-- The users a running import has handled, a row each, keyed: batches ask it what they met before,
-- instead of the importer keeping every stable id of the run in its heap. Unlogged like the rest
-- of the checkpoint: a database crash empties it, and the run then starts again from zero.
CREATE UNLOGGED TABLE "import_run_users" (
	"run_id" integer NOT NULL,
	"external_id" text NOT NULL,
	"object_id" integer,
	CONSTRAINT "import_run_users_run_id_external_id_pk" PRIMARY KEY("run_id","external_id")
);
--> statement-breakpoint
-- A run under way at the upgrade keeps what it has handled (object ids 0 meant skipped); rows
-- without object ids were met by a presence pass.
INSERT INTO "import_run_users" ("run_id", "external_id", "object_id")
SELECT h."run_id", t.key, nullif(t.object_id, 0)
FROM "import_run_handled" h, unnest(h."keys", h."object_ids") AS t(key, object_id)
WHERE h."kind" = 'user' AND h."object_ids" IS NOT NULL
ON CONFLICT DO NOTHING;
--> statement-breakpoint
DELETE FROM "import_run_handled" WHERE "kind" = 'user' AND "object_ids" IS NOT NULL;
--> statement-breakpoint
UPDATE "import_run_handled" SET "kind" = 'present' WHERE "kind" = 'user';
--> statement-breakpoint
ALTER TABLE "import_run_handled" DROP COLUMN "object_ids";
