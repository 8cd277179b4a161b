//! The auditor routes' parameters, parsed strictly from raw query strings (an unknown, repeated
//! or malformed parameter is refused with its name), and the shapes they answer with.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::entry::{EntryKind, StoredEntry};
use crate::Outcome;
use xgate_core::domain::{DepartmentId, ServiceName};

/// Entries per page when the caller names no `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page.
pub const MAX_LIMIT: u32 = 1000;

/// A refused parameter: its name (never its value, which is the caller's input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadParameter(pub &'static str);

/// `since` (inclusive) and `until` (exclusive), normalized to the stored time format so that
/// SQLite compares them as text correctly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeWindow {
    /// The first instant included.
    pub since: Option<String>,
    /// The first instant excluded.
    pub until: Option<String>,
}

/// The filters and page of `GET /audit/exchanges`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFilter {
    /// Exchanges (the default) or certificate lookups.
    pub kind: EntryKind,
    /// Only this consumer (`unknown` included).
    pub consumer: Option<String>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only this service (or certificate type).
    pub service: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// The time window.
    pub window: TimeWindow,
    /// Entries per page, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Only entries older than this sequence number (the previous page's `next`).
    pub after: Option<u64>,
}

/// The page of `GET /audit/subjects/{kind}/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectPage {
    /// Entries per page, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Only entries older than this sequence number (the previous page's `next`).
    pub after: Option<u64>,
}

impl SubjectPage {
    /// Parses `limit` and `after`.
    pub fn parse(query: Option<&str>) -> Result<SubjectPage, BadParameter> {
        let mut found = pairs(query, &["limit", "after"])?;
        Ok(SubjectPage {
            limit: limit(&mut found)?,
            after: after(&mut found)?,
        })
    }
}

/// Formats an instant as entries store it: RFC 3339, UTC, milliseconds, `Z`.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads an RFC 3339 time with any offset, into the stored format.
fn parse_time(text: &str, name: &'static str) -> Result<String, BadParameter> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| format_time(time.with_timezone(&Utc)))
        .map_err(|_| BadParameter(name))
}

/// The decoded `name=value` pairs of a query string, each name at most once and among `known`.
fn pairs(
    query: Option<&str>,
    known: &[&'static str],
) -> Result<BTreeMap<&'static str, String>, BadParameter> {
    let mut found = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let Some(name) = known.iter().copied().find(|known| *known == name) else {
            return Err(BadParameter("query"));
        };
        if found.insert(name, value.into_owned()).is_some() {
            return Err(BadParameter(name));
        }
    }
    Ok(found)
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
fn limit(found: &mut BTreeMap<&'static str, String>) -> Result<u32, BadParameter> {
    match found.remove("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or(BadParameter("limit")),
    }
}

/// `after`: a sequence number (PostgreSQL's `bigint` holds it).
fn after(found: &mut BTreeMap<&'static str, String>) -> Result<Option<u64>, BadParameter> {
    found
        .remove("after")
        .map(|text| {
            text.parse::<u64>()
                .ok()
                .filter(|after| *after >= 1 && i64::try_from(*after).is_ok())
                .ok_or(BadParameter("after"))
        })
        .transpose()
}

fn window(found: &mut BTreeMap<&'static str, String>) -> Result<TimeWindow, BadParameter> {
    let since = found
        .remove("since")
        .map(|text| parse_time(&text, "since"))
        .transpose()?;
    let until = found
        .remove("until")
        .map(|text| parse_time(&text, "until"))
        .transpose()?;
    if let (Some(since), Some(until)) = (&since, &until)
        && since > until
    {
        return Err(BadParameter("until"));
    }
    Ok(TimeWindow { since, until })
}

