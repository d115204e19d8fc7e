-- The word of each day, recorded the first time the day is played: later
-- edits of the word lists, or another seed, never change a past day's word,
-- and every instance plays the same one (the first insert wins).
CREATE TABLE daily_words (
    date TEXT PRIMARY KEY,        -- YYYY-MM-DD in the game's time zone
    word TEXT NOT NULL            -- upper-case A-Z
);

-- One game per player per day.
CREATE TABLE games (
    id TEXT PRIMARY KEY,          -- UUIDv7
    player_id TEXT NOT NULL,      -- the account id (the access token's sub)
    date TEXT NOT NULL,
    word TEXT NOT NULL,           -- the day's word, copied when the game starts
    guesses TEXT NOT NULL,        -- the counted guesses, space-separated, in order
    status TEXT NOT NULL,         -- playing | won | lost
    started_at TEXT NOT NULL,     -- RFC 3339, UTC
    finished_at TEXT,
    UNIQUE (player_id, date)
);
