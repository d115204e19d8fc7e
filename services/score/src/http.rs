//! HTTP handlers of the score service: a player's statistics and the
//! leaderboards.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use flotilla_kit::{Caller, Context, Error, Json, Problem, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::store::{self, Line, Player};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/players/{id}", get(player))
        .route("/leaderboard", get(leaderboard))
        .with_state(state)
}

/// A player's statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBody {
    player_id: String,
    name: Option<String>,
    games: i64,
    wins: i64,
    /// Per cent of games won.
    win_rate: f64,
    current_streak: i64,
    best_streak: i64,
    /// Wins in 1, 2, ... 6 attempts.
    distribution: Vec<i64>,
    /// Seed 002's score: attempts over every game per word found; null
    /// without a win.
    tries_per_word: Option<f64>,
}

impl StatsBody {
    fn new(player: Player) -> Self {
        let ratio = |a: i64, b: i64| (b > 0).then(|| a as f64 / b as f64);
        Self {
            win_rate: ratio(player.wins * 100, player.games).unwrap_or(0.0),
            tries_per_word: ratio(player.tries, player.wins),
            distribution: player
                .distribution
                .split(',')
                .map(|n| n.parse().unwrap_or(0))
                .collect(),
            player_id: player.player_id,
            name: player.name,
            games: player.games,
            wins: player.wins,
            current_streak: player.current_streak,
            best_streak: player.best_streak,
        }
    }

    fn none(id: &str) -> Self {
        Self::new(Player {
            player_id: id.to_owned(),
            name: None,
            games: 0,
            wins: 0,
            tries: 0,
            tries_per_word_milli: None,
            current_streak: 0,
            best_streak: 0,
            distribution: "0,0,0,0,0,0".to_owned(),
        })
    }
}

/// The signed-in player's statistics (zeros before a first game).
#[utoipa::path(get, path = "/me", responses(
    (status = 200, body = StatsBody),
    (status = 401, description = "Not signed in", body = Problem),
))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<StatsBody>, Error> {
    let player = store::player(&state.ctx.db, &caller.id).await?;
    Ok(Json(player.map_or_else(
        || StatsBody::none(&caller.id),
        StatsBody::new,
    )))
}

/// A player's statistics.
#[utoipa::path(get, path = "/players/{id}", params(("id" = String, Path)), responses(
    (status = 200, body = StatsBody),
    (status = 404, description = "No game of this player was counted", body = Problem),
))]
pub async fn player(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StatsBody>, Error> {
    match store::player(&state.ctx.db, &id).await? {
        Some(player) if player.games > 0 => Ok(Json(StatsBody::new(player))),
        _ => Err(Error::NotFound(format!(
            "no game of player {id} was counted"
        ))),
    }
}

/// A leaderboard's period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// One day's games.
    Day,
    /// All games.
    #[default]
    All,
}

/// Which leaderboard; other parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardQuery {
    /// `day` (one day's games; the latest day played unless `date` says)
    /// or `all` (all time). `all` by default.
    #[param(inline)]
    period: Option<Period>,
    /// The day shown with `period=day` (YYYY-MM-DD, a real date); checked,
    /// then ignored, with `all`.
    #[param(value_type = Option<String>, format = Date)]
    date: Option<String>,
    /// How many lines, 1 to 100 (10 by default).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// `raw` if it is a calendar date written YYYY-MM-DD.
fn calendar_date(raw: String) -> Result<String, Error> {
    let date: Option<jiff::civil::Date> = raw.parse().ok();
    match date {
        Some(date) if date.to_string() == raw => Ok(raw),
        _ => Err(Error::BadQuery("date is YYYY-MM-DD".to_owned())),
    }
}

/// A line of a leaderboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct Entry {
    rank: i64,
    player_id: String,
    name: Option<String>,
    wins: i64,
    games: i64,
    /// `day`: the attempts of the day's game; `all`: tries per word found.
    score: Option<f64>,
}

/// A leaderboard, and the caller's own line when signed in and ranked.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderboardBody {
    period: Period,
    /// For `day`: the day shown (null when nobody played yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<String>,
    entries: Vec<Entry>,
    me: Option<Entry>,
}

/// A line's score as shown: the day's attempts, or tries per word found.
fn score(line: &Line, day: bool) -> Option<f64> {
    line.score
        .map(|s| if day { s as f64 } else { s as f64 / 1000.0 })
}

fn entry(rank: i64, line: Line, day: bool) -> Entry {
    Entry {
        rank,
        score: score(&line, day),
        player_id: line.player_id,
        name: line.name,
        wins: line.wins,
        games: line.games,
    }
}

/// The top players of a day or of all time, with the caller's rank.
#[utoipa::path(get, path = "/leaderboard", params(LeaderboardQuery), responses(
    (status = 200, body = LeaderboardBody),
    (status = 400, description = "An unknown period or parameter, a bad date or limit", body = Problem),
))]
pub async fn leaderboard(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Query(query): Query<LeaderboardQuery>,
) -> Result<Json<LeaderboardBody>, Error> {
    let db = &state.ctx.db;
    let limit = query.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(Error::BadQuery("limit is 1 to 100".to_owned()));
    }
    let date = query.date.map(calendar_date).transpose()?;
    let period = query.period.unwrap_or_default();
    let rank_of = |lines: Vec<Line>, day: bool| -> Vec<Entry> {
        let mut entries: Vec<Entry> = Vec::with_capacity(lines.len());
        for (i, line) in lines.into_iter().enumerate() {
            let tied = entries
                .last()
                .filter(|prev| prev.wins == line.wins && prev.score == score(&line, day));
            let rank = tied.map_or(i as i64 + 1, |prev| prev.rank);
            entries.push(entry(rank, line, day));
        }
        entries
    };
    match period {
        Period::All => {
            let entries = rank_of(store::all_time(db, limit).await?, false);
            let me = match &caller {
                Some(caller) => match store::player(db, &caller.id).await? {
                    Some(player) if player.games > 0 => {
                        let ahead = store::all_time_ahead(db, &player).await?;
                        let line = Line {
                            player_id: player.player_id,
                            name: player.name,
                            wins: player.wins,
                            games: player.games,
                            score: player.tries_per_word_milli,
                        };
                        Some(entry(ahead + 1, line, false))
                    }
                    _ => None,
                },
                None => None,
            };
            Ok(Json(LeaderboardBody {
                period,
                date: None,
                entries,
                me,
            }))
        }
        Period::Day => {
            let date = match date {
                None => store::latest_day(db).await?,
                given => given,
            };
            let Some(date) = date else {
                return Ok(Json(LeaderboardBody {
                    period,
                    date: None,
                    entries: Vec::new(),
                    me: None,
                }));
            };
            let entries = rank_of(store::day(db, &date, limit).await?, true);
            let me = match &caller {
                Some(caller) => store::day_rank(db, &date, &caller.id)
                    .await?
                    .map(|(line, ahead)| entry(ahead + 1, line, true)),
                None => None,
            };
            Ok(Json(LeaderboardBody {
                period,
                date: Some(date),
                entries,
                me,
            }))
        }
    }
}
