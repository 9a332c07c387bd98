-- sipledger: the `subscriber` table, column for column Kamailio's auth_db-create.sql (version 7).
-- Run standard-create.sql first. Safe to run on a database that already has the Kamailio schema.
--   password  clear text, used when calculateHa1 is true; '' when not stored
--   ha1       MD5(username:domain:password)
--   ha1b      MD5(username@domain:domain:password), for phones that send user@domain as username
-- Create the database with CHARACTER SET utf8mb4 for usernames outside Latin-1.
CREATE TABLE IF NOT EXISTS `subscriber` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `username` VARCHAR(64) DEFAULT '' NOT NULL,
    `domain` VARCHAR(64) DEFAULT '' NOT NULL,
    `password` VARCHAR(64) DEFAULT '' NOT NULL,
    `ha1` VARCHAR(128) DEFAULT '' NOT NULL,
    `ha1b` VARCHAR(128) DEFAULT '' NOT NULL,
    CONSTRAINT account_idx UNIQUE (`username`, `domain`),
    KEY username_idx (`username`)
);

INSERT IGNORE INTO version (table_name, table_version) values ('subscriber','7');