impl EntryFilter {
    /// Parses `consumer`, `provider`, `service`, `outcome`, `kind`, `since`, `until`, `limit`
    /// and `after`.
    pub fn parse(query: Option<&str>) -> Result<EntryFilter, BadParameter> {
        let mut found = pairs(
            query,
            &[
                "consumer", "provider", "service", "outcome", "kind", "since", "until", "limit",
                "after",
            ],
        )?;
        let consumer = found
            .remove("consumer")
            .map(|text| {
                // `unknown` is what unidentified callers are recorded as.
                if text == "unknown" || DepartmentId::parse(&text).is_ok() {
                    Ok(text)
                } else {
                    Err(BadParameter("consumer"))
                }
            })
            .transpose()?;
        let provider = found
            .remove("provider")
            .map(|text| {
                DepartmentId::parse(&text)
                    .map(|_| text)
                    .map_err(|_| BadParameter("provider"))
            })
            .transpose()?;
        let service = found
            .remove("service")
            .map(|text| {
                ServiceName::parse(&text)
                    .map(|_| text)
                    .map_err(|_| BadParameter("service"))
            })
            .transpose()?;
        let outcome = found
            .remove("outcome")
            .map(|text| {
                // Every outcome word (`Outcome::ALL`), the lookups' answers (`hit`, ...) too.
                match Outcome::parse(&text) {
                    Some(_) => Ok(text),
                    None => Err(BadParameter("outcome")),
                }
            })
            .transpose()?;
        let kind = match found.remove("kind").as_deref() {
            None => EntryKind::Exchange,
            Some(text) => EntryKind::parse(text).ok_or(BadParameter("kind"))?,
        };
        let limit = limit(&mut found)?;
        let after = after(&mut found)?;
        let window = window(&mut found)?;
        Ok(EntryFilter {
            kind,
            consumer,
            provider,
            service,
            outcome,
            window,
            limit,
            after,
        })
    }
}

impl TimeWindow {
    /// Parses `since` and `until` (the only parameters of `/audit/summary`).
    pub fn parse(query: Option<&str>) -> Result<TimeWindow, BadParameter> {
        let mut found = pairs(query, &["since", "until"])?;
        window(&mut found)
    }
}

/// One page of `GET /audit/exchanges`.
#[derive(Debug, Serialize)]
pub struct Page {
    /// The entries, newest first.
    pub entries: Vec<StoredEntry>,
    /// The `after` of the next page, or `null` on the last one.
    pub next: Option<u64>,
}

impl Page {
    /// A page from at most `limit + 1` entries read newest first.
    pub fn new(mut entries: Vec<StoredEntry>, limit: u32) -> Page {
        let limit = limit as usize;
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|last| last.sequence)
        } else {
            None
        };
        Page { entries, next }
    }
}

/// `GET /audit/summary`: the exchange matrix over a window, the exchanges' outcomes over time,
/// the certificate lookups by type and outcome, and the most frequent failures.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The window's start, as asked (normalized), or `null` for the beginning.
    pub since: Option<String>,
    /// The window's end, as asked (normalized), or `null` for now.
    pub until: Option<String>,
    /// One cell per consumer → provider/service pair that exchanged in the window.
    pub matrix: Vec<SummaryCell>,
    /// The window's exchanges by outcome per time bucket.
    pub timeline: Timeline,
    /// The window's certificate lookups by outcome, per type and overall.
    pub certificates: CertificateSummary,
    /// The [`TOP_FAILURES`] most frequent failure groups, most frequent first.
    pub failures: Vec<FailureGroup>,
}

/// Buckets of the timeline at most.
pub const MAX_BUCKETS: i64 = 100;
/// Failure groups in a summary at most.
pub const TOP_FAILURES: u32 = 10;
/// Rows a grouped summary query reads at most. Genuine entries group into far fewer (outcome
/// words × configured types or buckets); the bound only holds when the file was edited.
pub const MAX_GROUP_ROWS: u32 = 10_000;

/// The bucket widths the timeline chooses from, in seconds, smallest first; past the last one,
/// whole days.
const STEPS_SECONDS: &[i64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
];
const DAY_SECONDS: i64 = 86_400;

/// The timeline's buckets: `count` buckets of `step_seconds`, the first starting at `first`
/// (Unix seconds, a multiple of the step, so buckets line up with UTC minutes, hours, days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketPlan {
    /// Each bucket's width.
    pub step_seconds: i64,
    /// The first bucket's start, Unix seconds.
    pub first: i64,
    /// How many buckets, 1 to [`MAX_BUCKETS`].
    pub count: i64,
}

