-- Sync storage quota (API.md "Sync storage quota"): every change-log entry and materialized
-- row records what it counts towards the quota, and meta.sync_bytes holds the running total.
-- The backfill uses the same formula as protocol.ts `entryBytes`: the UTF-8 size of the
-- payload and keys, plus 160 bytes for the ids, fingerprint, integers and index entries.
ALTER TABLE `change_log` ADD `size` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `rows` ADD `size` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
UPDATE `change_log` SET `size` = coalesce(length(CAST(`payload` AS BLOB)), 0) + length(CAST(`pk` AS BLOB))
  + length(CAST(`hlc` AS BLOB)) + length(CAST(`device_id` AS BLOB)) + 160;--> statement-breakpoint
UPDATE `rows` SET `size` = coalesce(length(CAST(`payload` AS BLOB)), 0) + length(CAST(`pk` AS BLOB))
  + length(CAST(`hlc` AS BLOB)) + length(CAST(`device_id` AS BLOB)) + 160;--> statement-breakpoint
INSERT INTO `meta` (`key`, `value`)
  SELECT 'sync_bytes', CAST((SELECT coalesce(sum(`size`), 0) FROM `change_log`) + (SELECT coalesce(sum(`size`), 0) FROM `rows`) AS TEXT)
  WHERE true
  ON CONFLICT(`key`) DO UPDATE SET `value` = excluded.`value`;
