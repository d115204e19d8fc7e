//! What the score service consumes: `motus.game.finished`, counted once per
//! game (the inbox, and one result per player and day), and
//! `account.created` for the players' names.

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_contracts::{AccountCreatedV1, MotusGameFinishedV1};
use flotilla_kit::consume::{Consume, HandlerError, Message, Staging};
use flotilla_kit::metrics::Metrics;

use crate::store;

/// Counts a finished game in its player's statistics.
pub struct GameFinished {
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl Consume for GameFinished {
    type Event = MotusGameFinishedV1;

    async fn handle(
        &self,
        tx: &mut Staging<'_>,
        game: MotusGameFinishedV1,
        _message: &Message,
    ) -> Result<(), HandlerError> {
        if game.date.parse::<jiff::civil::Date>().is_err() || !(1..=6).contains(&game.attempts) {
            return Err(HandlerError::Permanent(format!(
                "a game on {:?} in {} attempts cannot be counted",
                game.date, game.attempts
            )));
        }
        let counted = store::record(
            tx,
            &game.player_id,
            &game.date,
            game.won,
            game.attempts,
            &game.finished_at,
        )
        .await?;
        if counted {
            let result = if game.won { "won" } else { "lost" };
            self.metrics.record(|| {
                metrics::counter!("score_games_counted_total", "result" => result).increment(1);
            });
        }
        Ok(())
    }
}

/// Keeps each account's name for the leaderboards.
pub struct AccountCreated;

#[async_trait]
impl Consume for AccountCreated {
    type Event = AccountCreatedV1;

    async fn handle(
        &self,
        tx: &mut Staging<'_>,
        account: AccountCreatedV1,
        _message: &Message,
    ) -> Result<(), HandlerError> {
        store::name(tx, &account.id, &account.name).await?;
        Ok(())
    }
}
