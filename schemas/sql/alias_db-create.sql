-- sipledger: the `dbaliases` table, column for column Kamailio's alias_db-create.sql (version 1).
-- `alias_username`@`alias_domain` is another name for the subscriber `username`@`domain`.
-- Run standard-create.sql first.
CREATE TABLE IF NOT EXISTS `dbaliases` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `alias_username` VARCHAR(64) DEFAULT '' NOT NULL,
    `alias_domain` VARCHAR(64) DEFAULT '' NOT NULL,
    `username` VARCHAR(64) DEFAULT '' NOT NULL,
    `domain` VARCHAR(64) DEFAULT '' NOT NULL,
    KEY alias_user_idx (`alias_username`),
    KEY alias_idx (`alias_username`, `alias_domain`),
    KEY target_idx (`username`, `domain`)
);

INSERT IGNORE INTO version (table_name, table_version) values ('dbaliases','1');
