ALTER TABLE "directories" ADD COLUMN "sync_state" jsonb;--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "sync_method" text;--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "sync_note" text;