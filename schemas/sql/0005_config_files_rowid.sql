-- 0005: configuration files move to a rowid table. In the WITHOUT ROWID
-- table each file's body was part of the b-tree key's record: a 4 KiB body
-- overflows the page, and every comparison of a lookup or insert read the
-- whole record, overflow pages and all, from the file. Here the body sits in
-- the table's rows and lookups go through the small (name, version,
-- file_name) index.
CREATE TABLE config_files_by_row (
	id           INTEGER PRIMARY KEY,
	name         TEXT    NOT NULL,
	version      INTEGER NOT NULL,
	file_name    TEXT    NOT NULL,
	content_type TEXT    NOT NULL,
	body         BLOB    NOT NULL,
	UNIQUE (name, version, file_name),
	FOREIGN KEY (name, version) REFERENCES config_versions (name, version)
);
INSERT INTO config_files_by_row (name, version, file_name, content_type, body)
	SELECT name, version, file_name, content_type, body FROM config_files
	ORDER BY name, version, file_name;
DROP TABLE config_files;
ALTER TABLE config_files_by_row RENAME TO config_files;
