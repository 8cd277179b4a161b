//! The certificate cache: answers by (type, id) in a bounded `moka` cache, concurrent misses of
//! one key coalesced into one issuer call, and stale answers kept for when the issuer fails.
//!
//! An entry lives in moka for `ttl + stale_if_error` (found) or `not_found_ttl` (not found),
//! with its fetch time; whether it is fresh or only usable as stale is decided from its age
//! ([`Policy::state`]), so one entry serves both purposes. Fetch times and ages are read on
//! tokio's clock (`tokio::time::Instant`): in a gateway it is the system's monotonic clock, and
//! tests can pause and advance it. moka's own expiry keeps its own clock; it is the outer bound
//! (an entry of no use is gone), the policy decides within it.
//!
//! Coalescing is our own, not moka's `try_get_with`: moka only coalesces when the key is absent,
//! but an expired-yet-stale entry is present and must be refreshed by exactly one call too. The
//! first lookup of a key spawns the fetch as a task of its own (a caller that goes away cannot
//! cancel it for the others) and every concurrent lookup awaits the same shared result. The task
//! stores the answer before it leaves the in-flight table, so a later lookup finds either the
//! fetch or the entry.
//!
//! Invalidation bumps an epoch and forgets in-flight fetches of the key: a fetch that started
//! before an invalidation may still answer its own waiters, but never stores its answer, so the
//! next lookup goes to the issuer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use moka::Expiry;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::CertificateCacheSettings;
use crate::problem::ExchangeError;
use xgate_core::domain::CertificateType;

/// A cache key: the certificate type and the (checked) id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The type.
    pub certificate_type: CertificateType,
    /// The id, already checked against the type's `id_format`.
    pub id: Arc<str>,
}

/// A record the issuer answered, in the shared layout, validated.
#[derive(Debug)]
pub struct SharedRecord {
    /// The record.
    pub value: Value,
    /// The record serialized, served as is to callers without a format for its schema.
    pub bytes: Bytes,
}

/// What the issuer said about an id.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The certificate.
    Found(Arc<SharedRecord>),
    /// The issuer has no certificate with this id.
    NotFound,
}

/// A cached answer with the time it was fetched.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The answer.
    pub answer: Answer,
    /// When the issuer gave it.
    pub fetched_at: Instant,
}

impl CacheEntry {
    /// An answer fetched now.
    pub fn now(answer: Answer) -> CacheEntry {
        CacheEntry {
            answer,
            fetched_at: Instant::now(),
        }
    }

    /// How old the answer is at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.fetched_at)
    }
}

/// How an entry may be used at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Served without asking the issuer.
    Fresh,
    /// Served only when the issuer fails.
    Stale,
    /// Of no use.
    Expired,
}

/// The cache's timing rules, from `[certificates]`.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Freshness of a found certificate.
    pub ttl: Duration,
    /// Freshness of a not-found answer (it is never served stale).
    pub not_found_ttl: Duration,
    /// How long past `ttl` a found certificate may stand in for a failing issuer.
    pub stale_if_error: Duration,
}

impl Policy {
    /// The state of `entry` at `now` (pure).
    pub fn state(&self, entry: &CacheEntry, now: Instant) -> State {
        let age = entry.age(now);
        match entry.answer {
            Answer::Found(_) if age < self.ttl => State::Fresh,
            Answer::Found(_) if age < self.ttl.saturating_add(self.stale_if_error) => State::Stale,
            Answer::NotFound if age < self.not_found_ttl => State::Fresh,
            _ => State::Expired,
        }
    }

    /// How long moka keeps an entry: as long as it can be of any use.
    fn lifetime(&self, answer: &Answer) -> Duration {
        match answer {
            Answer::Found(_) => self.ttl.saturating_add(self.stale_if_error),
            Answer::NotFound => self.not_found_ttl,
        }
    }
}

