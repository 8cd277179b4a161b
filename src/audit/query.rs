//! The auditor routes' parameters, parsed strictly from raw query strings (an unknown, repeated
//! or malformed parameter is refused with its name), and the shapes they answer with.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::entry::{EntryKind, StoredEntry};
use crate::domain::{DepartmentId, ServiceName};

/// Entries per page when the caller names no `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page.
pub const MAX_LIMIT: u32 = 1000;

/// The outcome words of SPEC §9, the only values `outcome=` takes.
pub const OUTCOMES: &[&str] = &[
    "ok",
    "unauthenticated",
    "forbidden",
    "not_found",
    "invalid_request",
    "translation_error",
    "too_large",
    "upstream_error",
    "upstream_timeout",
    "invalid_response",
    "rate_limited",
];

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
                if OUTCOMES.contains(&text.as_str()) {
                    Ok(text)
                } else {
                    Err(BadParameter("outcome"))
                }
            })
            .transpose()?;
        let kind = match found.remove("kind").as_deref() {
            None => EntryKind::Exchange,
            Some(text) => EntryKind::parse(text).ok_or(BadParameter("kind"))?,
        };
        let limit = match found.remove("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or(BadParameter("limit"))?,
        };
        let after = found
            .remove("after")
            .map(|text| {
                text.parse::<u64>()
                    .ok()
                    .filter(|after| *after >= 1 && i64::try_from(*after).is_ok())
                    .ok_or(BadParameter("after"))
            })
            .transpose()?;
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

/// `GET /audit/summary`: the exchange matrix over a window.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The window's start, as asked (normalized), or `null` for the beginning.
    pub since: Option<String>,
    /// The window's end, as asked (normalized), or `null` for now.
    pub until: Option<String>,
    /// One cell per consumer → provider/service pair that exchanged in the window.
    pub matrix: Vec<SummaryCell>,
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

    /// Sets the percentiles from microseconds.
    pub fn set_latency(&mut self, p50_us: u64, p99_us: u64) {
        self.p50_ms = p50_us as f64 / 1000.0;
        self.p99_ms = p99_us as f64 / 1000.0;
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
            entry: crate::audit::entry::AuditEntry {
                time: String::new(),
                kind: EntryKind::Exchange,
                request_id: String::new(),
                consumer: String::new(),
                provider: None,
                service: None,
                method: String::new(),
                path_sha256: None,
                purpose_sha256: None,
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
}
