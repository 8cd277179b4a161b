//! How a committed batch of chained entries is stored: one block, a JSON array of entries, each
//! entry a JSON array of its fields in [`STORED_FIELDS`] order, with the block's index (first and
//! last sequence numbers, earliest and latest time, the hash of its last entry) beside it. Pure:
//! encoding, decoding and checking a block touch no file.
//!
//! One row per batch instead of one per entry is what keeps the trail's cost per exchange low:
//! SQLite's per-row work (binding, record building, B-tree and index maintenance, the pages each
//! row dirties in the WAL) is paid once per batch. The stored values are plain JSON so that
//! SQLite's own `json_each` reads them: the queries behind `/audit/...` and the `audit_entries`
//! view stay SQL. The hash chain does not depend on the layout: it is computed over the canonical
//! encoding of each entry (see [`super::entry`]).

use serde::de::IgnoredAny;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use super::entry::{AuditEntry, Break, CANONICAL_FIELDS, ChainVerifier, EntryKind, StoredEntry};
use crate::config::AuditHash;

/// The fields of a stored entry, in stored order: the canonical fields, then the chain hash.
pub fn stored_fields() -> impl Iterator<Item = &'static str> {
    CANONICAL_FIELDS.into_iter().chain(["hash"])
}

/// A block ready to insert: its index and its entries as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The first entry's sequence number (the row's key).
    pub first_sequence: u64,
    /// The last entry's sequence number.
    pub last_sequence: u64,
    /// The earliest entry time in the block (entries are numbered in commit order, and a
    /// slower call can finish earlier than a faster one queued before it, so this need not be
    /// the first entry's).
    pub min_time: String,
    /// The latest entry time in the block.
    pub max_time: String,
    /// The last entry's hash: where the next batch's chain continues.
    pub head: String,
    /// `[[sequence, time, ..., hash], ...]`.
    pub entries: String,
}

/// Encodes a non-empty run of chained entries as a block; `None` for no entries.
pub fn encode(stored: &[StoredEntry]) -> Option<Block> {
    let (first, last) = (stored.first()?, stored.last()?);
    let min_time = stored.iter().map(|s| &s.entry.time).min()?.clone();
    let max_time = stored.iter().map(|s| &s.entry.time).max()?.clone();
    let rows: Vec<EntryRow<'_>> = stored.iter().map(EntryRow).collect();
    // Serializing strings and integers into a `String` cannot fail.
    let entries = serde_json::to_string(&rows).ok()?;
    Some(Block {
        first_sequence: first.sequence,
        last_sequence: last.sequence,
        min_time,
        max_time,
        head: last.hash.clone(),
        entries,
    })
}

/// One entry as a JSON array, fields in [`stored_fields`] order.
struct EntryRow<'a>(&'a StoredEntry);

impl Serialize for EntryRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let StoredEntry {
            sequence,
            entry,
            hash,
        } = self.0;
        let mut row = serializer.serialize_seq(Some(CANONICAL_FIELDS.len() + 1))?;
        row.serialize_element(sequence)?;
        row.serialize_element(&entry.time)?;
        row.serialize_element(entry.kind.as_str())?;
        row.serialize_element(&entry.request_id)?;
        row.serialize_element(&entry.consumer)?;
        row.serialize_element(&entry.provider)?;
        row.serialize_element(&entry.service)?;
        row.serialize_element(&entry.method)?;
        row.serialize_element(&entry.path_sha256)?;
        row.serialize_element(&entry.purpose_sha256)?;
        row.serialize_element(&entry.status)?;
        row.serialize_element(&entry.outcome)?;
        row.serialize_element(&entry.request_bytes)?;
        row.serialize_element(&entry.response_bytes)?;
        row.serialize_element(&entry.request_sha256)?;
        row.serialize_element(&entry.response_sha256)?;
        row.serialize_element(&entry.request_schema)?;
        row.serialize_element(&entry.response_schema)?;
        row.serialize_element(&entry.subject_sha256)?;
        row.serialize_element(&entry.total_us)?;
        row.serialize_element(&entry.upstream_us)?;
        row.serialize_element(hash)?;
        row.end()
    }
}

/// The same array read back: a tuple struct reads a JSON array of exactly this length and these
/// types, so a missing, extra or retyped field is refused.
#[derive(Deserialize)]
struct StoredRow(
    u64,
    String,
    EntryKind,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    u16,
    String,
    Option<u64>,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    u64,
    Option<u64>,
    String,
);

