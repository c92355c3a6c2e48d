-- Capabilities and upload intents (docs/api.md "Capabilities", "Upload intents"). rows.flags
-- records what a winning payload needs of its readers and writers (1 a generic file, 2 a
-- workspace item; src/sync/capabilities.ts); rows stored before are classified here by the same
-- rules, in SQL: file_meta of kind 'file'; posts of post_type 'or3:file' or whose meta names
-- 'or3.workspace-item'; projects whose data lists an entry of kind 'file'.
CREATE TABLE `upload_intents` (
	`id` text PRIMARY KEY NOT NULL,
	`hash` text NOT NULL,
	`mime_type` text NOT NULL,
	`size_bytes` integer NOT NULL,
	`reserved_bytes` integer NOT NULL,
	`status` text NOT NULL,
	`user_id` text NOT NULL,
	`strict` integer DEFAULT 0 NOT NULL,
	`expires_at` integer NOT NULL,
	`created_at` integer NOT NULL,
	`consumed_at` integer
);
--> statement-breakpoint
CREATE INDEX `upload_intents_active_idx` ON `upload_intents` (`status`,`expires_at`);--> statement-breakpoint
CREATE INDEX `upload_intents_hash_idx` ON `upload_intents` (`hash`,`status`);--> statement-breakpoint
ALTER TABLE `rows` ADD `flags` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX `rows_flags_idx` ON `rows` (`flags`) WHERE flags != 0 AND deleted = 0;--> statement-breakpoint
UPDATE `rows` SET `flags` = 1 WHERE `table_name` = 'file_meta' AND `payload` IS NOT NULL AND json_valid(`payload`)
  AND json_extract(`payload`, '$.kind') = 'file';--> statement-breakpoint
UPDATE `rows` SET `flags` = 2 WHERE `table_name` = 'posts' AND `payload` IS NOT NULL AND json_valid(`payload`)
  AND (coalesce(json_extract(`payload`, '$.post_type'), json_extract(`payload`, '$.postType')) = 'or3:file'
    OR instr(coalesce(json_extract(`payload`, '$.meta'), ''), 'or3.workspace-item') > 0);--> statement-breakpoint
UPDATE `rows` SET `flags` = 2 WHERE `table_name` = 'projects' AND `payload` IS NOT NULL AND json_valid(`payload`)
  AND EXISTS (SELECT 1 FROM json_each(CASE WHEN json_type(`payload`, '$.data') = 'array' THEN json_extract(`payload`, '$.data')
      WHEN json_type(`payload`, '$.data') = 'text' AND json_valid(json_extract(`payload`, '$.data')) THEN json_extract(`payload`, '$.data') ELSE '[]' END) AS e
    WHERE e.type = 'object' AND json_extract(e.value, '$.kind') = 'file');
