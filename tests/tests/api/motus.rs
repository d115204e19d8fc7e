//! Motus and its scores through the gateway: signed-in players play the
//! day's word, and the leaderboard ranks them once score has counted the
//! finished games from the bus.

use std::time::Duration;

use flotilla_tests::{TestApp, cookie, spawn_app, spawn_app_with};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

async fn guess(app: &TestApp, token: &str, word: &str) -> Value {
    let response = app
        .post_as(token, "/motus/today/guesses", &json!({ "guess": word }))
        .await;
    assert_eq!(response.status(), 200, "{word}");
    response.json().await.unwrap()
}

/// Plays six accepted guesses that are not the answer (or wins by chance);
/// the finished game.
async fn lose(app: &TestApp, token: &str) -> Value {
    let mut game = Value::Null;
    for word in app.motus_words(token).await.iter().take(6) {
        game = guess(app, token, word).await;
        if game["status"] != "playing" {
            break;
        }
    }
    game
}

#[tokio::test]
async fn one_player_learns_the_word_the_other_wins_with_it_and_the_leaderboard_ranks_them() {
    let app = spawn_app().await;
    let ada = app.player("Ada").await;
    let bob = app.player("Bob").await;
    assert_eq!(
        app.get("/motus/today").await.status(),
        401,
        "anonymous players are refused at the gateway"
    );

    let lost = lose(&app, &ada).await;
    let answer = lost["answer"]
        .as_str()
        .expect("the word, once over")
        .to_owned();
    let won = guess(&app, &bob, &answer).await;
    assert_eq!(won["status"], "won");
    assert_eq!(won["attempts"].as_array().unwrap().len(), 1);

    let deadline = tokio::time::Instant::now() + WAIT;
    let board = loop {
        let board: Value = app
            .get_as(&bob, "/score/leaderboard?period=day")
            .await
            .json()
            .await
            .unwrap();
        if board["entries"].as_array().unwrap().len() == 2 {
            break board;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "score never counted both games: {board}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<&str> = board["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Bob", "Ada"]);
    assert_eq!(board["me"]["rank"], 1);
    let stats: Value = app.get_as(&ada, "/score/me").await.json().await.unwrap();
    assert_eq!(stats["games"], 1);
    assert_eq!(
        stats["current_streak"],
        if lost["status"] == "won" { 1 } else { 0 }
    );
}

#[tokio::test]
async fn with_two_instances_a_player_is_kept_on_one_and_either_has_the_same_game() {
    let app = spawn_app_with(|args| args.replicas = 2).await;
    assert_eq!(app.instances("motus").len(), 2);
    let ada = app.player("Ada").await;
    let first = app.get_as(&ada, "/motus/today").await;
    let sticky = cookie(&first, "FLOTILLA_SERVER").expect("motus is balanced with a sticky cookie");
    let guesses = app.motus_words(&ada).await;
    guess(&app, &ada, &guesses[0]).await;
    // Without the sticky cookie, requests go round both instances: each
    // has the game as it was played.
    for _ in 0..4 {
        let today: Value = app.get_as(&ada, "/motus/today").await.json().await.unwrap();
        assert_eq!(today["attempts"][0]["guess"], guesses[0].as_str());
    }
    let kept = app
        .client
        .get(format!("{}/motus/today", app.url))
        .header("cookie", format!("{ada}; {sticky}"))
        .send()
        .await
        .unwrap();
    assert!(
        cookie(&kept, "FLOTILLA_SERVER").is_none(),
        "a kept client gets no new cookie"
    );
}
