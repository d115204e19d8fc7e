//! HTTP handlers of the motus service: the signed-in player's game of the
//! day, a guess, and the accepted words.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flotilla_contracts::MotusGameFinishedV1;
use flotilla_kit::{Caller, Context, Error, Json, Problem, Query};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{self, MAX_ATTEMPTS, Mark, Status};
use crate::store::{self, Game};
use crate::words::Words;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub words: Arc<Words>,
    pub zone: jiff::tz::TimeZone,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/today", get(today))
        .route("/today/guesses", post(guess))
        .route("/words", get(words))
        .with_state(state)
}

/// A counted guess and how its letters compare with the answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    guess: String,
    feedback: Vec<Mark>,
}

/// The player's game of the day.
#[derive(Debug, Serialize, ToSchema)]
pub struct GameBody {
    /// YYYY-MM-DD, in the game's time zone.
    date: String,
    length: usize,
    first_letter: String,
    max_attempts: usize,
    status: Status,
    attempts: Vec<Attempt>,
    /// Only once the game is over.
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
}

impl GameBody {
    fn new(date: &str, word: &str, guesses: &[String]) -> Self {
        let status = domain::status(guesses, word);
        Self {
            date: date.to_owned(),
            length: word.len(),
            first_letter: word[..1].to_owned(),
            max_attempts: MAX_ATTEMPTS,
            status,
            attempts: guesses
                .iter()
                .map(|guess| Attempt {
                    feedback: domain::marks(guess, word),
                    guess: guess.clone(),
                })
                .collect(),
            answer: (status != Status::Playing).then(|| word.to_owned()),
        }
    }
}

/// The day (date and number) and its word, recorded the first time.
async fn day(state: &AppState) -> Result<(String, String), Error> {
    let (date, number) = domain::today(jiff::Timestamp::now(), &state.zone);
    let date = date.to_string();
    let word = store::word_of(&state.ctx.db, &date, state.words.drawn(number)).await?;
    Ok((date, word))
}

/// The signed-in player's game of the day (not started: no attempts yet).
#[utoipa::path(get, path = "/today", responses(
    (status = 200, body = GameBody),
    (status = 401, description = "Not signed in", body = Problem),
))]
pub async fn today(State(state): State<AppState>, caller: Caller) -> Result<Json<GameBody>, Error> {
    let (date, word) = day(&state).await?;
    let game = store::game(&state.ctx.db, &caller.id, &date).await?;
    let guesses = game.as_ref().map(Game::guesses).unwrap_or_default();
    let word = game.map_or(word, |g| g.word);
    Ok(Json(GameBody::new(&date, &word, &guesses)))
}

/// The body of `POST /motus/today/guesses`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuessBody {
    #[schema(schema_with = guess_schema)]
    guess: String,
}

/// A word of letters, accents ignored: 3 to 9 of them, as `œ` and `æ`
/// count two. Whether it counts depends on the day's word.
fn guess_schema() -> utoipa::openapi::schema::Object {
    let (letter, space) = (domain::LETTER_CLASS, flotilla_kit::fields::SPACE_CLASS);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "A word of 6 to 9 letters once accents are dropped (`é` is `E`, `œ` is \
             `OE`), leading and trailing whitespace ignored. It counts if it has the \
             length and first letter of the day's word and is in the word list \
             (`GET /motus/words`).",
        ))
        .pattern(Some(format!("^[{space}]*[{letter}]{{3,9}}[{space}]*$")))
        .examples(["MAISON"])
        .build()
}

