//! SQL of the motus service.

use sqlx::{AnyConnection, AnyPool};

/// A stored game.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Game {
    pub id: String,
    pub player_id: String,
    pub date: String,
    pub word: String,
    /// Space-separated, in order.
    pub guesses: String,
}

impl Game {
    pub fn guesses(&self) -> Vec<String> {
        self.guesses.split_whitespace().map(str::to_owned).collect()
    }
}

const GAME_OF_DAY: &str = "SELECT id, player_id, date, word, guesses FROM games \
                           WHERE player_id = $1 AND date = $2";

/// The word of `date`: the one recorded, or `drawn`, recorded now.
pub async fn word_of(db: &AnyPool, date: &str, drawn: &str) -> Result<String, sqlx::Error> {
    sqlx::query(
        "INSERT INTO daily_words (date, word) VALUES ($1, $2) ON CONFLICT (date) DO NOTHING",
    )
    .bind(date)
    .bind(drawn)
    .execute(db)
    .await?;
    sqlx::query_scalar("SELECT word FROM daily_words WHERE date = $1")
        .bind(date)
        .fetch_one(db)
        .await
}

pub async fn game(db: &AnyPool, player: &str, date: &str) -> Result<Option<Game>, sqlx::Error> {
    sqlx::query_as(GAME_OF_DAY)
        .bind(player)
        .bind(date)
        .fetch_optional(db)
        .await
}

/// The player's game of `date`, started now if there is none; true when
/// this call started it.
pub async fn start(
    tx: &mut AnyConnection,
    player: &str,
    date: &str,
    word: &str,
) -> Result<(Game, bool), sqlx::Error> {
    let started = sqlx::query(
        "INSERT INTO games (id, player_id, date, word, guesses, status, started_at) \
         VALUES ($1, $2, $3, $4, '', 'playing', $5) ON CONFLICT (player_id, date) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(player)
    .bind(date)
    .bind(word)
    .bind(flotilla_kit::timestamp())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let game = sqlx::query_as(GAME_OF_DAY)
        .bind(player)
        .bind(date)
        .fetch_one(&mut *tx)
        .await?;
    Ok((game, started))
}

/// Records the game's guesses and status if its guesses are still
/// `before` (no other request played meanwhile); false otherwise.
pub async fn play(
    tx: &mut AnyConnection,
    game: &Game,
    guesses: &str,
    status: &str,
) -> Result<bool, sqlx::Error> {
    let finished_at = (status != "playing").then(flotilla_kit::timestamp);
    let done = sqlx::query(
        "UPDATE games SET guesses = $1, status = $2, finished_at = $3 \
         WHERE id = $4 AND guesses = $5",
    )
    .bind(guesses)
    .bind(status)
    .bind(finished_at)
    .bind(&game.id)
    .bind(&game.guesses)
    .execute(tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