impl From<StoredRow> for StoredEntry {
    fn from(row: StoredRow) -> StoredEntry {
        let StoredRow(
            sequence,
            time,
            kind,
            request_id,
            consumer,
            provider,
            service,
            method,
            path_sha256,
            purpose_sha256,
            status,
            outcome,
            request_bytes,
            response_bytes,
            request_sha256,
            response_sha256,
            request_schema,
            response_schema,
            subject_sha256,
            total_us,
            upstream_us,
            hash,
        ) = row;
        StoredEntry {
            sequence,
            entry: AuditEntry {
                time,
                kind,
                request_id,
                consumer,
                provider,
                service,
                method,
                path_sha256,
                purpose_sha256,
                status,
                outcome,
                request_bytes,
                response_bytes,
                request_sha256,
                response_sha256,
                request_schema,
                response_schema,
                subject_sha256,
                total_us,
                upstream_us,
            },
            hash,
        }
    }
}

/// The fields of a stored entry the auditors' summary groups, counts and ranks by.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "SummaryRow")]
pub struct SummaryFields {
    /// When.
    pub time: String,
    /// `exchange` or `certificate` (as stored).
    pub kind: String,
    /// Who called.
    pub consumer: String,
    /// Whom.
    pub provider: Option<String>,
    /// Which service or certificate type.
    pub service: Option<String>,
    /// The outcome word.
    pub outcome: String,
    /// Request body bytes.
    pub request_bytes: Option<u64>,
    /// Response body bytes.
    pub response_bytes: Option<u64>,
    /// Total time in the gateway, microseconds.
    pub total_us: u64,
}

/// A stored entry with only the summary's fields read; the others are skipped without being
/// decoded or allocated.
#[derive(Deserialize)]
struct SummaryRow(
    IgnoredAny,
    String,
    String,
    IgnoredAny,
    String,
    Option<String>,
    Option<String>,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    String,
    Option<u64>,
    Option<u64>,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    u64,
    IgnoredAny,
    IgnoredAny,
);

impl From<SummaryRow> for SummaryFields {
    fn from(row: SummaryRow) -> SummaryFields {
        let SummaryRow(
            _,
            time,
            kind,
            _,
            consumer,
            provider,
            service,
            _,
            _,
            _,
            _,
            outcome,
            request_bytes,
            response_bytes,
            _,
            _,
            _,
            _,
            _,
            total_us,
            _,
            _,
        ) = row;
        SummaryFields {
            time,
            kind,
            consumer,
            provider,
            service,
            outcome,
            request_bytes,
            response_bytes,
            total_us,
        }
    }
}

/// The summary's fields of every entry of a block's `entries`; `None` when they are not a
/// block's entries (an edited file).
pub fn summary_fields(entries: &[u8]) -> Option<Vec<SummaryFields>> {
    serde_json::from_slice(entries).ok()
}

/// A block as read back, for verification: its index as stored and its entries' text.
#[derive(Debug, Clone, Copy)]
pub struct StoredBlock<'a> {
    /// The row's `first_sequence`.
    pub first_sequence: i64,
    /// The row's `last_sequence`.
    pub last_sequence: i64,
    /// The row's `min_time`.
    pub min_time: &'a str,
    /// The row's `max_time`.
    pub max_time: &'a str,
    /// The row's `head`.
    pub head: &'a str,
    /// The row's `entries`.
    pub entries: &'a [u8],
}

/// Checks a chain block by block, in stored order, keeping only the chain's state: every entry
/// through [`ChainVerifier`], then the block's index against its entries (an edited index could
/// hide a block from a time-window query or move where the chain continues).
#[derive(Debug)]
pub struct BlockVerifier {
    chain: ChainVerifier,
}

impl BlockVerifier {
    /// A verifier at the start of a chain.
    pub fn new(hash: AuditHash) -> BlockVerifier {
        BlockVerifier {
            chain: ChainVerifier::new(hash),
        }
    }

