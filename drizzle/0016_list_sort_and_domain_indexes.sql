CREATE INDEX "users_email_domain_idx" ON "users" USING btree (substr(split_part("search_text", E'\t', 2), strpos(split_part("search_text", E'\t', 2), '@') + 1));--> statement-breakpoint
CREATE INDEX "users_activity_idx" ON "users" USING btree ("last_activity_at","username_key") WHERE "users"."last_activity_at" is not null;--> statement-breakpoint
CREATE INDEX "users_disabled_username_key_idx" ON "users" USING btree ("username_key") WHERE not "users"."enabled";--> statement-breakpoint
CREATE INDEX "users_orphaned_username_key_idx" ON "users" USING btree ("username_key") WHERE "users"."directory_id" is null and "users"."kind" = 'external';--> statement-breakpoint
CREATE INDEX "users_disabled_by_directory_idx" ON "users" USING btree ("id") WHERE "users"."disabled_by_directory";