-- A running import's checkpoint. Unlogged: it need not survive a database crash (the run then
-- starts again from zero), and skipping the WAL keeps it cheap to write with every batch.
CREATE UNLOGGED TABLE "import_run_groups" (
	"run_id" integer NOT NULL,
	"external_id" text NOT NULL,
	"object_id" integer,
	"state" jsonb,
	CONSTRAINT "import_run_groups_run_id_external_id_pk" PRIMARY KEY("run_id","external_id")
);
--> statement-breakpoint
CREATE UNLOGGED TABLE "import_run_handled" (
	"run_id" integer NOT NULL,
	"kind" text NOT NULL,
	"key" text NOT NULL,
	"object_id" integer
);
--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "resumed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "resumed_from" integer;--> statement-breakpoint
ALTER TABLE "import_run_groups" ADD CONSTRAINT "import_run_groups_run_id_import_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."import_runs"("id") ON DELETE cascade ON UPDATE no action;