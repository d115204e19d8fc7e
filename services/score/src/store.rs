//! SQL of the score service.

use sqlx::{AnyConnection, AnyPool};

use crate::domain::{self, Stats};

/// A player's row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Player {
    pub player_id: String,
    pub name: Option<String>,
    pub games: i64,
    pub wins: i64,
    pub tries: i64,
    /// Tries per word found, x1000, as the all-time leaderboard orders them.
    pub tries_per_word_milli: Option<i64>,
    pub current_streak: i64,
    pub best_streak: i64,
    pub distribution: String,
}

const PLAYER: &str = "SELECT player_id, name, games, wins, tries, tries_per_word_milli, \
                      current_streak, best_streak, distribution FROM players WHERE player_id = $1";

/// Records a result (once per player and day) and computes the player's
/// statistics again from all of theirs; false if the day had a result.
pub async fn record(
    tx: &mut AnyConnection,
    player: &str,
    date: &str,
    won: bool,
    attempts: u32,
    finished_at: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO results (player_id, date, won, attempts, finished_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (player_id, date) DO NOTHING",
    )
    .bind(player)
    .bind(date)
    .bind(i64::from(won))
    .bind(i64::from(attempts))
    .bind(finished_at)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        return Ok(false);
    }
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT date, won, attempts FROM results WHERE player_id = $1")
            .bind(player)
            .fetch_all(&mut *tx)
            .await?;
    let results: Vec<domain::Result> = rows
        .iter()
        .filter_map(|(date, won, attempts)| {
            Some(domain::Result {
                date: date.parse().ok()?,
                won: *won == 1,
                attempts: u32::try_from(*attempts).ok()?,
            })
        })
        .collect();
    let stats = Stats::of(&results);
    let milli = stats.tries_per_word().map(|t| (t * 1000.0).round() as i64);
    let distribution: Vec<String> = stats.distribution.iter().map(u32::to_string).collect();
    sqlx::query(
        "INSERT INTO players (player_id, games, wins, tries, tries_per_word_milli, current_streak, \
         best_streak, distribution) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (player_id) DO UPDATE SET games = $2, wins = $3, tries = $4, \
         tries_per_word_milli = $5, current_streak = $6, best_streak = $7, distribution = $8",
    )
    .bind(player)
    .bind(i64::from(stats.games))
    .bind(i64::from(stats.wins))
    .bind(i64::from(stats.tries))
    .bind(milli)
    .bind(i64::from(stats.current_streak))
    .bind(i64::from(stats.best_streak))
    .bind(distribution.join(","))
    .execute(tx)
    .await?;
    Ok(true)
}

/// Keeps a player's name, for the leaderboards.
pub async fn name(tx: &mut AnyConnection, player: &str, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO players (player_id, name) VALUES ($1, $2) \
         ON CONFLICT (player_id) DO UPDATE SET name = $2",
    )
    .bind(player)
    .bind(name)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn player(db: &AnyPool, id: &str) -> Result<Option<Player>, sqlx::Error> {
    sqlx::query_as(PLAYER).bind(id).fetch_optional(db).await
}

/// A line of a leaderboard.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Line {
    pub player_id: String,
    pub name: Option<String>,
    pub wins: i64,
    pub games: i64,
    /// The day's attempts, or tries per word found (x1000) over all time.
    pub score: Option<i64>,
}

/// The best `limit` players of all time: most wins, then fewest tries per
/// word found.
pub async fn all_time(db: &AnyPool, limit: i64) -> Result<Vec<Line>, sqlx::Error> {
    sqlx::query_as(
        "SELECT player_id, name, wins, games, tries_per_word_milli AS score FROM players \
         WHERE games > 0 ORDER BY wins DESC, tries_per_word_milli, player_id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// How many players of all time rank before `player`.
pub async fn all_time_ahead(db: &AnyPool, player: &Player) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM players WHERE games > 0 AND (wins > $1 OR (wins = $1 AND \
         tries_per_word_milli < $2))",
    )
    .bind(player.wins)
    .bind(player.tries_per_word_milli.unwrap_or(i64::MAX))
    .fetch_one(db)
    .await
}

/// The best `limit` players of `date`: a win first, then fewer attempts,
/// then who finished first.
pub async fn day(db: &AnyPool, date: &str, limit: i64) -> Result<Vec<Line>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.player_id, p.name, r.won AS wins, 1 AS games, r.attempts AS score \
         FROM results r LEFT JOIN players p ON p.player_id = r.player_id WHERE r.date = $1 \
         ORDER BY r.won DESC, r.attempts, r.finished_at LIMIT $2",
    )
    .bind(date)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The player's result of `date`, and how many ranked before it.
pub async fn day_rank(
    db: &AnyPool,
    date: &str,
    player: &str,
) -> Result<Option<(Line, i64)>, sqlx::Error> {
    let mine: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT won, attempts, finished_at FROM results WHERE date = $1 AND player_id = $2",
    )
    .bind(date)
    .bind(player)
    .fetch_optional(db)
    .await?;
    let Some((won, attempts, finished_at)) = mine else {
        return Ok(None);
    };
    let ahead: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM results WHERE date = $1 AND (won > $2 OR (won = $2 AND \
         (attempts < $3 OR (attempts = $3 AND finished_at < $4))))",
    )
    .bind(date)
    .bind(won)
    .bind(attempts)
    .bind(&finished_at)
    .fetch_one(db)
    .await?;
    let name = sqlx::query_scalar("SELECT name FROM players WHERE player_id = $1")
        .bind(player)
        .fetch_optional(db)
        .await?
        .flatten();
    let line = Line {
        player_id: player.to_owned(),
        name,
        wins: won,
        games: 1,
        score: Some(attempts),
    };
    Ok(Some((line, ahead)))
}

/// The latest day anyone finished a game.
pub async fn latest_day(db: &AnyPool) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT MAX(date) FROM results")
        .fetch_one(db)
        .await
}
