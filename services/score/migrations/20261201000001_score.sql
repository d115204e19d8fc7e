-- Every finished Motus game: one per player per day. The statistics of a
-- player are computed again from these whenever one arrives.
CREATE TABLE results (
    player_id TEXT NOT NULL,
    date TEXT NOT NULL,            -- YYYY-MM-DD, the game's day
    won BIGINT NOT NULL,           -- 1 or 0
    attempts BIGINT NOT NULL,      -- 1 to 6
    finished_at TEXT NOT NULL,     -- RFC 3339, UTC
    PRIMARY KEY (player_id, date)
);

-- Each player's statistics, and their name from account.created.
CREATE TABLE players (
    player_id TEXT PRIMARY KEY,
    name TEXT,
    games BIGINT NOT NULL DEFAULT 0,
    wins BIGINT NOT NULL DEFAULT 0,
    tries BIGINT NOT NULL DEFAULT 0,          -- attempts over every game
    tries_per_word_milli BIGINT,              -- tries * 1000 / wins; NULL without a win
    current_streak BIGINT NOT NULL DEFAULT 0, -- won days in a row, up to the last game
    best_streak BIGINT NOT NULL DEFAULT 0,
    distribution TEXT NOT NULL DEFAULT '0,0,0,0,0,0'  -- wins in 1, 2, ... 6 attempts
);
CREATE INDEX players_all_time ON players (wins DESC, tries_per_word_milli);
