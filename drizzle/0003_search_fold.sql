-- Search becomes accent-insensitive: search texts written before this lose their Latin diacritics
-- (U+0300–U+036F) and barred letters, exactly as searchFold() in src/services/names.ts does for new
-- rows. The texts were already NFC and lower-case; only rows that change are written.
UPDATE "users" SET "search_text" = translate(normalize(regexp_replace(normalize("search_text", NFD), '[\u0300-\u036f]', '', 'g'), NFC), 'đøłħŧı', 'dolhti')
WHERE "search_text" <> translate(normalize(regexp_replace(normalize("search_text", NFD), '[\u0300-\u036f]', '', 'g'), NFC), 'đøłħŧı', 'dolhti');--> statement-breakpoint
UPDATE "groups" SET "search_text" = translate(normalize(regexp_replace(normalize("search_text", NFD), '[\u0300-\u036f]', '', 'g'), NFC), 'đøłħŧı', 'dolhti')
WHERE "search_text" <> translate(normalize(regexp_replace(normalize("search_text", NFD), '[\u0300-\u036f]', '', 'g'), NFC), 'đøłħŧı', 'dolhti');