/// Plays a guess. One that does not count (wrong length or first letter,
/// not a known word) is a 422 saying why; after the game's end, 409.
#[utoipa::path(post, path = "/today/guesses", request_body = GuessBody, responses(
    (status = 200, description = "The game with the guess counted", body = GameBody),
    (status = 401, description = "Not signed in", body = Problem),
    (status = 409, description = "The game is over, or it changed while the guess was played", body = Problem),
    (status = 422, description = "The guess does not count: not a word, not the day's length or first letter, or not in the word list", body = Problem),
))]
pub async fn guess(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<GuessBody>,
) -> Result<Response, Error> {
    let (date, word) = day(&state).await?;
    let metrics = &state.ctx.metrics;
    // Another instance may play the same game at the same moment: the
    // update applies only over the guesses it read, and is tried again.
    for _ in 0..5 {
        let mut tx = state.ctx.begin().await?;
        let (game, started) = store::start(&mut tx, &caller.id, &date, &word).await?;
        let mut guesses = game.guesses();
        if domain::status(&guesses, &game.word) != Status::Playing {
            return Err(Error::Conflict(
                "today's game is over; a new word comes tomorrow".to_owned(),
            ));
        }
        let checked = domain::check(&body.guess, &game.word, |w| {
            w == game.word || state.words.accepts(w)
        });
        let played = match checked {
            Ok(played) => played,
            Err(refusal) => {
                metrics.record(|| {
                    metrics::counter!("motus_guesses_refused_total", "reason" => refusal.label())
                        .increment(1);
                });
                return Err(Error::invalid("guess", refusal.detail()));
            }
        };
        guesses.push(played);
        let status = domain::status(&guesses, &game.word);
        let label = match status {
            Status::Playing => "playing",
            Status::Won => "won",
            Status::Lost => "lost",
        };
        if !store::play(&mut tx, &game, &guesses.join(" "), label).await? {
            continue;
        }
        if status != Status::Playing {
            tx.stage(&MotusGameFinishedV1 {
                game_id: game.id.clone(),
                player_id: game.player_id.clone(),
                date: game.date.clone(),
                won: status == Status::Won,
                attempts: guesses.len() as u32,
                length: game.word.len() as u32,
                finished_at: flotilla_kit::timestamp(),
            })
            .await?;
        }
        tx.commit().await?;
        metrics.record(|| {
            if started {
                metrics::counter!("motus_games_started_total").increment(1);
            }
            metrics::counter!("motus_guesses_total").increment(1);
            if status != Status::Playing {
                metrics::counter!("motus_games_finished_total", "result" => label).increment(1);
            }
        });
        return Ok(Json(GameBody::new(&game.date, &game.word, &guesses)).into_response());
    }
    Ok(Problem::new(
        StatusCode::CONFLICT,
        flotilla_kit::problem::kind::CONFLICT,
        "the game changed while the guess was played; send it again",
    )
    .into_response())
}

/// Which accepted guesses to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WordsQuery {
    /// The word's length.
    #[param(minimum = 6, maximum = 9)]
    length: usize,
    /// Its first letter, A-Z.
    #[param(pattern = "^[A-Za-z]$")]
    first: String,
}

/// The accepted guesses.
#[derive(Debug, Serialize, ToSchema)]
pub struct WordsBody {
    words: Vec<&'static str>,
}

/// The accepted guesses of a length and first letter, so that a client
/// can refuse unknown words before sending them.
#[utoipa::path(get, path = "/words", params(WordsQuery), responses(
    (status = 200, body = WordsBody),
    (status = 400, description = "A parameter missing, unknown or out of bounds", body = Problem),
    (status = 401, description = "Not signed in", body = Problem),
))]
pub async fn words(
    State(state): State<AppState>,
    Query(query): Query<WordsQuery>,
) -> Result<Json<WordsBody>, Error> {
    if !(6..=9).contains(&query.length) {
        return Err(Error::BadQuery("length is 6 to 9".to_owned()));
    }
    let mut letters = query.first.chars();
    let first = match (letters.next(), letters.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => c.to_ascii_uppercase(),
        _ => return Err(Error::BadQuery("first is one letter, A-Z".to_owned())),
    };
    Ok(Json(WordsBody {
        words: state.words.starting(query.length, first),
    }))
}
