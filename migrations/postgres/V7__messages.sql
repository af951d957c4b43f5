-- sessiond's Postgres schema, version 7: channel messages.
--
-- Global messages are numbered per channel from `message_channels`, whose
-- row for a channel is bumped by every post: its row lock makes the posts
-- of one channel commit one after the other in sequence order. The rows
-- are never deleted, so a channel's numbering never restarts. `messages`
-- keeps each message for the replay window (purged by `posted_at`); its
-- payload is the JSON text as posted.

CREATE TABLE message_channels (
    tenant TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    last_sequence BIGINT NOT NULL,
    PRIMARY KEY (tenant, channel)
);

CREATE TABLE messages (
    tenant TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    sequence BIGINT NOT NULL,
    type_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    posted_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, channel, sequence)
);
CREATE INDEX messages_by_time ON messages (posted_at);
