//! The instances of one service: which one takes the next request
//! (balancing), which ones are out (health checks and passive ejection), and
//! how many retries the service can still afford (the retry budget).

use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed,
};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::RngExt;

use crate::config::{Balance, HealthConfig, RetryConfig, Timeouts};
use crate::early::Connector;
use crate::reply::Body;
use crate::stats::InstanceStats;

/// The pooled keep-alive client to one service's instances.
pub type Client = hyper_util::client::legacy::Client<Connector, Body>;

/// Milliseconds since the gateway started; the clock of ejections, retry
/// budgets, registrations and rate limits. Tokio's clock, so that tests can
/// pause and advance it.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<tokio::time::Instant> = OnceLock::new();
    EPOCH
        .get_or_init(tokio::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// One upstream instance.
pub struct Instance {
    /// `http://host:port`, as configured or resolved.
    pub url: String,
    pub authority: Authority,
    /// The value of the sticky cookie that selects this instance.
    pub id: String,
    pub weight: u32,
    healthy: AtomicBool,
    checks_passed: AtomicU32,
    checks_failed: AtomicU32,
    failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until: AtomicU64,
    /// Requests in flight, for least-connections.
    pub active: AtomicUsize,
    pub stats: InstanceStats,
}

impl Instance {
    pub fn new(url: &str, weight: u32) -> Option<Self> {
        let authority: Authority = url
            .strip_prefix("http://")?
            .trim_end_matches('/')
            .parse()
            .ok()?;
        Some(Self {
            url: format!("http://{authority}"),
            id: cookie_id(authority.as_str()),
            authority,
            weight: weight.max(1),
            healthy: AtomicBool::new(true),
            checks_passed: AtomicU32::new(0),
            checks_failed: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            stats: InstanceStats::default(),
        })
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    pub fn ejected(&self) -> bool {
        now_ms() < self.ejected_until.load(Relaxed)
    }

    pub fn available(&self) -> bool {
        self.healthy() && !self.ejected()
    }

    /// Records an active check; returns true when the health changed.
    pub fn check_result(&self, passed: bool, health: &HealthConfig) -> bool {
        if passed {
            self.checks_failed.store(0, Relaxed);
            let streak = self.checks_passed.fetch_add(1, Relaxed) + 1;
            streak >= health.rise && !self.healthy.swap(true, Relaxed)
        } else {
            self.checks_passed.store(0, Relaxed);
            let streak = self.checks_failed.fetch_add(1, Relaxed) + 1;
            streak >= health.fall && self.healthy.swap(false, Relaxed)
        }
    }
}

/// A short, stable id for the sticky cookie (FNV-1a of the address), so
/// that cookies survive restarts of the gateway.
fn cookie_id(authority: &str) -> String {
    let hash = authority.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// How a pool behaves; shared by its routes and replaced on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub balance: Balance,
    pub health: HealthConfig,
    pub timeouts: Timeouts,
    pub retries: RetryConfig,
}

/// The instances of one service.
pub struct Pool {
    pub service: String,
    instances: ArcSwap<Vec<Arc<Instance>>>,
    /// Instance indices in smooth weighted round-robin order.
    schedule: ArcSwap<Vec<usize>>,
    next: AtomicUsize,
    pub config: ArcSwap<PoolConfig>,
    client: ArcSwap<Client>,
    budget: RetryBudget,
    retries: AtomicU64,
}

impl Pool {
    pub fn new(service: &str, config: PoolConfig) -> Self {
        Self {
            service: service.to_owned(),
            instances: ArcSwap::from_pointee(Vec::new()),
            schedule: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            client: ArcSwap::from_pointee(client(&config.timeouts)),
            budget: RetryBudget::new(&config.retries),
            retries: AtomicU64::new(0),
            config: ArcSwap::from_pointee(config),
        }
    }

    pub fn client(&self) -> Arc<Client> {
        self.client.load_full()
    }

    pub fn instances(&self) -> Arc<Vec<Arc<Instance>>> {
        self.instances.load_full()
    }

    pub fn configure(&self, config: PoolConfig) {
        let current = self.config.load();
        if current.timeouts != config.timeouts {
            self.client.store(Arc::new(client(&config.timeouts)));
        }
        if **current != config {
            self.budget.configure(&config.retries);
            self.config.store(Arc::new(config));
        }
    }

    /// Replaces the instance set, keeping the state of instances that stay.
    pub fn set_instances(&self, wanted: &[(String, u32)]) {
        let current = self.instances.load();
        let same = current.len() == wanted.len()
            && current
                .iter()
                .zip(wanted)
                .all(|(i, (url, w))| &i.url == url && i.weight == *w);
        if same {
            return;
        }
        let instances: Vec<Arc<Instance>> = wanted
            .iter()
            .filter_map(|(url, weight)| {
                current
                    .iter()
                    .find(|i| &i.url == url && i.weight == *weight)
                    .cloned()
                    .or_else(|| Instance::new(url, *weight).map(Arc::new))
            })
            .collect();
        let weights: Vec<u32> = instances.iter().map(|i| i.weight).collect();
        self.schedule.store(Arc::new(smooth_weighted(&weights)));
        self.instances.store(Arc::new(instances));
    }

    /// The instance for the next attempt: not in `tried`, available if any
    /// is, and the one named by `sticky` when it can take it.
    pub fn pick(&self, sticky: Option<&str>, tried: &[usize]) -> Option<(usize, Arc<Instance>)> {
        let instances = self.instances.load();
        let n = instances.len();
        if n == 0 {
            return None;
        }
        let usable = |i: usize| !tried.contains(&i) && instances[i].available();
        let config = self.config.load();
        if config.balance == Balance::Sticky
            && let Some(id) = sticky
            && let Some(i) = instances.iter().position(|inst| inst.id == id)
            && usable(i)
        {
            return Some((i, instances[i].clone()));
        }
        let chosen = match config.balance {
            Balance::LeastConn => self.least_conn(&instances, &usable),
            Balance::Weighted => {
                let schedule = self.schedule.load();
                let start = self.next.fetch_add(1, Relaxed);
                (0..schedule.len())
                    .map(|k| schedule[(start + k) % schedule.len()])
                    .find(|&i| usable(i))
            }
            Balance::RoundRobin | Balance::Sticky => {
                let start = self.next.fetch_add(1, Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
            }
        };
        // With every instance out, try one anyway rather than fail outright.
        let chosen = chosen.or_else(|| {
            let start = self.next.fetch_add(1, Relaxed);
            (0..n).map(|k| (start + k) % n).find(|i| !tried.contains(i))
        })?;
        Some((chosen, instances[chosen].clone()))
    }

    /// Power of two choices: the less busy of two random usable instances.
    fn least_conn(
        &self,
        instances: &[Arc<Instance>],
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let candidates: Vec<usize> = (0..instances.len()).filter(|&i| usable(i)).collect();
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            len => {
                let mut rng = rand::rng();
                let a = candidates[rng.random_range(0..len)];
                let mut b = candidates[rng.random_range(0..len - 1)];
                if b == a {
                    b = candidates[len - 1];
                }
                let (la, lb) = (
                    instances[a].active.load(Relaxed),
                    instances[b].active.load(Relaxed),
                );
                Some(if lb < la { b } else { a })
            }
        }
    }

    pub fn report_success(&self, instance: &Instance) {
        if instance.failures.load(Relaxed) != 0 {
            instance.failures.store(0, Relaxed);
        }
        if instance.ejections.load(Relaxed) != 0 && !instance.ejected() {
            instance.ejections.store(0, Relaxed);
        }
    }

    /// Records a failed attempt; ejects the instance at once for a
    /// connection error, or after enough failures in a row.
    pub fn report_failure(&self, instance: &Instance, connect_error: bool) {
        let config = self.config.load();
        let failures = instance.failures.fetch_add(1, Relaxed) + 1;
        if (connect_error || failures >= config.retries.eject_after) && !instance.ejected() {
            let ejections = instance.ejections.fetch_add(1, Relaxed);
            let backoff = config
                .retries
                .eject_base_ms
                .saturating_mul(1 << ejections.min(6))
                .min(60_000);
            instance.ejected_until.store(now_ms() + backoff, Relaxed);
            instance.failures.store(0, Relaxed);
            instance.stats.ejections.fetch_add(1, Relaxed);
            tracing::warn!(service = %self.service, instance = %instance.url, backoff_ms = backoff, "instance ejected");
        }
    }

    /// Counts a request toward the retry budget.
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    /// Whether one more retry fits in the budget; takes it if so.
    pub fn withdraw_retry(&self) -> bool {
        let allowed = self.budget.withdraw();
        if allowed {
            self.retries.fetch_add(1, Relaxed);
        }
        allowed
    }

    /// Retries made so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }
}

pub(crate) fn client(timeouts: &Timeouts) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_millis(timeouts.connect_ms)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(Connector(connector))
}

/// Indices in nginx's smooth weighted round-robin order: weights 5,1,1 give
/// a a b a c a a rather than a a a a a b c.
fn smooth_weighted(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0_i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
            .expect("non-empty");
        current[best] -= total;
        order.push(best);
    }
    order
}

