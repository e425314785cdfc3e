-- Users' (kind, username_key) index gives way to one on internal users' names alone: an import
-- writes external users by the hundred thousand, and indexing each one's kind and name again cost
-- it about 12% of PostgreSQL's work. The list walks users_username_key_idx for external users.
DROP INDEX "users_kind_username_key_idx";--> statement-breakpoint
CREATE INDEX "users_internal_username_key_idx" ON "users" USING btree ("username_key") WHERE "users"."kind" = 'internal';