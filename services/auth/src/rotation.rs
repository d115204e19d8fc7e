//! When signing keys are made, sign, and are retired: pure decisions over
//! the stored keys and `now`, which every instance takes alike.
//!
//! A key is published as soon as an instance reads it, and signs only once
//! it is `lead` old: by then every instance has read it (one reload
//! interval) and a verifier that cached the JWKS just before has fetched it
//! again (the JWKS's max-age). The newest key that old signs. The key before
//! it stopped signing when it came of age, give or take an instance that
//! had not reloaded yet (one reload interval more), and its last tokens live
//! the longest token lifetime: it stays published for that `tail`, then it
//! is deleted, private half and all.

use std::time::Duration;

/// How long verifiers may cache the JWKS: the `max-age` of `/jwks.json`
/// (oidc.rs).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// The longest a token this service signs lives.
const MAX_TOKEN_LIFETIME: Duration =
    if crate::token::ACCESS_TTL.as_secs() > crate::token::ID_TTL.as_secs() {
        crate::token::ACCESS_TTL
    } else {
        crate::token::ID_TTL
    };

/// A stored key: its id and when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub kid: String,
    pub at_ms: i64,
}

/// What one look at the stored keys decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The key that signs.
    pub signer: String,
    /// The keys in the JWKS, the signer among them, oldest first.
    pub published: Vec<String>,
    /// Keys past their window: out of the JWKS, to be deleted.
    pub expired: Vec<String>,
    /// Whether the newest key is old enough for a new one to be made.
    pub rotate: bool,
}

/// The periods the decisions follow, from the service's settings.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    rotate_after_ms: i64,
    reload_ms: i64,
}

impl Schedule {
    /// A new key every `rotate_after`, each instance reading the keys
    /// again every `reload`.
    pub fn new(rotate_after: Duration, reload: Duration) -> Self {
        Self {
            rotate_after_ms: ms(rotate_after),
            reload_ms: ms(reload),
        }
    }

    /// How often an instance reads the keys again.
    pub fn reload(&self) -> Duration {
        Duration::from_millis(self.reload_ms as u64)
    }

