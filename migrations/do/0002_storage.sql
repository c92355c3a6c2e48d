CREATE TABLE `blobs` (
	`hash` text PRIMARY KEY NOT NULL,
	`size_bytes` integer NOT NULL,
	`mime_type` text NOT NULL,
	`storage_key` text NOT NULL,
	`provider_id` text NOT NULL,
	`name` text,
	`kind` text,
	`committed_at` integer NOT NULL,
	`gc_started_at` integer
);
--> statement-breakpoint
CREATE INDEX `blobs_committed_idx` ON `blobs` (`committed_at`);