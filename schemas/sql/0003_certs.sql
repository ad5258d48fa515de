-- 0003: the fleet CA and the agent certificates it issued (issue #4).
-- As before, every value comes from the applied command: times and serials
-- are chosen by the leader, never by SQL. No private key is ever stored.

-- Fleet CA certificates. state: 'active' (new certificates are signed with
-- it; at most one), 'trusted' (still in the trust bundle: the overlap of a CA
-- rotation) or 'retired' (out of the bundle; kept for the record).
CREATE TABLE cas (
	fingerprint  TEXT    NOT NULL PRIMARY KEY CHECK (length(fingerprint) = 64),
	subject      TEXT    NOT NULL,
	cert_pem     TEXT    NOT NULL,
	not_before   INTEGER NOT NULL,
	not_after    INTEGER NOT NULL,
	state        TEXT    NOT NULL CHECK (state IN ('active', 'trusted', 'retired')),
	added_ms     INTEGER NOT NULL,
	activated_ms INTEGER,
	retired_ms   INTEGER
) WITHOUT ROWID;

-- Every certificate issued to an agent. serial is unique across CAs;
-- not_before and not_after are seconds since the epoch, as in the certificate.
CREATE TABLE certificates (
	serial         INTEGER NOT NULL PRIMARY KEY CHECK (serial >= 1),
	instance_uid   TEXT    NOT NULL CHECK (length(instance_uid) = 32),
	subject        TEXT    NOT NULL,
	not_before     INTEGER NOT NULL,
	not_after      INTEGER NOT NULL,
	fingerprint    TEXT    NOT NULL UNIQUE CHECK (length(fingerprint) = 64),
	ca_fingerprint TEXT    NOT NULL REFERENCES cas (fingerprint),
	cert_pem       TEXT    NOT NULL,
	reason         TEXT    NOT NULL CHECK (reason IN ('csr', 'server', 'renewal', 'rotation')),
	rotation_id    TEXT    NOT NULL,
	issued_ms      INTEGER NOT NULL,
	actor          TEXT    NOT NULL
);
CREATE INDEX certificates_by_agent ON certificates (instance_uid, not_after);
CREATE INDEX certificates_by_expiry ON certificates (not_after);

-- Revoked certificates (the CRL). reason is an RFC 5280 reason name.
CREATE TABLE revocations (
	serial     INTEGER NOT NULL PRIMARY KEY REFERENCES certificates (serial),
	reason     TEXT    NOT NULL,
	revoked_ms INTEGER NOT NULL,
	actor      TEXT    NOT NULL
);

-- Certificate rotations asked for by an operator, with the selector of the
-- agents concerned (no pairs: every agent).
CREATE TABLE rotations (
	id         TEXT    NOT NULL PRIMARY KEY,
	started_ms INTEGER NOT NULL,
	actor      TEXT    NOT NULL
) WITHOUT ROWID;

CREATE TABLE rotation_selectors (
	id    TEXT NOT NULL REFERENCES rotations (id),
	key   TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (id, key, value)
) WITHOUT ROWID;