    /// Checks the next block.
    pub fn next(&mut self, block: StoredBlock<'_>) -> Result<(), Break> {
        let unreadable = |sequence: u64| {
            Break {
            sequence,
            reason: "the entry's stored values are not an entry's (not JSON, a field missing, of the wrong type or an unknown word)".to_owned(),
        }
        };
        let rows: Vec<&serde_json::value::RawValue> =
            serde_json::from_slice(block.entries).map_err(|_| unreadable(self.expected()))?;
        let mut first: Option<u64> = None;
        let mut last: Option<StoredEntry> = None;
        let mut times: Option<(String, String)> = None;
        for row in rows {
            let stored: StoredEntry = serde_json::from_str::<StoredRow>(row.get())
                .map_err(|_| unreadable(self.expected()))?
                .into();
            self.chain.next(&stored)?;
            first.get_or_insert(stored.sequence);
            let time = &stored.entry.time;
            times = Some(match times {
                None => (time.clone(), time.clone()),
                Some((min, max)) => (min.min(time.clone()), max.max(time.clone())),
            });
            last = Some(stored);
        }
        let (Some(first), Some(last), Some((min_time, max_time))) = (first, last, times) else {
            return Err(Break {
                sequence: self.expected(),
                reason: "a block holds no entries: the file was edited".to_owned(),
            });
        };
        let index_matches = u64::try_from(block.first_sequence) == Ok(first)
            && u64::try_from(block.last_sequence) == Ok(last.sequence)
            && block.min_time == min_time
            && block.max_time == max_time
            && block.head == last.hash;
        if !index_matches {
            return Err(Break {
                sequence: first,
                reason: format!(
                    "the index of the block of entries {first} to {} (its sequence numbers, time range or head) does not match its entries: the file was edited",
                    last.sequence
                ),
            });
        }
        Ok(())
    }

    /// How many entries verified.
    pub fn count(&self) -> u64 {
        self.chain.count()
    }

    /// The hash of the last verified entry, lowercase hex.
    pub fn head(&self) -> String {
        self.chain.head()
    }

    /// The sequence number the next entry should have.
    fn expected(&self) -> u64 {
        self.chain.count() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::entry::{GENESIS_HASH, chain_entries, sha256_hex};

    fn entry(index: usize, time: &str) -> AuditEntry {
        AuditEntry {
            time: time.to_owned(),
            kind: if index % 2 == 0 {
                EntryKind::Exchange
            } else {
                EntryKind::Certificate
            },
            request_id: format!("request-\"{index}\"-请求"),
            consumer: "tax".to_owned(),
            provider: (index % 3 != 0).then(|| "market-regulation".to_owned()),
            service: Some("business-licenses".to_owned()),
            method: "GET".to_owned(),
            path_sha256: Some(sha256_hex(format!("/{index}").as_bytes())),
            purpose_sha256: None,
            status: 200,
            outcome: "ok".to_owned(),
            request_bytes: (index % 2 == 0).then_some(0),
            response_bytes: Some(u64::MAX),
            request_sha256: None,
            response_sha256: Some(sha256_hex(b"{}")),
            request_schema: None,
            response_schema: Some("business-license@1".to_owned()),
            subject_sha256: None,
            total_us: 1500 + index as u64,
            upstream_us: Some(900),
        }
    }

    fn chain(count: usize) -> Vec<StoredEntry> {
        let times = [
            "2026-11-28T01:02:03.456Z",
            "2026-11-28T01:02:03.401Z",
            "2026-11-28T01:02:04.000Z",
        ];
        chain_entries(
            AuditHash::Sha256,
            GENESIS_HASH,
            0,
            (0..count).map(|index| entry(index, times[index % times.len()])),
        )
    }

    fn stored(block: &Block) -> StoredBlock<'_> {
        StoredBlock {
            first_sequence: block.first_sequence as i64,
            last_sequence: block.last_sequence as i64,
            min_time: &block.min_time,
            max_time: &block.max_time,
            head: &block.head,
            entries: block.entries.as_bytes(),
        }
    }

