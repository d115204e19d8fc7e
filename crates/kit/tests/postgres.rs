//! Storage on a real PostgreSQL server: a schema per service, created at
//! start, with the service's tables inside. Needs FLOTILLA_TEST_POSTGRES_URL.

use flotilla_kit::db::Storage;
use sqlx::Row;

fn url() -> String {
    std::env::var("FLOTILLA_TEST_POSTGRES_URL")
        .expect("FLOTILLA_TEST_POSTGRES_URL is not set: this test needs its server")
}

#[tokio::test]
#[ignore = "needs PostgreSQL: FLOTILLA_TEST_POSTGRES_URL"]
async fn each_service_gets_its_own_schema() {
    let url = url();
    let prefix = format!("k{}_", std::process::id());
    let storage = Storage::new(Some(&url), "unused".into(), &prefix).unwrap();
    let (a, b) = (
        storage.open("alpha").await.unwrap(),
        storage.open("beta").await.unwrap(),
    );
    for pool in [&a, &b] {
        flotilla_kit::db::migrate(pool, &flotilla_bus::outbox::MIGRATOR)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO inbox (consumer, message_id, handled_at) VALUES ('c', 'm', 1)")
        .execute(&a)
        .await
        .unwrap();
    let count = |pool: &sqlx::AnyPool| {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT COUNT(*) AS n FROM inbox")
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>("n")
        }
    };
    assert_eq!(
        (count(&a).await, count(&b).await),
        (1, 0),
        "services share no table"
    );
    let schemas: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM information_schema.schemata WHERE schema_name LIKE $1",
    )
    .bind(format!("{prefix}%"))
    .fetch_one(&a)
    .await
    .unwrap()
    .get("n");
    assert_eq!(schemas, 2);
    for schema in ["alpha", "beta"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{prefix}{schema}\" CASCADE"
        )))
        .execute(&a)
        .await
        .unwrap();
    }
}

#[test]
fn only_postgres_urls_and_safe_prefixes_are_accepted() {
    assert!(Storage::new(Some("mysql://x"), "d".into(), "").is_err());
    assert!(Storage::new(Some("postgres://x/db"), "d".into(), "a\";drop").is_err());
    assert_eq!(
        Storage::new(None, "d".into(), "").unwrap(),
        Storage::Sqlite("d".into())
    );
}