impl Expiry<CacheKey, CacheEntry> for Policy {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        entry: &CacheEntry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.lifetime(&entry.answer))
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        entry: &CacheEntry,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.lifetime(&entry.answer))
    }
}

/// How a lookup was answered.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A fresh entry.
    Hit(CacheEntry),
    /// A fresh answer from the issuer.
    Miss(CacheEntry),
    /// The issuer failed with this error; an entry inside the stale window stands in.
    Stale(CacheEntry, ExchangeError),
    /// The issuer failed and nothing stands in.
    Failed(ExchangeError),
}

/// The shared result of one issuer call.
type Fetch = Shared<BoxFuture<'static, Result<CacheEntry, ExchangeError>>>;

struct InFlight {
    fetch: Fetch,
    /// Tells this fetch apart from a later one of the same key.
    generation: u64,
}

struct Inner {
    entries: moka::future::Cache<CacheKey, CacheEntry>,
    in_flight: Mutex<HashMap<CacheKey, InFlight>>,
    /// Bumped by every invalidation; a fetch stores its answer only if it did not change.
    epoch: AtomicU64,
    generations: AtomicU64,
    policy: Policy,
}

/// The certificate cache (cheap to clone: it is shared).
#[derive(Clone)]
pub struct CertificateCache {
    inner: Arc<Inner>,
}

impl CertificateCache {
    /// An empty cache bounded by `settings.capacity` entries.
    pub fn new(settings: &CertificateCacheSettings) -> CertificateCache {
        let policy = Policy {
            ttl: settings.ttl,
            not_found_ttl: settings.not_found_ttl,
            stale_if_error: settings.stale_if_error,
        };
        let entries = moka::future::Cache::builder()
            .max_capacity(settings.capacity)
            .expire_after(policy)
            .support_invalidation_closures()
            .build();
        CertificateCache {
            inner: Arc::new(Inner {
                entries,
                in_flight: Mutex::new(HashMap::new()),
                epoch: AtomicU64::new(0),
                generations: AtomicU64::new(0),
                policy,
            }),
        }
    }

    /// Answers `key` from a fresh entry, or by `fetch` — run at most once at a time per key,
    /// whatever the number of concurrent lookups — falling back to a stale entry when it fails.
    /// `fetch` is dropped unpolled when another lookup's fetch of the key is already running.
    pub async fn lookup<F>(&self, key: CacheKey, fetch: F) -> Lookup
    where
        F: Future<Output = Result<Answer, ExchangeError>> + Send + 'static,
    {
        let current = self.inner.entries.get(&key).await;
        if let Some(entry) = &current
            && self.inner.policy.state(entry, Instant::now()) == State::Fresh
        {
            return Lookup::Hit(entry.clone());
        }
        match self.fetch_once(key, fetch).await {
            Ok(entry) => Lookup::Miss(entry),
            Err(error) => match current {
                Some(entry)
                    if matches!(entry.answer, Answer::Found(_))
                        && self.inner.policy.state(&entry, Instant::now()) != State::Expired =>
                {
                    Lookup::Stale(entry, error)
                }
                _ => Lookup::Failed(error),
            },
        }
    }

    /// Joins the running fetch of `key`, or starts `fetch` as the one.
    async fn fetch_once<F>(&self, key: CacheKey, fetch: F) -> Result<CacheEntry, ExchangeError>
    where
        F: Future<Output = Result<Answer, ExchangeError>> + Send + 'static,
    {
        let shared = {
            let mut in_flight = self.in_flight();
            match in_flight.get(&key) {
                Some(running) => running.fetch.clone(),
                None => {
                    let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
                    let epoch = self.inner.epoch.load(Ordering::SeqCst);
                    let inner = self.inner.clone();
                    let task_key = key.clone();
                    // The lock is held while spawning, so the task cannot leave the table
                    // before it has been entered there.
                    let task = tokio::spawn(async move {
                        let result = fetch.await.map(CacheEntry::now);
                        if let Ok(entry) = &result {
                            inner.store(&task_key, entry, epoch).await;
                        }
                        inner.forget(&task_key, generation);
                        result
                    });
                    let fetch: Fetch = async move {
                        task.await.unwrap_or_else(|error| {
                            tracing::error!(%error, "a certificate fetch task failed");
                            Err(ExchangeError::Internal)
                        })
                    }
                    .boxed()
                    .shared();
                    in_flight.insert(
                        key,
                        InFlight {
                            fetch: fetch.clone(),
                            generation,
                        },
                    );
                    fetch
                }
            }
        };
        shared.await
    }

