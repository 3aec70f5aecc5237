-- Work leases for scale-out (WorkService). A row per work item; generation grows on each
-- claim and fences writers; state 'done' items are never handed out again.
CREATE TABLE leases (
    item TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    generation INTEGER NOT NULL,
    expire_time INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'released', 'done')),
    update_time INTEGER NOT NULL
);
CREATE INDEX leases_by_state ON leases (state, update_time);
