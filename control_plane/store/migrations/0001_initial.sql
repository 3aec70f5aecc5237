-- Resources: tenants, datasets, keys, users; the body is the serialized protobuf resource.
CREATE TABLE resources (
    name TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL,
    revision INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    last_used_time INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX resources_by_collection ON resources (collection, parent, name);

-- argon2 hashes of key secrets and user passwords, one per resource.
CREATE TABLE credentials (
    name TEXT PRIMARY KEY REFERENCES resources (name) ON DELETE CASCADE,
    hash TEXT NOT NULL
);

-- Refresh-token sessions; token_hash is the SHA-256 of a 256-bit random token.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    expire_time INTEGER NOT NULL,
    revoke_time INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_user ON sessions (user_name);