    #[test]
    fn a_block_indexes_its_entries_and_reads_back_as_written() {
        let entries = chain(5);
        let block = encode(&entries).unwrap();
        assert_eq!((block.first_sequence, block.last_sequence), (1, 5));
        assert_eq!(block.min_time, "2026-11-28T01:02:03.401Z");
        assert_eq!(block.max_time, "2026-11-28T01:02:04.000Z");
        assert_eq!(block.head, entries[4].hash);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&block.entries).unwrap();
        assert_eq!(rows.len(), 5);
        let names: Vec<&str> = stored_fields().collect();
        assert_eq!(rows[0].as_array().unwrap().len(), names.len());
        let read: Vec<StoredEntry> = rows
            .iter()
            .map(|row| StoredRow::deserialize(row).unwrap().into())
            .collect();
        assert_eq!(read, entries);
        // Each field is where its name says, as JSON of its SQL type.
        let position = |name: &str| names.iter().position(|n| *n == name).unwrap();
        assert_eq!(rows[1][position("sequence")], 2);
        assert_eq!(rows[1][position("kind")], "certificate");
        assert_eq!(rows[0][position("provider")], serde_json::Value::Null);
        assert_eq!(rows[4][position("response_bytes")], u64::MAX);
        assert_eq!(rows[4][position("hash")], entries[4].hash.as_str());
        assert!(encode(&[]).is_none());
    }

    #[test]
    fn the_summary_reads_its_fields_and_skips_the_others() {
        let entries = chain(4);
        let block = encode(&entries).unwrap();
        let fields = summary_fields(block.entries.as_bytes()).unwrap();
        assert_eq!(fields.len(), 4);
        for (fields, stored) in fields.iter().zip(&entries) {
            let entry = &stored.entry;
            assert_eq!(
                fields,
                &SummaryFields {
                    time: entry.time.clone(),
                    kind: entry.kind.as_str().to_owned(),
                    consumer: entry.consumer.clone(),
                    provider: entry.provider.clone(),
                    service: entry.service.clone(),
                    outcome: entry.outcome.clone(),
                    request_bytes: entry.request_bytes,
                    response_bytes: entry.response_bytes,
                    total_us: entry.total_us,
                }
            );
        }
        assert_eq!(summary_fields(b"shredded"), None);
        assert_eq!(summary_fields(b"[[1, 2]]"), None);
    }

    #[test]
    fn consecutive_blocks_verify_and_the_count_and_head_follow() {
        let entries = chain(7);
        let (one, two) = (
            encode(&entries[..3]).unwrap(),
            encode(&entries[3..]).unwrap(),
        );
        let mut verifier = BlockVerifier::new(AuditHash::Sha256);
        verifier.next(stored(&one)).unwrap();
        verifier.next(stored(&two)).unwrap();
        assert_eq!(verifier.count(), 7);
        assert_eq!(verifier.head(), entries[6].hash);
    }

    #[test]
    fn an_edited_index_or_unreadable_entries_break_at_the_right_entry() {
        let entries = chain(6);
        let (one, two) = (
            encode(&entries[..3]).unwrap(),
            encode(&entries[3..]).unwrap(),
        );
        let second_fails = |edited: StoredBlock<'_>| {
            let mut verifier = BlockVerifier::new(AuditHash::Sha256);
            verifier.next(stored(&one)).unwrap();
            verifier.next(edited).unwrap_err()
        };
        let index_edits = [
            StoredBlock {
                first_sequence: 5,
                ..stored(&two)
            },
            StoredBlock {
                last_sequence: 7,
                ..stored(&two)
            },
            StoredBlock {
                min_time: "2026-11-28T01:02:04.000Z",
                ..stored(&two)
            },
            StoredBlock {
                max_time: "2026-11-28T00:00:00.000Z",
                ..stored(&two)
            },
            StoredBlock {
                head: "00",
                ..stored(&two)
            },
        ];
        for edited in index_edits {
            let broken = second_fails(edited);
            assert_eq!(broken.sequence, 4);
            assert!(broken.reason.contains("index"), "{}", broken.reason);
        }
        for text in ["not json", "[]", "[[4]]", "[{\"sequence\": 4}]"] {
            let broken = second_fails(StoredBlock {
                entries: text.as_bytes(),
                ..stored(&two)
            });
            assert_eq!(broken.sequence, 4, "{text}");
        }
        // A number stored as text is refused, not read as the number.
        let retyped = two.entries.replacen(",200,", ",\"200\",", 1);
        assert_ne!(retyped, two.entries);
        let broken = second_fails(StoredBlock {
            entries: retyped.as_bytes(),
            ..stored(&two)
        });
        assert_eq!(broken.sequence, 4);
        assert!(
            broken.reason.contains("not an entry's"),
            "{}",
            broken.reason
        );
    }
}
