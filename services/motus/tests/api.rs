//! The motus service alone: a player's game of the day through its HTTP
//! API (the caller given as the gateway gives it), and the event a
//! finished game publishes.

use flotilla_contracts::MotusGameFinishedV1;
use flotilla_kit::testing::TestService;
use flotilla_motus::Motus;
use serde_json::{Value, json};

/// Requests as the gateway makes them for a signed-in player.
struct Player {
    base: String,
    id: &'static str,
}

impl Player {
    fn new(app: &TestService, id: &'static str) -> Self {
        Self {
            base: app.at(""),
            id,
        }
    }

    async fn today(&self) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}/today", self.base))
            .header("x-user-id", self.id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn guess(&self, guess: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/today/guesses", self.base))
            .header("x-user-id", self.id)
            .json(&json!({ "guess": guess }))
            .send()
            .await
            .unwrap()
    }
}

/// The word of the day as recorded, and accepted guesses that are not it.
async fn word_and_others(app: &TestService, player: &Player) -> (String, Vec<String>) {
    let game = player.today().await;
    let word: String = sqlx::query_scalar("SELECT word FROM daily_words")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(game["length"], word.len());
    assert_eq!(game["first_letter"], &word[..1]);
    let list: Value = app
        .get(&format!(
            "/words?length={}&first={}",
            word.len(),
            &word[..1]
        ))
        .await
        .json()
        .await
        .unwrap();
    let others = list["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .filter(|w| *w != word)
        .collect();
    (word, others)
}

#[tokio::test]
async fn anonymous_calls_are_refused() {
    let app = TestService::start::<Motus>(&[]).await;
    assert_eq!(app.get("/today").await.status(), 401);
    let guess = app
        .post("/today/guesses", &json!({ "guess": "MAISON" }))
        .await;
    assert_eq!(guess.status(), 401);
    assert!(
        guess.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
}

#[tokio::test]
async fn a_won_game_reveals_the_word_is_announced_and_takes_no_more_guesses() {
    let mut app = TestService::start::<Motus>(&[]).await;
    let ada = Player::new(&app, "ada");
    let (word, others) = word_and_others(&app, &ada).await;
    let fresh = ada.today().await;
    assert_eq!(fresh["status"], "playing");
    assert_eq!(fresh["attempts"], json!([]));
    assert_eq!(fresh["max_attempts"], 6);

    let first = ada.guess(&others[0].to_lowercase()).await;
    assert_eq!(first.status(), 200);
    let game: Value = first.json().await.unwrap();
    assert_eq!(game["attempts"][0]["guess"], others[0].as_str());
    assert_eq!(
        game["attempts"][0]["feedback"][0], "correct",
        "the first letter is given"
    );
    assert!(game.get("answer").is_none(), "hidden while playing: {game}");

    let won: Value = ada.guess(&word).await.json().await.unwrap();
    assert_eq!(won["status"], "won");
    assert_eq!(won["answer"], word.as_str());
    assert_eq!(
        won["attempts"][1]["feedback"],
        json!(vec!["correct"; word.len()])
    );
    assert_eq!(
        ada.today().await,
        won,
        "a restart or another instance sees the same"
    );

    let finished: MotusGameFinishedV1 = app.published().await;
    assert_eq!(finished.player_id, "ada");
    assert!(finished.won);
    assert_eq!(finished.attempts, 2);
    assert_eq!(finished.date, won["date"].as_str().unwrap());

    let late = ada.guess(&others[1]).await;
    assert_eq!(late.status(), 409);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("motus_games_finished_total{service=\"motus\",result=\"won\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("motus_guesses_total{service=\"motus\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn refused_guesses_say_why_and_do_not_count() {
    let app = TestService::start::<Motus>(&[]).await;
    let bob = Player::new(&app, "bob");
    let (word, _) = word_and_others(&app, &bob).await;
    let first = &word[..1];
    let other_first = if first == "A" { "B" } else { "A" };
    let cases = [
        (format!("{word}S"), "letters"),
        (format!("{other_first}{}", &word[1..]), "starts with"),
        (
            format!("{first}{}", "Q".repeat(word.len() - 1)),
            "not in the list",
        ),
        ("M4ISON".to_owned(), "letters only"),
    ];
    for (guess, why) in &cases {
        let refused = bob.guess(guess).await;
        assert_eq!(refused.status(), 422, "{guess}");
        let problem: Value = refused.json().await.unwrap();
        assert!(
            problem["errors"][0]["detail"]
                .as_str()
                .unwrap()
                .contains(why),
            "{guess}: {problem}"
        );
    }
    assert_eq!(bob.today().await["attempts"], json!([]));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("motus_guesses_refused_total{service=\"motus\",reason=\"unknown\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn six_misses_lose_the_game_and_a_seventh_is_refused() {
    let mut app = TestService::start::<Motus>(&[]).await;
    let eve = Player::new(&app, "eve");
    let (word, others) = word_and_others(&app, &eve).await;
    assert!(
        others.len() >= 7,
        "enough words starting with {}",
        &word[..1]
    );
    for (n, guess) in others.iter().take(6).enumerate() {
        let game: Value = eve.guess(guess).await.json().await.unwrap();
        if n < 5 {
            assert_eq!(game["status"], "playing");
            assert!(game.get("answer").is_none());
        } else {
            assert_eq!(game["status"], "lost");
            assert_eq!(
                game["answer"],
                word.as_str(),
                "the word is given at the end"
            );
        }
    }
    assert_eq!(eve.guess(&word).await.status(), 409);
    let finished: MotusGameFinishedV1 = app.published().await;
    assert!(!finished.won);
    assert_eq!(finished.attempts, 6);
}

#[tokio::test]
async fn a_recorded_word_stays_the_days_word_whatever_the_lists_or_the_seed() {
    let app = TestService::start::<Motus>(&["--motus-seed", "7"]).await;
    let ada = Player::new(&app, "ada");
    let date = ada.today().await["date"].as_str().unwrap().to_owned();
    // As if another seed (or an older list) had drawn another word first.
    sqlx::query("UPDATE daily_words SET word = 'ZYGOMAS' WHERE date = $1")
        .bind(&date)
        .execute(app.db())
        .await
        .unwrap();
    let game = ada.today().await;
    assert_eq!(
        (game["length"].as_u64(), game["first_letter"].as_str()),
        (Some(7), Some("Z"))
    );
    let won: Value = ada.guess("zygomas").await.json().await.unwrap();
    assert_eq!(
        won["status"], "won",
        "the recorded answer is always accepted: {won}"
    );
}

#[tokio::test]
async fn the_word_list_is_served_for_offline_checks() {
    let app = TestService::start::<Motus>(&["--motus-lang", "en"]).await;
    let list: Value = app
        .get("/words?length=6&first=p")
        .await
        .json()
        .await
        .unwrap();
    let words: Vec<&str> = list["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(words.contains(&"PLANET"), "{} words", words.len());
    assert!(words.iter().all(|w| w.len() == 6 && w.starts_with('P')));
    assert!(words.is_sorted());
    for bad in [
        "/words?length=5&first=p",
        "/words?length=6&first=pq",
        "/words?length=6&first=1",
    ] {
        assert_eq!(app.get(bad).await.status(), 400, "{bad}");
    }
}
