-- sipledger: the `version` table of the Kamailio schema (same as Kamailio's standard-create.sql).
-- Kamailio modules refuse to start when a table's row here does not carry the version they expect,
-- so sipledger keeps these rows identical: the same database can serve both during a migration.
-- Safe to run on a database that already has the Kamailio schema (nothing is changed there).
CREATE TABLE IF NOT EXISTS `version` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `table_name` VARCHAR(32) NOT NULL,
    `table_version` INT UNSIGNED DEFAULT 0 NOT NULL,
    CONSTRAINT table_name_idx UNIQUE (`table_name`)
);

INSERT IGNORE INTO version (table_name, table_version) values ('version','1');
