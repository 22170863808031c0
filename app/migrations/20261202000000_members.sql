-- What a room plays, who may enter it, and who is in it.
ALTER TABLE rooms
    ADD COLUMN media_title     TEXT             NOT NULL DEFAULT ''
        CHECK (char_length(media_title) <= 200),
    ADD COLUMN media_plex_key  TEXT             CHECK (char_length(media_plex_key) BETWEEN 1 AND 200),
    ADD COLUMN media_duration  DOUBLE PRECISION CHECK (media_duration > 0),
    -- argon2id in PHC form; NULL when the room is open to anyone with its id.
    ADD COLUMN passphrase_hash TEXT;

-- A member is one seat in one room; the host is the member who created it. Only the
-- SHA-256 of a member's token is kept.
CREATE TABLE members (
    id           BIGSERIAL   PRIMARY KEY,
    room_id      BIGINT      NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    display_name TEXT        NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 50),
    token_sha256 BYTEA       NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    is_host      BOOLEAN     NOT NULL DEFAULT false,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX members_room ON members (room_id);
-- One host per room.
CREATE UNIQUE INDEX members_one_host ON members (room_id) WHERE is_host;
