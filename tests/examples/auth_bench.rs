//! Benchmark of the auth service through the gateway of a running stack,
//! each part next to its anchor measured in this process in the same run:
//!
//! - signing in, as a browser does (`GET /auth/login` for the CSRF cookie,
//!   then `POST /auth/login`, answered 303 with a session cookie); anchor:
//!   the argon2id verification alone, with the service's parameters;
//! - `client_credentials` tokens (`POST /auth/token`), if a client id and
//!   secret are given; anchor: signing the same ES256 access token alone.
//!
//!   auth_bench <gateway URL> [logins] [concurrency] [client id] [secret] [tokens]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn login(client: &reqwest::Client, url: &str, email: &str) -> anyhow::Result<()> {
    let page = client.get(format!("{url}/auth/login")).send().await?;
    let cookie = page.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let csrf = cookie
        .split_once('=')
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    let response = client
        .post(format!("{url}/auth/login"))
        .header("cookie", cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 303,
        "login answered {}",
        response.status()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args[1].trim_end_matches('/').to_owned();
    let logins: usize = args.get(2).map_or(Ok(400), |a| a.parse())?;
    let concurrency: usize = args.get(3).map_or(Ok(2), |a| a.parse())?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let email = format!("bench{}@example.com", std::process::id());
    let signup = client
        .post(format!("{url}/auth/signup"))
        .json(&json!({ "email": email, "name": "bench", "password": PASSWORD }))
        .send()
        .await?;
    anyhow::ensure!(
        signup.status() == 201,
        "sign-up answered {}",
        signup.status()
    );

    // The anchor: argon2id verification alone, `concurrency` at a time too.
    let hash = Argon2::default()
        .hash_password(PASSWORD.as_bytes())
        .map_err(anyhow::Error::msg)?
        .to_string();
    let anchor = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (hash, anchor) = (hash.clone(), anchor.clone());
            std::thread::spawn(move || {
                for _ in 0..logins / concurrency {
                    let t = Instant::now();
                    Argon2::default()
                        .verify_password(PASSWORD.as_bytes(), hash.as_str())
                        .expect("verifies");
                    anchor.lock().unwrap().push(t.elapsed());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("an anchor thread");
    }
    let anchor_rate = (logins / concurrency * concurrency) as f64 / started.elapsed().as_secs_f64();

    // Logins through the gateway.
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, email, latencies) = (
                client.clone(),
                url.clone(),
                email.clone(),
                latencies.clone(),
            );
            tokio::spawn(async move {
                for _ in 0..logins / concurrency {
                    let t = Instant::now();
                    login(&client, &url, &email).await?;
                    latencies.lock().unwrap().push(t.elapsed());
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let rate = (logins / concurrency * concurrency) as f64 / started.elapsed().as_secs_f64();
    report_logins(concurrency, anchor, anchor_rate, latencies, rate);
    if let (Some(id), Some(secret)) = (args.get(4), args.get(5)) {
        let tokens: usize = args.get(6).map_or(Ok(5000), |a| a.parse())?;
        client_credentials(&client, &url, id, secret, tokens, concurrency).await?;
    }
    Ok(())
}

fn report_logins(
    concurrency: usize,
    anchor: Arc<Mutex<Vec<Duration>>>,
    anchor_rate: f64,
    latencies: Arc<Mutex<Vec<Duration>>>,
    rate: f64,
) {
    let mut anchor = anchor.lock().unwrap().clone();
    let mut latencies = latencies.lock().unwrap().clone();
    anchor.sort();
    latencies.sort();
    let (a50, a99) = (percentile(&anchor, 0.5), percentile(&anchor, 0.99));
    let (l50, l99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!("argon2id m=19456 KiB t=2 p=1, {concurrency} at a time");
    println!(
        "  verify alone : {anchor_rate:7.1}/s  p50 {:7.2} ms  p99 {:7.2} ms",
        ms(a50),
        ms(a99)
    );
    println!(
        "  login        : {rate:7.1}/s  p50 {:7.2} ms  p99 {:7.2} ms",
        ms(l50),
        ms(l99)
    );
    println!(
        "  login / verify: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
        rate / anchor_rate,
        ms(l50) / ms(a50),
        ms(l99) / ms(a99)
    );
}

/// `tokens` client_credentials requests, `concurrency` at a time, next to
/// signing the same access token alone.
async fn client_credentials(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    secret: &str,
    tokens: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use p256::pkcs8::EncodePrivateKey;
    let secret_key = p256::SecretKey::from_slice(&[7u8; 32]).map_err(anyhow::Error::msg)?;
    let der = secret_key.to_pkcs8_der().map_err(anyhow::Error::msg)?;
    let key = EncodingKey::from_ec_der(der.as_bytes());
    let claims = json!({
        "iss": format!("{url}/auth"), "sub": id, "aud": "flotilla", "exp": 4_000_000_000u64,
        "iat": 1_700_000_000u64, "jti": "0", "client_id": id, "scope": "", "roles": [],
    });
    let per_thread = tokens / concurrency;
    let started = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (key, claims) = (key.clone(), claims.clone());
            std::thread::spawn(move || {
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some("bench".to_owned());
                for _ in 0..per_thread {
                    jsonwebtoken::encode(&header, &claims, &key).expect("signs");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a signing thread");
    }
    let anchor_rate = (per_thread * concurrency) as f64 / started.elapsed().as_secs_f64();

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, id, secret, latencies) = (
                client.clone(),
                url.to_owned(),
                id.to_owned(),
                secret.to_owned(),
                latencies.clone(),
            );
            tokio::spawn(async move {
                for _ in 0..per_thread {
                    let t = Instant::now();
                    let response = client
                        .post(format!("{url}/auth/token"))
                        .basic_auth(&id, Some(&secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await?;
                    anyhow::ensure!(
                        response.status() == 200,
                        "token answered {}",
                        response.status()
                    );
                    response.bytes().await?;
                    latencies.lock().unwrap().push(t.elapsed());
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let rate = (per_thread * concurrency) as f64 / started.elapsed().as_secs_f64();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    println!("client_credentials, {concurrency} at a time");
    println!("  ES256 signing alone: {anchor_rate:8.1}/s");
    println!(
        "  tokens             : {rate:8.1}/s  p50 {:6.2} ms  p99 {:6.2} ms  ({:.3}x of signing alone)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        rate / anchor_rate
    );
    Ok(())
}