/// Retries allowed: a share of the requests plus a small floor per second,
/// so that retries cannot multiply the load on a failing service.
struct RetryBudget {
    /// Thousandths of a retry.
    balance: AtomicI64,
    per_request: AtomicI64,
    per_second: AtomicI64,
    last_refill_ms: AtomicU64,
}

/// At most this many retries (in thousandths) can be saved up.
const BUDGET_CAP: i64 = 100_000;

impl RetryBudget {
    fn new(config: &RetryConfig) -> Self {
        let budget = Self {
            balance: AtomicI64::new(0),
            per_request: AtomicI64::new(0),
            per_second: AtomicI64::new(0),
            last_refill_ms: AtomicU64::new(now_ms()),
        };
        budget.configure(config);
        budget
            .balance
            .store(budget.per_second.load(Relaxed), Relaxed);
        budget
    }

    fn configure(&self, config: &RetryConfig) {
        self.per_request
            .store((config.budget_ratio * 1000.0) as i64, Relaxed);
        self.per_second
            .store(i64::from(config.budget_min_per_second) * 1000, Relaxed);
    }

    fn deposit(&self) {
        let before = self
            .balance
            .fetch_add(self.per_request.load(Relaxed), Relaxed);
        if before > BUDGET_CAP {
            self.balance.store(BUDGET_CAP, Relaxed);
        }
    }