    fn in_flight(&self) -> MutexGuard<'_, HashMap<CacheKey, InFlight>> {
        self.inner.in_flight()
    }

    /// Drops one certificate: the next lookup of it asks the issuer.
    pub async fn invalidate(&self, key: &CacheKey) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        self.in_flight().remove(key);
        self.inner.entries.invalidate(key).await;
    }

    /// Drops every certificate of a type.
    pub(crate) fn invalidate_type(&self, certificate_type: &CertificateType) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        self.in_flight()
            .retain(|key, _| key.certificate_type != *certificate_type);
        let certificate_type = certificate_type.clone();
        let registered = self
            .inner
            .entries
            .invalidate_entries_if(move |key, _| key.certificate_type == certificate_type);
        if let Err(error) = registered {
            // Invalidation closures are enabled at build time, so this does not happen; if it
            // did, dropping everything is the safe way to honour the request.
            tracing::error!(%error, "dropping the whole certificate cache instead of one type");
            self.inner.entries.invalidate_all();
        }
    }

    /// Entries held (approximate until pending maintenance has run).
    pub fn entry_count(&self) -> u64 {
        self.inner.entries.entry_count()
    }

    /// Runs moka's pending maintenance (evictions, expirations, counts) now.
    pub async fn run_pending_tasks(&self) {
        self.inner.entries.run_pending_tasks().await;
    }

    /// Lookups currently waiting on an issuer call, over every key (for diagnostics and tests:
    /// a thousand concurrent lookups of one id show up here as a thousand waiters of one fetch).
    pub fn waiting_lookups(&self) -> usize {
        self.in_flight()
            .values()
            // The table holds one handle of each fetch itself.
            .map(|running| running.fetch.strong_count().unwrap_or(1).saturating_sub(1))
            .sum()
    }

    /// Issuer calls currently running.
    pub fn fetches_in_flight(&self) -> usize {
        self.in_flight().len()
    }
}

