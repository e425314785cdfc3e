ALTER TABLE "users" DROP CONSTRAINT "users_directory_id_directories_id_fk";
--> statement-breakpoint
-- users.directory_id keeps the rule of the foreign key it replaces, checked once per statement
-- instead of once per row: every directory a statement's rows name must exist, and it is locked
-- FOR KEY SHARE (as the foreign key's check locked it) so it can't be deleted until the writer
-- commits. An UPDATE checks only rows whose directory_id changed, as a foreign key does: an update
-- of other columns takes no lock on the directory (and can't deadlock with a directory's deletion).
CREATE FUNCTION "users_directory_exists"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  wanted integer[];
  directory integer;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(DISTINCT directory_id) INTO wanted FROM new_rows WHERE directory_id IS NOT NULL;
  ELSE
    SELECT array_agg(DISTINCT n.directory_id) INTO wanted
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.directory_id IS NOT NULL AND n.directory_id IS DISTINCT FROM o.directory_id;
  END IF;
  FOREACH directory IN ARRAY coalesce(wanted, '{}') LOOP
    PERFORM 1 FROM directories WHERE id = directory FOR KEY SHARE;
    IF NOT FOUND THEN
      RAISE foreign_key_violation USING
        MESSAGE = 'insert or update on table "users" violates foreign key constraint "users_directory_id_directories_id_fk"',
        DETAIL = format('Key (directory_id)=(%s) is not present in table "directories".', directory),
        TABLE = 'users', CONSTRAINT = 'users_directory_id_directories_id_fk';
    END IF;
  END LOOP;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "users_directory_exists_on_insert" AFTER INSERT ON "users"
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "users_directory_exists"();
--> statement-breakpoint
CREATE TRIGGER "users_directory_exists_on_update" AFTER UPDATE ON "users"
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "users_directory_exists"();
--> statement-breakpoint
-- ON DELETE SET NULL. AFTER the deletion: it waited for the writers holding the directory's lock, so
-- this statement's snapshot (READ COMMITTED) sees the users they added.
CREATE FUNCTION "directories_release_users"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE users SET directory_id = NULL WHERE directory_id = OLD.id;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "directories_release_users" AFTER DELETE ON "directories"
  FOR EACH ROW EXECUTE FUNCTION "directories_release_users"();
