//! The signing keys: ES256 (P-256), kept in the database so that every
//! instance signs with the same key and tokens outlive restarts. Each
//! instance reads them again every reload interval, making a new key when
//! rotation is due and deleting retired ones (`rotation.rs` decides which);
//! every key still published is in the JWKS under its `kid`.

use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use flotilla_kit::{Context, now_ms};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use sqlx::AnyPool;

use crate::rotation::{Made, Schedule};

/// The keys tokens are signed with, and the set verifiers fetch; cheap to
/// clone, all clones seeing the keys last read.
#[derive(Clone)]
pub struct Keys {
    ring: Arc<ArcSwap<Ring>>,
    schedule: Schedule,
}

/// What an instance signs and verifies with, between two reads.
struct Ring {
    kid: String,
    encoding: EncodingKey,
    /// The published keys, to verify with.
    decoding: Vec<(String, DecodingKey)>,
    set: JwkSet,
}

impl Keys {
    /// The keys in `db`, the first one made if there is none.
    pub async fn load(db: &AnyPool, schedule: Schedule) -> anyhow::Result<Self> {
        let ring = read(db, &schedule, None).await?.context("no signing key")?;
        Ok(Self {
            ring: Arc::new(ArcSwap::from_pointee(ring)),
            schedule,
        })
    }

    /// Reads the keys again every reload interval until shutdown.
    pub async fn reload_until_shutdown(self, ctx: Context) {
        let mut every = tokio::time::interval(self.schedule.reload());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let current = self.ring.load_full();
            match read(&ctx.db, &self.schedule, Some(current.as_ref())).await {
                Ok(Some(ring)) => self.ring.store(Arc::new(ring)),
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot reload the signing keys"
                ),
            }
        }
    }

    /// The public keys, for `jwks_uri`.
    pub fn set(&self) -> JwkSet {
        self.ring.load().set.clone()
    }

    /// `claims` signed, with `typ` in the header (`JWT`, or `at+jwt` for an
    /// access token, as RFC 9068 asks).
    pub fn sign<T: serde::Serialize>(&self, typ: &str, claims: &T) -> anyhow::Result<String> {
        let ring = self.ring.load();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(ring.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &ring.encoding).context("cannot sign a token")
    }

    /// The claims of a token this service signed with a key it still
    /// publishes, checked: ES256 only, its signature, expiry, issuer and
    /// audience.
    pub fn verify<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Option<T> {
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        let ring = self.ring.load();
        let (_, key) = ring.decoding.iter().find(|(k, _)| *k == kid)?;
        jsonwebtoken::decode::<T>(token, key, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// Makes a new key now, whatever the schedule, and returns its kid: it is
/// published at each instance's next reload and signs once it is old
/// enough (`rotation.rs`).
pub async fn rotate(db: &AnyPool) -> anyhow::Result<String> {
    let (kid, der) = generate()?;
    sqlx::query("INSERT INTO signing_keys (kid, pkcs8_der, created_at_ms) VALUES ($1, $2, $3)")
        .bind(&kid)
        .bind(crate::session::hex(&der))
        .bind(now_ms())
        .execute(db)
        .await
        .context("cannot store the signing key")?;
    Ok(kid)
}

/// A stored key, private half included.
type Row = (String, String, i64);

/// Reads the stored keys, makes one if there is none or rotation is due,
/// deletes retired ones, and builds what to sign and verify with: none
/// when that is what `current` already has.
async fn read(
    db: &AnyPool,
    schedule: &Schedule,
    current: Option<&Ring>,
) -> anyhow::Result<Option<Ring>> {
    let now = now_ms();
    let mut rows = stored(db).await?;
    let mut plan = schedule.plan(&made(&rows), now);
    if plan.as_ref().is_none_or(|plan| plan.rotate) {
        // Instances that find rotation due together may each make one:
        // the statement makes none once a recent key exists, and the
        // schedule chooses among simultaneous ones alike everywhere.
        let (kid, der) = generate()?;
        let inserted = sqlx::query(
            "INSERT INTO signing_keys (kid, pkcs8_der, created_at_ms) \
             SELECT $1, $2, $3 WHERE NOT EXISTS \
             (SELECT 1 FROM signing_keys WHERE created_at_ms > $4)",
        )
        .bind(&kid)
        .bind(crate::session::hex(&der))
        .bind(now)
        .bind(schedule.rotate_before_ms(now))
        .execute(db)
        .await
        .context("cannot store the signing key")?;
        if inserted.rows_affected() > 0 {
            tracing::info!(kid, "made a new signing key");
        }
        rows = stored(db).await?;
        plan = schedule.plan(&made(&rows), now);
    }
    let plan = plan.context("no signing key")?;
    for kid in &plan.expired {
        // Out of the JWKS whether or not this succeeds; the next read
        // deletes it otherwise.
        let deleted = sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
            .bind(kid)
            .execute(db)
            .await;
        match deleted {
            Ok(_) => tracing::info!(kid, "deleted a retired signing key"),
            Err(error) => tracing::warn!(kid, %error, "cannot delete a retired signing key"),
        }
    }
    if let Some(current) = current {
        let kids: Vec<&str> = current.decoding.iter().map(|(k, _)| k.as_str()).collect();
        if current.kid == plan.signer && kids == plan.published {
            return Ok(None);
        }
    }
    let mut decoding = Vec::new();
    let mut jwks = Vec::new();
    let mut signer = None;
    for kid in &plan.published {
        let (_, der, _) = rows
            .iter()
            .find(|(k, _, _)| k == kid)
            .context("a planned key is stored")?;
        let der = unhex(der).context("a stored signing key is not hex")?;
        let encoding = EncodingKey::from_ec_der(&der);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .context("a stored signing key is not a P-256 key")?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        decoding.push((
            kid.clone(),
            DecodingKey::from_jwk(&jwk).context("a signing key's JWK")?,
        ));
        jwks.push(jwk);
        if *kid == plan.signer {
            signer = Some(encoding);
        }
    }
    if current.is_none_or(|current| current.kid != plan.signer) {
        tracing::info!(kid = plan.signer, "signing with this key");
    }
    Ok(Some(Ring {
        encoding: signer.context("the signer is published")?,
        kid: plan.signer,
        decoding,
        set: JwkSet { keys: jwks },
    }))
}

async fn stored(db: &AnyPool) -> anyhow::Result<Vec<Row>> {
    sqlx::query_as("SELECT kid, pkcs8_der, created_at_ms FROM signing_keys")
        .fetch_all(db)
        .await
        .context("cannot read the signing keys")
}

fn made(rows: &[Row]) -> Vec<Made> {
    rows.iter()
        .map(|(kid, _, at_ms)| Made {
            kid: kid.clone(),
            at_ms: *at_ms,
        })
        .collect()
}

/// A new P-256 key: its id and its PKCS #8 DER.
fn generate() -> anyhow::Result<(String, Vec<u8>)> {
    // 32 random bytes are a valid scalar but for a chance of about 2^-128.
    let secret = loop {
        if let Ok(secret) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
            break secret;
        }
    };
    let der = secret
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("cannot encode the signing key: {e}"))?;
    let kid = uuid::Uuid::now_v7().simple().to_string();
    Ok((kid, der.as_bytes().to_vec()))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
