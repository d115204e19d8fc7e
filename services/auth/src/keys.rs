//! The signing key: ES256 (P-256), made once and kept in the database so
//! that every instance signs with it and its tokens outlive restarts; its
//! public half is published as a JWK with its `kid`.

use anyhow::Context as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use sqlx::AnyPool;

/// The key tokens are signed with, and the set verifiers fetch.
#[derive(Clone)]
pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    set: JwkSet,
}

impl Keys {
    /// The newest key in `db`, made if there is none. Instances starting
    /// together may each make one; all are published, the newest signs.
    pub async fn load_or_create(db: &AnyPool) -> anyhow::Result<Self> {
        if newest(db).await?.is_none() {
            let (kid, der) = generate()?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, pkcs8_der, created_at_ms) VALUES ($1, $2, $3)",
            )
            .bind(&kid)
            .bind(crate::session::hex(&der))
            .bind(flotilla_kit::now_ms())
            .execute(db)
            .await
            .context("cannot store the signing key")?;
        }
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT kid, pkcs8_der FROM signing_keys ORDER BY created_at_ms DESC, kid",
        )
        .fetch_all(db)
        .await
        .context("cannot read the signing keys")?;
        let mut keys = Vec::new();
        for (kid, der) in rows {
            let der = unhex(&der).context("a stored signing key is not hex")?;
            let encoding = EncodingKey::from_ec_der(&der);
            let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
                .context("a stored signing key is not a P-256 key")?;
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
            keys.push((kid, encoding, jwk));
        }
        let set = JwkSet {
            keys: keys.iter().map(|(_, _, jwk)| jwk.clone()).collect(),
        };
        let (kid, encoding, jwk) = keys.into_iter().next().context("no signing key")?;
        let decoding = DecodingKey::from_jwk(&jwk).context("the signing key's JWK")?;
        Ok(Self {
            kid,
            encoding,
            decoding,
            set,
        })
    }

    /// The public keys, for `jwks_uri`.
    pub fn set(&self) -> &JwkSet {
        &self.set
    }

    /// `claims` signed, with `typ` in the header (`JWT`, or `at+jwt` for an
    /// access token, as RFC 9068 asks).
    pub fn sign<T: serde::Serialize>(&self, typ: &str, claims: &T) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).context("cannot sign a token")
    }

    /// The claims of a token this service signed, checked: ES256 only, its
    /// signature, expiry, issuer and audience.
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
        let key = match header.kid.as_deref() {
            Some(kid) if kid == self.kid => self.decoding.clone(),
            Some(kid) => DecodingKey::from_jwk(self.set.find(kid)?).ok()?,
            None => return None,
        };
        jsonwebtoken::decode::<T>(token, &key, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

async fn newest(db: &AnyPool) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar("SELECT kid FROM signing_keys ORDER BY created_at_ms DESC LIMIT 1")
        .fetch_optional(db)
        .await
        .context("cannot read the signing keys")
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
