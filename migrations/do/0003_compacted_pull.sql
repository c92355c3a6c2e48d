-- Compacted pull (docs/sync.md "Pull is a state diff"): each materialized row records the
-- version of its key's most recent logged op (changed_version, indexed) and the device of its
-- winning op, so a pull reads changed rows in version order instead of replaying the log.
ALTER TABLE `rows` ADD `changed_version` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `rows` ADD `device_id` text DEFAULT '' NOT NULL;--> statement-breakpoint
-- Backfill, in three passes that each stay on an index or one scan of the log: the winner's
-- own version and device (by the log's unique op_id; 'unknown' where GC already removed it),
-- then the highest logged version of each key (one grouped scan of the log).
UPDATE `rows` SET `changed_version` = `server_version`,
  `device_id` = coalesce((SELECT `device_id` FROM `change_log` WHERE `change_log`.`op_id` = `rows`.`op_id`), 'unknown');--> statement-breakpoint
UPDATE `rows` SET `changed_version` = `logged`.`v`
  FROM (SELECT `table_name`, `pk`, max(`server_version`) AS `v` FROM `change_log` GROUP BY `table_name`, `pk`) AS `logged`
  WHERE `logged`.`table_name` = `rows`.`table_name` AND `logged`.`pk` = `rows`.`pk` AND `logged`.`v` > `rows`.`changed_version`;--> statement-breakpoint
-- The pull floor: a cursor below it may have missed a collected tombstone. Before this
-- migration that was the change-log floor (pruned_through), plus any key the log still
-- mentions whose tombstone was already collected.
INSERT INTO `meta` (`key`, `value`)
  SELECT 'collected_through', CAST(max(
    coalesce((SELECT CAST(`value` AS INTEGER) FROM `meta` WHERE `key` = 'pruned_through'), 0),
    coalesce((SELECT max(`c`.`server_version`) FROM `change_log` AS `c`
               WHERE NOT EXISTS (SELECT 1 FROM `rows` AS `r` WHERE `r`.`table_name` = `c`.`table_name` AND `r`.`pk` = `c`.`pk`)), 0)
  ) AS TEXT)
  WHERE true
  ON CONFLICT(`key`) DO UPDATE SET `value` = excluded.`value`;--> statement-breakpoint
CREATE INDEX `rows_changed_idx` ON `rows` (`changed_version`);
