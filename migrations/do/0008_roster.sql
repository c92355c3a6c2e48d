-- The roster (members.ts) made these tables itself before this migration existed: objects that
-- already have them keep them (IF NOT EXISTS), new objects get them here like every other table.
CREATE TABLE IF NOT EXISTS `roster_members` (
	`user_id` text PRIMARY KEY NOT NULL,
	`role` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS `roster_outbox` (
	`user_id` text PRIMARY KEY NOT NULL,
	`copy` integer NOT NULL,
	`queued_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS `roster_removed` (
	`user_id` text PRIMARY KEY NOT NULL,
	`removed_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS `roster_state` (
	`id` integer PRIMARY KEY NOT NULL,
	`seeded_at` integer NOT NULL,
	`present` integer NOT NULL,
	`deleted` integer NOT NULL,
	`name` text NOT NULL,
	`description` text,
	`created_at` integer NOT NULL,
	CONSTRAINT "roster_state_single_row" CHECK("roster_state"."id" = 1)
);