impl Inner {
    fn in_flight(&self) -> MutexGuard<'_, HashMap<CacheKey, InFlight>> {
        // The table stays consistent whatever panicked: every change is one insert or remove.
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores a fetched answer unless an invalidation happened since the fetch started.
    async fn store(&self, key: &CacheKey, entry: &CacheEntry, epoch: u64) {
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        self.entries.insert(key.clone(), entry.clone()).await;
        // An invalidation between the check and the insert has already run its own removal,
        // possibly before the insert: undo the insert.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.entries.invalidate(key).await;
        }
    }

    /// Leaves the in-flight table, unless an invalidation already removed this fetch (and a
    /// newer one may have taken its place).
    fn forget(&self, key: &CacheKey, generation: u64) {
        let mut in_flight = self.in_flight();
        if in_flight
            .get(key)
            .is_some_and(|running| running.generation == generation)
        {
            in_flight.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            ttl: Duration::from_secs(10),
            not_found_ttl: Duration::from_secs(2),
            stale_if_error: Duration::from_secs(100),
        }
    }

    fn found(fetched_at: Instant) -> CacheEntry {
        CacheEntry {
            answer: Answer::Found(Arc::new(SharedRecord {
                value: Value::Null,
                bytes: Bytes::from_static(b"null"),
            })),
            fetched_at,
        }
    }

    #[test]
    fn found_entries_are_fresh_then_stale_then_expired() {
        let start = Instant::now();
        let entry = found(start);
        let cases = [
            (0, State::Fresh),
            (9, State::Fresh),
            (10, State::Stale),
            (109, State::Stale),
            (110, State::Expired),
        ];
        for (seconds, expected) in cases {
            let now = start + Duration::from_secs(seconds);
            assert_eq!(policy().state(&entry, now), expected, "{seconds} s");
        }
    }

    #[test]
    fn not_found_entries_are_never_stale() {
        let start = Instant::now();
        let entry = CacheEntry {
            answer: Answer::NotFound,
            fetched_at: start,
        };
        assert_eq!(policy().state(&entry, start), State::Fresh);
        let later = start + Duration::from_secs(2);
        assert_eq!(policy().state(&entry, later), State::Expired);
    }

    fn settings() -> CertificateCacheSettings {
        CertificateCacheSettings {
            capacity: 100,
            ttl: Duration::from_secs(300),
            not_found_ttl: Duration::from_secs(300),
            stale_if_error: Duration::from_secs(300),
        }
    }

    fn key() -> CacheKey {
        CacheKey {
            certificate_type: CertificateType::parse("licence").unwrap(),
            id: "91350100M000100Y43".into(),
        }
    }

    /// A fetch that counts itself and answers once `release` fires.
    fn counted_fetch(
        calls: &Arc<AtomicU64>,
        release: tokio::sync::oneshot::Receiver<()>,
    ) -> impl Future<Output = Result<Answer, ExchangeError>> + Send + 'static {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            release.await.ok();
            Ok(Answer::NotFound)
        }
    }

    #[tokio::test]
    async fn a_fetch_that_started_before_an_invalidation_is_not_stored() {
        let cache = CertificateCache::new(&settings());
        let calls = Arc::new(AtomicU64::new(0));
        let (release, released) = tokio::sync::oneshot::channel();
        let lookup = tokio::spawn({
            let cache = cache.clone();
            let fetch = counted_fetch(&calls, released);
            async move { cache.lookup(key(), fetch).await }
        });
        while cache.fetches_in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        cache.invalidate(&key()).await;
        release.send(()).ok();
        assert!(matches!(lookup.await.unwrap(), Lookup::Miss(_)));
        assert_eq!(cache.fetches_in_flight(), 0);

        // Nothing was stored: the next lookup fetches again, and its answer is stored.
        let (release, released) = tokio::sync::oneshot::channel();
        release.send(()).ok();
        let refetched = cache.lookup(key(), counted_fetch(&calls, released)).await;
        assert!(matches!(refetched, Lookup::Miss(_)));
        let (_release, released) = tokio::sync::oneshot::channel();
        let stored = cache.lookup(key(), counted_fetch(&calls, released)).await;
        assert!(matches!(stored, Lookup::Hit(_)));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_without_an_entry_is_a_failure_and_stores_nothing() {
        let cache = CertificateCache::new(&settings());
        let failing = async { Err(ExchangeError::UpstreamUnavailable) };
        assert!(matches!(
            cache.lookup(key(), failing).await,
            Lookup::Failed(ExchangeError::UpstreamUnavailable)
        ));
        cache.run_pending_tasks().await;
        assert_eq!(cache.entry_count(), 0);
        assert_eq!(cache.fetches_in_flight(), 0);
    }

    /// A fetch that counts itself and gives `result` at once.
    fn answering(
        calls: &Arc<AtomicU64>,
        result: Result<Answer, ExchangeError>,
    ) -> impl Future<Output = Result<Answer, ExchangeError>> + Send + 'static {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            result
        }
    }

    fn record() -> Answer {
        found(Instant::now()).answer
    }

    // The expiry tests run on paused time: `advance` ages the entries, while moka's own clock
    // (the outer bound, `ttl + stale_if_error` of real time) stays far from their lifetime.

    #[tokio::test(start_paused = true)]
    async fn a_found_entry_is_a_hit_for_its_ttl_then_fetched_again() {
        let cache = CertificateCache::new(&settings());
        let calls = Arc::new(AtomicU64::new(0));
        let first = cache.lookup(key(), answering(&calls, Ok(record()))).await;
        assert!(matches!(first, Lookup::Miss(_)), "{first:?}");

        tokio::time::advance(Duration::from_secs(299)).await;
        match cache.lookup(key(), answering(&calls, Ok(record()))).await {
            Lookup::Hit(entry) => {
                assert_eq!(entry.age(Instant::now()), Duration::from_secs(299));
            }
            other => panic!("a hit at 299 s: {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_secs(1)).await;
        let refreshed = cache.lookup(key(), answering(&calls, Ok(record()))).await;
        assert!(matches!(refreshed, Lookup::Miss(_)), "{refreshed:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_not_found_answer_is_remembered_for_the_not_found_ttl() {
        let cache = CertificateCache::new(&CertificateCacheSettings {
            not_found_ttl: Duration::from_secs(60),
            ..settings()
        });
        let calls = Arc::new(AtomicU64::new(0));
        let first = cache
            .lookup(key(), answering(&calls, Ok(Answer::NotFound)))
            .await;
        assert!(matches!(first, Lookup::Miss(_)), "{first:?}");

        tokio::time::advance(Duration::from_secs(59)).await;
        let remembered = cache.lookup(key(), answering(&calls, Ok(record()))).await;
        assert!(
            matches!(
                &remembered,
                Lookup::Hit(CacheEntry {
                    answer: Answer::NotFound,
                    ..
                })
            ),
            "{remembered:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_secs(1)).await;
        let asked_again = cache
            .lookup(key(), answering(&calls, Ok(Answer::NotFound)))
            .await;
        assert!(matches!(asked_again, Lookup::Miss(_)), "{asked_again:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn past_its_ttl_an_entry_stands_in_for_a_failing_issuer_until_stale_if_error_ends() {
        let cache = CertificateCache::new(&settings());
        let calls = Arc::new(AtomicU64::new(0));
        let failing = || Err(ExchangeError::UpstreamUnavailable);
        let first = cache.lookup(key(), answering(&calls, Ok(record()))).await;
        assert!(matches!(first, Lookup::Miss(_)), "{first:?}");

        // Fresh: the issuer is not asked, failing or not.
        tokio::time::advance(Duration::from_secs(299)).await;
        let fresh = cache.lookup(key(), answering(&calls, failing())).await;
        assert!(matches!(fresh, Lookup::Hit(_)), "{fresh:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Stale from the ttl on, to the end of `stale_if_error`; the issuer is asked each time.
        for (advance, age) in [(1, 300), (299, 599)] {
            tokio::time::advance(Duration::from_secs(advance)).await;
            match cache.lookup(key(), answering(&calls, failing())).await {
                Lookup::Stale(entry, ExchangeError::UpstreamUnavailable) => {
                    assert_eq!(entry.age(Instant::now()), Duration::from_secs(age));
                }
                other => panic!("stale at {age} s: {other:?}"),
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // Expired: nothing stands in, though moka still holds the entry.
        tokio::time::advance(Duration::from_secs(1)).await;
        let failed = cache.lookup(key(), answering(&calls, failing())).await;
        assert!(
            matches!(failed, Lookup::Failed(ExchangeError::UpstreamUnavailable)),
            "{failed:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        cache.run_pending_tasks().await;
        assert_eq!(cache.entry_count(), 1);
    }

    #[test]
    fn an_entry_from_the_future_is_fresh() {
        // `saturating_duration_since`: a clock read before the fetch time gives age 0.
        let now = Instant::now();
        let entry = found(now + Duration::from_secs(1));
        assert_eq!(policy().state(&entry, now), State::Fresh);
    }
}
