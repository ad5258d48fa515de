-- 0001: the configuration store.
-- Every value is written by the caller (timestamps included): no DEFAULT
-- CURRENT_TIMESTAMP or random(), so that every replica stores the same rows.

-- One row per configuration name ever created. A deleted configuration keeps
-- its row (deleted = 1) so that latest_version survives and numbers are never
-- reused when the name is published again.
CREATE TABLE configs (
	name           TEXT    NOT NULL PRIMARY KEY,
	priority       INTEGER NOT NULL,
	active_version INTEGER NOT NULL,
	latest_version INTEGER NOT NULL,
	deleted        INTEGER NOT NULL CHECK (deleted IN (0, 1)),
	created_ms     INTEGER NOT NULL,
	updated_ms     INTEGER NOT NULL
) WITHOUT ROWID;

-- The selector of a configuration: every pair must match an agent attribute.
CREATE TABLE config_selectors (
	name  TEXT NOT NULL REFERENCES configs (name),
	key   TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (name, key, value)
) WITHOUT ROWID;

CREATE TABLE config_versions (
	name       TEXT    NOT NULL REFERENCES configs (name),
	version    INTEGER NOT NULL CHECK (version >= 1),
	hash       BLOB    NOT NULL CHECK (length(hash) = 32),
	message    TEXT    NOT NULL,
	actor      TEXT    NOT NULL,
	created_ms INTEGER NOT NULL,
	PRIMARY KEY (name, version)
) WITHOUT ROWID;

-- The files (AgentConfigMap entries) of one version; file_name may be ''.
CREATE TABLE config_files (
	name         TEXT    NOT NULL,
	version      INTEGER NOT NULL,
	file_name    TEXT    NOT NULL,
	content_type TEXT    NOT NULL,
	body         BLOB    NOT NULL,
	PRIMARY KEY (name, version, file_name),
	FOREIGN KEY (name, version) REFERENCES config_versions (name, version)
) WITHOUT ROWID;

-- Who changed what. seq is assigned as max + 1, the same on every replica.
CREATE TABLE audit (
	seq     INTEGER PRIMARY KEY,
	ts_ms   INTEGER NOT NULL,
	actor   TEXT    NOT NULL,
	action  TEXT    NOT NULL,
	name    TEXT    NOT NULL,
	version INTEGER,
	detail  TEXT    NOT NULL
);

-- Small state of the state machine itself (for example the applied index).
CREATE TABLE meta (
	key   TEXT NOT NULL PRIMARY KEY,
	value
) WITHOUT ROWID;