impl BucketPlan {
    /// The smallest step from [`STEPS_SECONDS`] (or whole days past it) whose aligned buckets
    /// cover the seconds `first..=last` in at most [`MAX_BUCKETS`]. `last < first` is read as
    /// `first`.
    pub fn covering(first: i64, last: i64) -> BucketPlan {
        let last = last.max(first);
        let span = last.saturating_sub(first);
        // Aligned buckets of width s cover a span of n seconds in at most ⌊n/s⌋ + 2 buckets,
        // so a span under s·(MAX - 1) needs at most MAX.
        let fits = |step: i64| span < step.saturating_mul(MAX_BUCKETS - 1);
        let step_seconds = STEPS_SECONDS
            .iter()
            .copied()
            .find(|step| fits(*step))
            .unwrap_or_else(|| {
                let per_bucket = span / (MAX_BUCKETS - 1) + 1;
                let days = per_bucket / DAY_SECONDS + 1;
                days.saturating_mul(DAY_SECONDS)
            });
        let start = first.div_euclid(step_seconds);
        BucketPlan {
            step_seconds,
            first: start.saturating_mul(step_seconds),
            count: last.div_euclid(step_seconds) - start + 1,
        }
    }

    /// The window's first and last second (Unix), each when the window names that end; `until`
    /// is exclusive, so its last second is the one before it.
    pub fn window_seconds(window: &TimeWindow) -> (Option<i64>, Option<i64>) {
        let millis = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|time| time.timestamp_millis())
        };
        let since = window
            .since
            .as_deref()
            .and_then(millis)
            .map(|ms| ms.div_euclid(1000));
        let until = window
            .until
            .as_deref()
            .and_then(millis)
            .map(|ms| (ms - 1).div_euclid(1000));
        (since, until)
    }
}

/// The exchanges' outcomes over time.
#[derive(Debug, Serialize, PartialEq)]
pub struct Timeline {
    /// Each bucket's width, in seconds.
    pub step_seconds: i64,
    /// Every bucket from the window's start to its end (or, for an open end, the first or last
    /// exchange in it), oldest first, empty ones included; none when an open window holds no
    /// exchange.
    pub buckets: Vec<TimelineBucket>,
}

/// One bucket of the timeline.
#[derive(Debug, Serialize, PartialEq)]
pub struct TimelineBucket {
    /// When the bucket starts, in the stored time format.
    pub start: String,
    /// Exchanges in the bucket.
    pub count: u64,
    /// Exchanges by outcome word.
    pub outcomes: BTreeMap<String, u64>,
}

impl Timeline {
    /// The empty buckets of a plan (none without one).
    pub fn new(plan: Option<BucketPlan>) -> Timeline {
        let Some(plan) = plan else {
            return Timeline {
                step_seconds: STEPS_SECONDS[0],
                buckets: Vec::new(),
            };
        };
        let buckets = (0..plan.count)
            .map(|index| {
                let seconds = plan.first + index * plan.step_seconds;
                TimelineBucket {
                    start: DateTime::from_timestamp(seconds, 0)
                        .map(format_time)
                        .unwrap_or_default(),
                    count: 0,
                    outcomes: BTreeMap::new(),
                }
            })
            .collect();
        Timeline {
            step_seconds: plan.step_seconds,
            buckets,
        }
    }

    /// Adds the count of one outcome in bucket `index` (ignored outside the buckets).
    pub fn add(&mut self, index: i64, outcome: String, count: u64) {
        if let Some(bucket) = usize::try_from(index)
            .ok()
            .and_then(|index| self.buckets.get_mut(index))
        {
            bucket.count += count;
            *bucket.outcomes.entry(outcome).or_default() += count;
        }
    }
}

/// The window's certificate lookups (SPEC §8), from the `certificate` entries of the trail.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct CertificateSummary {
    /// Lookups in the window, refused ones included.
    pub lookups: u64,
    /// Lookups by outcome: the cache's answer (`hit`, `miss`, `stale`), `not_found`, or the
    /// refusal's SPEC §9 word.
    pub outcomes: BTreeMap<String, u64>,
    /// `hit / (hit + miss + stale)`, or `null` when no lookup was answered from the cache or
    /// the issuer.
    pub hit_ratio: Option<f64>,
    /// One line per certificate type (and issuer).
    pub types: Vec<CertificateTypeSummary>,
}

/// The lookups of one certificate type.
#[derive(Debug, Serialize, PartialEq)]
pub struct CertificateTypeSummary {
    /// The certificate type (`null` when the lookup was refused before its type was known).
    #[serde(rename = "type")]
    pub certificate_type: Option<String>,
    /// The issuing department.
    pub issuer: Option<String>,
    /// Lookups of the type.
    pub lookups: u64,
    /// Lookups by outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// As [`CertificateSummary::hit_ratio`].
    pub hit_ratio: Option<f64>,
}

