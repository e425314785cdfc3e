-- The checkpoint becomes a row per batch (0012): rows of the old shape are dropped, and a run
-- taken over meanwhile starts again from zero.
DELETE FROM "import_run_handled";--> statement-breakpoint
ALTER TABLE "import_run_handled" DROP COLUMN "key";--> statement-breakpoint
ALTER TABLE "import_run_handled" DROP COLUMN "object_id";