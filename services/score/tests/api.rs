//! The score service alone: finished games delivered to its consumer, the
//! statistics and leaderboards through its HTTP API.

use flotilla_contracts::{AccountCreatedV1, Event as _, MotusGameFinishedV1};
use flotilla_kit::testing::TestService;
use flotilla_score::Score;
use serde_json::{Value, json};

fn game(player: &str, date: &str, won: bool, attempts: u32) -> MotusGameFinishedV1 {
    MotusGameFinishedV1 {
        game_id: format!("{player}-{date}"),
        player_id: player.to_owned(),
        date: date.to_owned(),
        won,
        attempts,
        length: 7,
        finished_at: format!("{date}T12:00:0{attempts}.000Z"),
    }
}

async fn get_as(app: &TestService, player: Option<&str>, path: &str) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(app.at(path));
    if let Some(player) = player {
        request = request.header("x-user-id", player);
    }
    request.send().await.unwrap()
}

async fn json_as(app: &TestService, player: Option<&str>, path: &str) -> Value {
    let response = get_as(app, player, path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_game_delivered_twice_counts_once() {
    let mut app = TestService::start::<Score>(&[]).await;
    let finished = game("ada", "2026-12-01", true, 3);
    let message = flotilla_kit::consume::Message::new(
        MotusGameFinishedV1::SUBJECT,
        serde_json::to_vec(&finished).unwrap(),
    )
    .with_header("schema", MotusGameFinishedV1::SCHEMA);
    app.deliver_message(message.clone()).await;
    app.deliver_message(message).await;
    // Even under another message id (published twice), one result per day.
    app.deliver(&finished).await;
    let me = json_as(&app, Some("ada"), "/me").await;
    assert_eq!(
        (me["games"].as_i64(), me["wins"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(me["distribution"], json!([0, 0, 1, 0, 0, 0]));
    assert_eq!(me["tries_per_word"], 3.0);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("score_games_counted_total{service=\"score\",result=\"won\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn streaks_run_across_days_and_a_loss_ends_them() {
    let mut app = TestService::start::<Score>(&[]).await;
    for (date, won, attempts) in [
        ("2026-11-28", true, 2),
        ("2026-11-29", true, 4),
        ("2026-11-30", false, 6),
        ("2026-12-01", true, 1),
        ("2026-12-02", true, 3),
    ] {
        app.deliver(&game("ada", date, won, attempts)).await;
    }
    let me = json_as(&app, Some("ada"), "/me").await;
    assert_eq!(
        (me["current_streak"].as_i64(), me["best_streak"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(me["games"], 5);
    assert_eq!(me["win_rate"], 80.0);
    assert_eq!(me["tries_per_word"], 4.0, "16 tries for 4 words found");
    let public = json_as(&app, None, "/players/ada").await;
    assert_eq!(public["best_streak"], 2);
}

#[tokio::test]
async fn leaderboards_rank_the_players_and_show_the_callers_own_line() {
    let mut app = TestService::start::<Score>(&[]).await;
    for (id, name) in [("ada", "Ada"), ("bob", "Bob"), ("cy", "Cy")] {
        app.deliver(&AccountCreatedV1 {
            id: id.to_owned(),
            email: format!("{id}@example.com"),
            name: name.to_owned(),
            created_at: "2026-11-01T00:00:00.000Z".to_owned(),
        })
        .await;
    }
    app.deliver(&game("ada", "2026-11-30", true, 2)).await;
    app.deliver(&game("bob", "2026-11-30", true, 5)).await;
    app.deliver(&game("ada", "2026-12-01", false, 6)).await;
    app.deliver(&game("bob", "2026-12-01", true, 4)).await;
    app.deliver(&game("cy", "2026-12-01", true, 1)).await;

    let day = json_as(&app, Some("bob"), "/leaderboard?period=day").await;
    assert_eq!(day["date"], "2026-12-01", "the latest day played");
    let order: Vec<&str> = day["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["Cy", "Bob", "Ada"]);
    assert_eq!(day["me"]["rank"], 2);
    assert_eq!(day["me"]["score"], 4.0);

    let all = json_as(&app, Some("ada"), "/leaderboard?period=all&limit=1").await;
    assert_eq!(all["entries"].as_array().unwrap().len(), 1);
    assert_eq!(all["entries"][0]["name"], "Bob", "two wins beat one");
    assert_eq!(
        all["me"]["rank"], 3,
        "Ada: one win in 8 tries, behind Cy's one in 1"
    );
    assert_eq!(all["me"]["score"], 8.0);
    let earlier = json_as(&app, None, "/leaderboard?period=day&date=2026-11-30").await;
    assert_eq!(earlier["entries"][0]["player_id"], "ada");
    assert!(earlier["me"].is_null());
}

#[tokio::test]
async fn bad_requests_are_problems() {
    let app = TestService::start::<Score>(&[]).await;
    assert_eq!(get_as(&app, None, "/me").await.status(), 401);
    assert_eq!(get_as(&app, None, "/players/nobody").await.status(), 404);
    for bad in [
        "/leaderboard?period=week",
        "/leaderboard?limit=0",
        "/leaderboard?limit=101",
        "/leaderboard?period=day&date=yesterday",
        "/leaderboard?period=day&date=2026-02-30",
        "/leaderboard?period=day&date=20261201",
        "/leaderboard?date=",
        "/leaderboard?period=all&date=someday",
        "/leaderboard?page=2",
    ] {
        let response = get_as(&app, None, bad).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let empty = json_as(&app, None, "/leaderboard?period=day").await;
    assert_eq!(empty["entries"], json!([]));
    let me = json_as(&app, Some("new"), "/me").await;
    assert_eq!(me["games"], 0);
}