    fn withdraw(&self) -> bool {
        let now = now_ms();
        let last = self.last_refill_ms.load(Relaxed);
        if now >= last + 1000
            && self
                .last_refill_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            let elapsed = ((now - last) / 1000) as i64;
            let refill = self.per_second.load(Relaxed) * elapsed;
            let before = self.balance.fetch_add(refill, Relaxed);
            if before + refill > BUDGET_CAP {
                self.balance.store(BUDGET_CAP, Relaxed);
            }
        }
        if self.balance.fetch_sub(1000, Relaxed) >= 1000 {
            true
        } else {
            self.balance.fetch_add(1000, Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: Balance, urls: &[(&str, u32)]) -> Pool {
        let pool = Pool::new(
            "s",
            PoolConfig {
                balance,
                health: HealthConfig::default(),
                timeouts: Timeouts::default(),
                retries: RetryConfig::default(),
            },
        );
        let wanted: Vec<(String, u32)> = urls.iter().map(|(u, w)| ((*u).to_owned(), *w)).collect();
        pool.set_instances(&wanted);
        pool
    }

    fn picks(pool: &Pool, n: usize) -> Vec<usize> {
        (0..n).map(|_| pool.pick(None, &[]).unwrap().0).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejection_lasts_its_back_off_which_doubles_while_failures_go_on() {
        let p = pool(
            Balance::RoundRobin,
            &[("http://127.0.0.1:1", 1), ("http://127.0.0.1:2", 1)],
        );
        let base = RetryConfig::default().eject_base_ms;
        let first = p.instances()[0].clone();
        let step = |ms| tokio::time::advance(Duration::from_millis(ms));

        p.report_failure(&first, true);
        assert!(first.ejected());
        assert_eq!(picks(&p, 3), [1, 1, 1]);
        step(base - 10).await;
        assert!(first.ejected());
        step(20).await;
        assert!(!first.ejected());

        // Failing again at once: out for twice as long.
        p.report_failure(&first, true);
        step(2 * base - 10).await;
        assert!(first.ejected());
        step(20).await;
        assert!(!first.ejected());

        // A success once back resets the back-off to its base.
        p.report_success(&first);
        p.report_failure(&first, true);
        step(base + 10).await;
        assert!(!first.ejected());

        // Errors other than refused connections eject after `eject_after` in a row.
        let after = RetryConfig::default().eject_after;
        for _ in 1..after {
            p.report_failure(&first, false);
        }
        assert!(!first.ejected());
        p.report_failure(&first, false);
        assert!(first.ejected());
    }

    #[test]
    fn smooth_weighted_interleaves() {
        assert_eq!(smooth_weighted(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted(&[1, 1]), [0, 1]);
    }

    #[tokio::test]
    async fn round_robin_skips_what_is_out() {
        let p = pool(
            Balance::RoundRobin,
            &[
                ("http://127.0.0.1:1", 1),
                ("http://127.0.0.1:2", 1),
                ("http://127.0.0.1:3", 1),
            ],
        );
        assert_eq!(picks(&p, 6), [0, 1, 2, 0, 1, 2]);
        let second = p.instances()[1].clone();
        p.report_failure(&second, true);
        assert!(picks(&p, 4).iter().all(|&i| i != 1));
        // A retry never goes back to an instance already tried.
        let (first, _) = p.pick(None, &[]).unwrap();
        let (retry, _) = p.pick(None, &[first]).unwrap();
        assert_ne!(first, retry);
    }

    #[tokio::test]
    async fn weighted_follows_weights() {
        let p = pool(
            Balance::Weighted,
            &[("http://127.0.0.1:1", 3), ("http://127.0.0.1:2", 1)],
        );
        let chosen = picks(&p, 400);
        assert_eq!(chosen.iter().filter(|&&i| i == 0).count(), 300);
    }

    #[tokio::test]
    async fn least_conn_prefers_the_idle_instance() {
        let p = pool(
            Balance::LeastConn,
            &[("http://127.0.0.1:1", 1), ("http://127.0.0.1:2", 1)],
        );
        p.instances()[0].active.store(10, Relaxed);
        assert!(picks(&p, 50).iter().all(|&i| i == 1));
    }

    #[tokio::test]
    async fn sticky_keeps_its_instance_while_it_is_available() {
        let p = pool(
            Balance::Sticky,
            &[("http://127.0.0.1:1", 1), ("http://127.0.0.1:2", 1)],
        );
        let id = p.instances()[1].id.clone();
        for _ in 0..5 {
            assert_eq!(p.pick(Some(&id), &[]).unwrap().0, 1);
        }
        let pinned = p.instances()[1].clone();
        p.report_failure(&pinned, true);
        assert_eq!(p.pick(Some(&id), &[]).unwrap().0, 0);
    }

    #[tokio::test]
    async fn every_instance_out_still_tries_one() {
        let p = pool(Balance::RoundRobin, &[("http://127.0.0.1:1", 1)]);
        let only = p.instances()[0].clone();
        p.report_failure(&only, true);
        assert_eq!(p.pick(None, &[]).unwrap().0, 0);
        assert!(p.pick(None, &[0]).is_none());
    }

    #[tokio::test]
    async fn retry_budget_is_a_share_of_requests() {
        let config = RetryConfig {
            budget_ratio: 0.1,
            budget_min_per_second: 0,
            ..RetryConfig::default()
        };
        let budget = RetryBudget::new(&config);
        assert!(!budget.withdraw());
        for _ in 0..100 {
            budget.deposit();
        }
        let allowed = (0..50).filter(|_| budget.withdraw()).count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn health_needs_rise_and_fall_in_a_row() {
        let instance = Instance::new("http://127.0.0.1:1", 1).unwrap();
        let health = HealthConfig::default();
        assert!(!instance.check_result(false, &health));
        assert!(instance.check_result(false, &health));
        assert!(!instance.healthy());
        assert!(!instance.check_result(true, &health));
        assert!(instance.check_result(true, &health));
        assert!(instance.healthy());
    }
}
