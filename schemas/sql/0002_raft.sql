-- 0002: what the Raft state machine stores beside the configurations.
-- As in 0001, every value comes from the applied command (no clock, no random()).

-- The signed version record (raft_fsm/sign.h) needs everything it covers:
-- created_ms is the HLC wall time of the command, plus these columns and the
-- selector as published (config_version_selectors). Rows written before 0002
-- have no signature (x'', key_id '') and priority NULL: unknown.
ALTER TABLE config_versions ADD COLUMN signature BLOB NOT NULL DEFAULT x'';
ALTER TABLE config_versions ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE config_versions ADD COLUMN term INTEGER NOT NULL DEFAULT 0;
ALTER TABLE config_versions ADD COLUMN hlc_logical INTEGER NOT NULL DEFAULT 0;
ALTER TABLE config_versions ADD COLUMN priority INTEGER;

-- The selector a version was published with (configs.priority and
-- config_selectors hold the current one, which SetSelector may change later).
CREATE TABLE config_version_selectors (
	name    TEXT    NOT NULL,
	version INTEGER NOT NULL,
	key     TEXT    NOT NULL,
	value   TEXT    NOT NULL,
	PRIMARY KEY (name, version, key, value),
	FOREIGN KEY (name, version) REFERENCES config_versions (name, version)
) WITHOUT ROWID;

-- Before 0002 the current selector and priority were those of the latest
-- version (only a publish changed them), so that one row can be completed.
UPDATE config_versions SET priority =
	(SELECT c.priority FROM configs c WHERE c.name = config_versions.name)
	WHERE version = (SELECT c.latest_version FROM configs c WHERE c.name = config_versions.name);
INSERT INTO config_version_selectors (name, version, key, value)
	SELECT s.name, c.latest_version, s.key, s.value
	FROM config_selectors s JOIN configs c ON c.name = s.name;

-- Public keys that sign versions. At most one is active (new versions are
-- signed with it); retired keys stay so that old signatures still verify.
CREATE TABLE signing_keys (
	key_id     TEXT    NOT NULL PRIMARY KEY,
	public_key BLOB    NOT NULL CHECK (length(public_key) = 32),
	active     INTEGER NOT NULL CHECK (active IN (0, 1)),
	added_ms   INTEGER NOT NULL,
	retired_ms INTEGER
) WITHOUT ROWID;

-- Idempotency: the outcome of every command that carried a request_id, so a
-- client retrying after "outcome unknown" gets the first result back.
CREATE TABLE requests (
	request_id BLOB    NOT NULL PRIMARY KEY,
	op         INTEGER NOT NULL,
	name       TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	status     INTEGER NOT NULL
) WITHOUT ROWID;

-- Where to reach each cluster member (raft itself knows only raft addresses).
CREATE TABLE members (
	id           INTEGER NOT NULL PRIMARY KEY,
	raft_address TEXT    NOT NULL,
	admin_url    TEXT    NOT NULL
);
