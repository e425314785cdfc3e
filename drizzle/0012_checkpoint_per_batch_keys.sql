ALTER TABLE "import_run_handled" ADD COLUMN "keys" text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "import_run_handled" ADD COLUMN "object_ids" integer[];--> statement-breakpoint
-- Out of line but not compressed: a batch's keys are written once and read at most once.
ALTER TABLE "import_run_handled" ALTER COLUMN "keys" SET STORAGE EXTERNAL;--> statement-breakpoint
ALTER TABLE "import_run_handled" ALTER COLUMN "object_ids" SET STORAGE EXTERNAL;