/// `hit / (hit + miss + stale)` of some outcome counts.
pub fn hit_ratio(outcomes: &BTreeMap<String, u64>) -> Option<f64> {
    let count = |word: &str| outcomes.get(word).copied().unwrap_or(0);
    let answered: u64 = Outcome::ALL
        .into_iter()
        .filter(|outcome| outcome.is_cache_answer())
        .map(|outcome| count(outcome.as_str()))
        .sum();
    (answered > 0).then(|| count(Outcome::Hit.as_str()) as f64 / answered as f64)
}

impl CertificateSummary {
    /// Adds the count of one outcome of one type (rows come grouped by type and issuer).
    pub fn add(
        &mut self,
        certificate_type: Option<String>,
        issuer: Option<String>,
        outcome: String,
        count: u64,
    ) {
        let same = self
            .types
            .last()
            .is_some_and(|line| line.certificate_type == certificate_type && line.issuer == issuer);
        if !same {
            self.types.push(CertificateTypeSummary {
                certificate_type,
                issuer,
                lookups: 0,
                outcomes: BTreeMap::new(),
                hit_ratio: None,
            });
        }
        if let Some(line) = self.types.last_mut() {
            line.lookups += count;
            *line.outcomes.entry(outcome.clone()).or_default() += count;
        }
        self.lookups += count;
        *self.outcomes.entry(outcome).or_default() += count;
    }

    /// Computes the hit ratios once every row is in.
    pub fn finish(&mut self) {
        self.hit_ratio = hit_ratio(&self.outcomes);
        for line in &mut self.types {
            line.hit_ratio = hit_ratio(&line.outcomes);
        }
    }
}

/// Entries of one kind, consumer, provider, service and failure outcome.
#[derive(Debug, Serialize, PartialEq)]
pub struct FailureGroup {
    /// `exchange` or `certificate`.
    pub kind: String,
    /// The consumer (`unknown` for unidentified callers).
    pub consumer: String,
    /// The provider, or for certificates the issuer (`null` when refused before routing).
    pub provider: Option<String>,
    /// The service, or the certificate type (`null` when refused before routing).
    pub service: Option<String>,
    /// The outcome word.
    pub outcome: String,
    /// Entries in the window.
    pub count: u64,
    /// The newest one's time.
    pub last_seen: String,
}

/// One consumer → provider/service pair. Latency percentiles are nearest-rank over the total
/// times of the window's exchanges: p = the value at rank ⌈p·n⌉ of the sorted values.
#[derive(Debug, Serialize)]
pub struct SummaryCell {
    /// The consumer (`unknown` for unidentified callers).
    pub consumer: String,
    /// The provider (`null` when the call was refused before routing).
    pub provider: Option<String>,
    /// The service (`null` when the call was refused before routing).
    pub service: Option<String>,
    /// Exchanges in the window.
    pub count: u64,
    /// Exchanges by outcome word.
    pub outcomes: BTreeMap<String, u64>,
    /// Request body bytes (as recorded; streamed bodies without a length count 0).
    pub request_bytes: u64,
    /// Response body bytes (likewise).
    pub response_bytes: u64,
    /// Median total time, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile total time, milliseconds.
    pub p99_ms: f64,
}

impl SummaryCell {
    /// An empty cell.
    pub fn new(consumer: String, provider: Option<String>, service: Option<String>) -> Self {
        SummaryCell {
            consumer,
            provider,
            service,
            count: 0,
            outcomes: BTreeMap::new(),
            request_bytes: 0,
            response_bytes: 0,
            p50_ms: 0.0,
            p99_ms: 0.0,
        }
    }

    /// Adds the totals of one outcome.
    pub fn add(&mut self, outcome: String, count: u64, request_bytes: u64, response_bytes: u64) {
        self.count += count;
        self.request_bytes += request_bytes;
        self.response_bytes += response_bytes;
        *self.outcomes.entry(outcome).or_default() += count;
    }