    /// Rotation is due for a newest key made before this.
    pub fn rotate_before_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.rotate_after_ms)
    }

    /// How long a key is published before it signs.
    fn lead_ms(&self) -> i64 {
        self.reload_ms.saturating_add(ms(JWKS_MAX_AGE))
    }

    /// How long a key stays published once another one signs.
    fn tail_ms(&self) -> i64 {
        self.reload_ms.saturating_add(ms(MAX_TOKEN_LIFETIME))
    }

    /// The decisions for `keys` at `now_ms`, or none without keys. Keys are
    /// ordered by when they were made, then by kid, so that two made at the
    /// same moment are ordered alike everywhere. The newest key at least
    /// `lead` old signs; when none is (the first key, just made), the
    /// oldest does, which has been published longest.
    pub fn plan(&self, keys: &[Made], now_ms: i64) -> Option<Plan> {
        let mut keys: Vec<&Made> = keys.iter().collect();
        keys.sort_by(|a, b| (a.at_ms, &a.kid).cmp(&(b.at_ms, &b.kid)));
        let signs_from = |key: &Made| key.at_ms.saturating_add(self.lead_ms());
        let signer = keys
            .iter()
            .rposition(|key| signs_from(key) <= now_ms)
            .unwrap_or(0);
        let mut published = Vec::new();
        let mut expired = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            // A key before the signer stopped signing when the next one
            // started.
            let retired =
                at < signer && now_ms >= signs_from(keys[at + 1]).saturating_add(self.tail_ms());
            if retired {
                expired.push(key.kid.clone());
            } else {
                published.push(key.kid.clone());
            }
        }
        let newest = keys.last()?;
        Some(Plan {
            signer: keys[signer].kid.clone(),
            published,
            expired,
            rotate: newest.at_ms <= self.rotate_before_ms(now_ms),
        })
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MINUTE;

    /// Thirty days, reloading every minute: a key signs six minutes after
    /// it is made (one minute, and the JWKS's five), and stays published
    /// eleven minutes after the next one signs (one minute, and ten of
    /// token lifetime).
    fn schedule() -> Schedule {
        Schedule::new(Duration::from_secs(30 * 24 * 3600), Duration::from_secs(60))
    }

    fn made(kid: &str, at_ms: i64) -> Made {
        Made {
            kid: kid.to_owned(),
            at_ms,
        }
    }

    fn plan(keys: &[Made], now_ms: i64) -> Plan {
        schedule().plan(keys, now_ms).expect("keys")
    }

    #[test]
    fn without_keys_there_is_nothing_to_decide() {
        assert_eq!(schedule().plan(&[], 0), None);
    }

    #[test]
    fn the_first_key_signs_at_once() {
        let plan = plan(&[made("a", 1000)], 1000);
        assert_eq!(plan.signer, "a");
        assert_eq!(plan.published, ["a"]);
        assert!(plan.expired.is_empty() && !plan.rotate);
    }

    #[test]
    fn a_new_key_is_published_six_minutes_before_it_signs() {
        let keys = [made("old", 0), made("new", 100 * DAY)];
        let before = plan(&keys, 100 * DAY + 6 * MINUTE - 1);
        assert_eq!(before.signer, "old");
        assert_eq!(before.published, ["old", "new"]);
        let after = plan(&keys, 100 * DAY + 6 * MINUTE);
        assert_eq!(after.signer, "new");
        assert_eq!(after.published, ["old", "new"]);
    }

    #[test]
    fn a_retired_key_stays_published_eleven_minutes_after_the_next_one_signs() {
        let keys = [made("old", 0), made("new", 100 * DAY)];
        let signs_from = 100 * DAY + 6 * MINUTE;
        let last = plan(&keys, signs_from + 11 * MINUTE - 1);
        assert_eq!(last.published, ["old", "new"]);
        assert!(last.expired.is_empty());
        let gone = plan(&keys, signs_from + 11 * MINUTE);
        assert_eq!(gone.signer, "new");
        assert_eq!(gone.published, ["new"]);
        assert_eq!(gone.expired, ["old"]);
    }

    #[test]
    fn keys_rotated_in_quick_succession_each_stay_while_their_tokens_live() {
        let keys = [
            made("old", 0),
            made("middle", DAY),
            made("new", DAY + MINUTE),
        ];
        assert_eq!(plan(&keys, DAY + 6 * MINUTE).signer, "middle");
        let one_gone = plan(&keys, DAY + 17 * MINUTE);
        assert_eq!(one_gone.signer, "new");
        assert_eq!(one_gone.published, ["middle", "new"]);
        assert_eq!(one_gone.expired, ["old"]);
        let both_gone = plan(&keys, DAY + 18 * MINUTE);
        assert_eq!(both_gone.published, ["new"]);
        assert_eq!(both_gone.expired, ["old", "middle"]);
    }

    #[test]
    fn keys_made_at_the_same_moment_are_chosen_alike_everywhere() {
        // Two instances rotating at once: the greater kid signs, whatever
        // the order the keys are read in.
        let one = [made("old", 0), made("b", DAY), made("a", DAY)];
        let other = [made("a", DAY), made("old", 0), made("b", DAY)];
        let now = DAY + 6 * MINUTE;
        assert_eq!(plan(&one, now), plan(&other, now));
        assert_eq!(plan(&one, now).signer, "b");
        assert_eq!(plan(&one, now).published, ["old", "a", "b"]);
        // Two first keys: the one published first by either signs at once.
        assert_eq!(plan(&[made("b", 5), made("a", 5)], 5).signer, "a");
    }

    #[test]
    fn rotation_is_due_when_the_newest_key_is_as_old_as_the_period() {
        let keys = [made("old", 0), made("new", 10 * DAY)];
        assert!(!plan(&keys, 40 * DAY - 1).rotate);
        assert!(plan(&keys, 40 * DAY).rotate);
    }
}
