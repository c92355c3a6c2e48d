CREATE TABLE `change_log` (
	`server_version` integer PRIMARY KEY NOT NULL,
	`op_id` text NOT NULL,
	`table_name` text NOT NULL,
	`pk` text NOT NULL,
	`op` text NOT NULL,
	`payload` text,
	`clock` integer NOT NULL,
	`hlc` text NOT NULL,
	`device_id` text NOT NULL,
	`user_id` text NOT NULL,
	`fingerprint` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `change_log_op_id_unique` ON `change_log` (`op_id`);--> statement-breakpoint
CREATE TABLE `device_cursors` (
	`device_id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`version` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `file_refs` (
	`hash` text NOT NULL,
	`table_name` text NOT NULL,
	`pk` text NOT NULL,
	PRIMARY KEY(`hash`, `table_name`, `pk`)
);
--> statement-breakpoint
CREATE INDEX `file_refs_entity_idx` ON `file_refs` (`table_name`,`pk`);--> statement-breakpoint
CREATE TABLE `rows` (
	`table_name` text NOT NULL,
	`pk` text NOT NULL,
	`payload` text,
	`clock` integer NOT NULL,
	`hlc` text NOT NULL,
	`op_id` text NOT NULL,
	`server_version` integer NOT NULL,
	`deleted` integer NOT NULL,
	`deleted_at` integer,
	`owner_id` text,
	PRIMARY KEY(`table_name`, `pk`)
);
--> statement-breakpoint
CREATE INDEX `rows_tombstones_idx` ON `rows` (`deleted_at`) WHERE deleted = 1;--> statement-breakpoint
CREATE TABLE `ws_tickets` (
	`nonce` text PRIMARY KEY NOT NULL,
	`expires_at` integer NOT NULL
);