    /// Takes the total time (microseconds) at `rank` (from 1) of the cell's sorted latencies
    /// when it is the rank of p50 or p99 among the cell's [`count`](SummaryCell::count).
    pub fn ranked_latency(&mut self, rank: u64, total_us: u64) {
        let nearest_rank = |percent: u64| (self.count * percent).div_ceil(100);
        if rank == nearest_rank(50) {
            self.p50_ms = total_us as f64 / 1000.0;
        }
        if rank == nearest_rank(99) {
            self.p99_ms = total_us as f64 / 1000.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_parameters_mean_every_exchange_newest_first_in_pages_of_100() {
        let filter = EntryFilter::parse(None).unwrap();
        assert_eq!(filter.kind, EntryKind::Exchange);
        assert_eq!(filter.limit, DEFAULT_LIMIT);
        assert_eq!(filter.after, None);
        assert_eq!(filter.window, TimeWindow::default());
    }

    #[test]
    fn good_parameters_are_read_and_times_normalized_to_utc_milliseconds() {
        let filter = EntryFilter::parse(Some(
            "consumer=tax&provider=market-regulation&service=business-licenses&outcome=not_found\
             &since=2026-11-28T09:00:00%2B08:00&until=2026-11-28T02:00:00.5Z&limit=1000&after=42",
        ))
        .unwrap();
        assert_eq!(filter.consumer.as_deref(), Some("tax"));
        assert_eq!(filter.outcome.as_deref(), Some("not_found"));
        assert_eq!(
            filter.window.since.as_deref(),
            Some("2026-11-28T01:00:00.000Z")
        );
        assert_eq!(
            filter.window.until.as_deref(),
            Some("2026-11-28T02:00:00.500Z")
        );
        assert_eq!((filter.limit, filter.after), (1000, Some(42)));
        assert_eq!(
            EntryFilter::parse(Some("consumer=unknown"))
                .unwrap()
                .consumer
                .as_deref(),
            Some("unknown")
        );
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        for (query, name) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=-1", "limit"),
            ("limit=ten", "limit"),
            ("after=0", "after"),
            ("after=18446744073709551615", "after"),
            ("after=1%20OR%201=1", "after"),
            ("consumer=tax'%20OR%20'1'='1", "consumer"),
            ("provider=../etc", "provider"),
            ("service=%00", "service"),
            ("outcome=great", "outcome"),
            ("kind=everything", "kind"),
            ("since=yesterday", "since"),
            ("until=2026-13-01T00:00:00Z", "until"),
            (
                "since=2026-11-28T02:00:00Z&until=2026-11-28T01:00:00Z",
                "until",
            ),
            ("limit=1&limit=2", "limit"),
            ("sort=time", "query"),
        ] {
            assert_eq!(
                EntryFilter::parse(Some(query)),
                Err(BadParameter(name)),
                "{query}"
            );
        }
        assert_eq!(
            TimeWindow::parse(Some("consumer=tax")),
            Err(BadParameter("query"))
        );
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_entries_exist() {
        let stored = |sequence| StoredEntry {
            sequence,
            version: crate::entry::EncodingVersion::CURRENT,
            gateway: None,
            entry: crate::entry::AuditEntry {
                time: String::new(),
                kind: EntryKind::Exchange,
                request_id: String::new(),
                exchange_id: None,
                consumer: String::new(),
                provider: None,
                service: None,
                method: String::new(),
                path_sha256: None,
                purpose_sha256: None,
                purpose: None,
                status: 200,
                outcome: "ok".to_owned(),
                request_bytes: None,
                response_bytes: None,
                request_sha256: None,
                response_sha256: None,
                request_schema: None,
                response_schema: None,
                subject_sha256: None,
                total_us: 0,
                upstream_us: None,
            },
            hash: String::new(),
        };
        let page = Page::new(vec![stored(9), stored(8), stored(7)], 2);
        assert_eq!(page.entries.len(), 2);
        assert_eq!(page.next, Some(8));
        let last = Page::new(vec![stored(2), stored(1)], 2);
        assert_eq!(last.next, None);
    }

    #[test]
    fn timeline_buckets_are_aligned_and_never_more_than_the_maximum() {
        // The dashboard's windows: an hour in minutes, a day in quarter hours, a week in two
        // hours.
        let hour = BucketPlan::covering(1_764_295_200, 1_764_295_200 + 3599);
        assert_eq!((hour.step_seconds, hour.count), (60, 60));
        assert_eq!(hour.first, 1_764_295_200);
        let unaligned = BucketPlan::covering(1_764_295_230, 1_764_295_230 + 3599);
        assert_eq!((unaligned.step_seconds, unaligned.count), (60, 61));
        assert_eq!(unaligned.first, 1_764_295_200);
        assert_eq!(BucketPlan::covering(0, 86_399).step_seconds, 900);
        assert_eq!(BucketPlan::covering(0, 7 * 86_400 - 1).step_seconds, 7200);
        // One instant, a reversed range, and spans past a day per bucket.
        assert_eq!(
            BucketPlan::covering(5, 5),
            BucketPlan {
                step_seconds: 1,
                first: 5,
                count: 1
            }
        );
        assert_eq!(BucketPlan::covering(9, 3).count, 1);
        let decade = BucketPlan::covering(0, 10 * 365 * 86_400);
        assert_eq!(decade.step_seconds % 86_400, 0);
        // Every span and offset stays within the bound, with the smallest step that does.
        for span in [
            0,
            1,
            98,
            99,
            100,
            5_000,
            86_399,
            1_000_000,
            400_000_000,
            i64::MAX / 4,
        ] {
            for offset in [0, 1, 59, 86_399, -7] {
                let plan = BucketPlan::covering(offset, offset.saturating_add(span));
                assert!(
                    (1..=MAX_BUCKETS).contains(&plan.count),
                    "{span} {offset} {plan:?}"
                );
                assert_eq!(plan.first % plan.step_seconds, 0);
                assert!(plan.first <= offset);
                assert!(plan.first + plan.count * plan.step_seconds > offset + span);
            }
        }
    }

    #[test]
    fn a_window_gives_its_first_and_last_second() {
        let window = TimeWindow::parse(Some(
            "since=2026-11-28T01:00:00.500Z&until=2026-11-28T02:00:00Z",
        ))
        .unwrap();
        let (since, until) = BucketPlan::window_seconds(&window);
        let at_one = DateTime::parse_from_rfc3339("2026-11-28T01:00:00Z")
            .unwrap()
            .timestamp();
        assert_eq!((since, until), (Some(at_one), Some(at_one + 3599)));
        assert_eq!(
            BucketPlan::window_seconds(&TimeWindow::default()),
            (None, None)
        );
    }

    #[test]
    fn timeline_counts_land_in_their_bucket_and_outside_ones_are_ignored() {
        let mut timeline = Timeline::new(Some(BucketPlan {
            step_seconds: 60,
            first: 1_764_295_200,
            count: 2,
        }));
        assert_eq!(timeline.buckets.len(), 2);
        assert_eq!(timeline.buckets[0].start, "2025-11-28T02:00:00.000Z");
        assert_eq!(timeline.buckets[1].start, "2025-11-28T02:01:00.000Z");
        timeline.add(1, "ok".to_owned(), 3);
        timeline.add(1, "forbidden".to_owned(), 1);
        timeline.add(2, "ok".to_owned(), 9);
        timeline.add(-1, "ok".to_owned(), 9);
        assert_eq!(timeline.buckets[0].count, 0);
        assert_eq!(timeline.buckets[1].count, 4);
        assert_eq!(timeline.buckets[1].outcomes["forbidden"], 1);
        assert_eq!(Timeline::new(None).buckets, Vec::new());
    }

    #[test]
    fn the_hit_ratio_counts_hits_among_cache_answers_only() {
        let mut summary = CertificateSummary::default();
        for (certificate_type, outcome, count) in [
            ("licence", "hit", 3),
            ("licence", "miss", 1),
            ("licence", "forbidden", 5),
            ("licence", "not_found", 2),
            ("permit", "stale", 1),
            ("permit", "upstream_error", 1),
        ] {
            summary.add(
                Some(certificate_type.to_owned()),
                Some("market".to_owned()),
                outcome.to_owned(),
                count,
            );
        }
        summary.add(None, None, "unauthenticated".to_owned(), 1);
        summary.finish();
        assert_eq!(summary.lookups, 14);
        assert_eq!(summary.hit_ratio, Some(0.6));
        assert_eq!(summary.types.len(), 3);
        assert_eq!(summary.types[0].lookups, 11);
        assert_eq!(summary.types[0].hit_ratio, Some(0.75));
        assert_eq!(summary.types[1].hit_ratio, Some(0.0));
        assert_eq!(summary.types[2].hit_ratio, None);
        assert_eq!(hit_ratio(&BTreeMap::new()), None);
    }
}
