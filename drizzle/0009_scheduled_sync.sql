CREATE TABLE "sync_removals" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "sync_removals_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"run_id" integer NOT NULL,
	"change" text NOT NULL,
	"user_id" integer,
	"group_id" integer,
	"child_id" integer
);
--> statement-breakpoint
ALTER TABLE "directories" ADD COLUMN "sync_interval_minutes" integer DEFAULT 60;--> statement-breakpoint
ALTER TABLE "directories" ADD COLUMN "next_sync_at" timestamp with time zone DEFAULT now() + interval '1 hour';--> statement-breakpoint
ALTER TABLE "directories" ADD COLUMN "hold_removals_percent" integer DEFAULT 5 NOT NULL;--> statement-breakpoint
ALTER TABLE "directories" ADD COLUMN "hold_removals_minimum" integer DEFAULT 50 NOT NULL;--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "kind" text DEFAULT 'import' NOT NULL;--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "held_reason" text;--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "held_count" integer;--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "review" text;--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "reviewed_by" text;--> statement-breakpoint
ALTER TABLE "import_runs" ADD COLUMN "reviewed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "sync_removals" ADD CONSTRAINT "sync_removals_run_id_import_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."import_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sync_removals" ADD CONSTRAINT "sync_removals_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sync_removals" ADD CONSTRAINT "sync_removals_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sync_removals" ADD CONSTRAINT "sync_removals_child_id_groups_id_fk" FOREIGN KEY ("child_id") REFERENCES "public"."groups"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "sync_removals_run_idx" ON "sync_removals" USING btree ("run_id","change");