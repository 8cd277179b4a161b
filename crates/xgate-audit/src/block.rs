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

use std::fmt;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::entry::{AuditEntry, Break, ChainVerifier, EncodingVersion, FIELDS_V1, StoredEntry};
use crate::entry::AuditHash;

/// Where a stored entry's encoding version is, in entries of version 2 on: right after the
/// version 1 fields and the hash. Entries of version 1 end before it.
pub const VERSION_POSITION: usize = FIELDS_V1.len() + 1;

/// The fields of a stored entry, in stored order: the version 1 fields, the chain hash, then
/// (from version 2 on) the encoding version and the fields each later version adds. An entry
/// of version 1 holds only the first part; each later version's entries hold the fields up to
/// their own.
pub fn stored_fields() -> impl Iterator<Item = &'static str> {
    FIELDS_V1.into_iter().chain(["hash", "version"]).chain(
        EncodingVersion::ALL
            .into_iter()
            .skip(1)
            .flat_map(|version| version.added_fields().iter().copied()),
    )
}

/// The stored fields of a version 1 entry (the layout before versions were stored).
pub fn stored_fields_v1() -> impl Iterator<Item = &'static str> {
    FIELDS_V1.into_iter().chain(["hash"])
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
    /// `[[sequence, time, ..., hash, version, exchange_id, gateway], ...]`.
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

/// The subject index's rows of chained entries: each keyed subject digest with its entry's
/// sequence number (entries of encoding versions before 4 hold plain digests, which no lookup
/// computes, and are not indexed).
pub fn subjects(stored: &[StoredEntry]) -> impl Iterator<Item = (&str, i64)> {
    stored.iter().filter_map(|stored| {
        let subject = stored.entry.subject_sha256.as_deref()?;
        let sequence = i64::try_from(stored.sequence).ok()?;
        (stored.version >= EncodingVersion::V4).then_some((subject, sequence))
    })
}

/// The entry numbered `sequence` among a block's decoded entries (stored in sequence order).
pub fn entry_at(entries: &[StoredEntry], sequence: i64) -> Option<&StoredEntry> {
    let sequence = u64::try_from(sequence).ok()?;
    entries
        .binary_search_by_key(&sequence, |stored| stored.sequence)
        .ok()
        .map(|index| &entries[index])
}

/// One entry as a JSON array, fields in [`stored_fields`] order up to its version's.
struct EntryRow<'a>(&'a StoredEntry);

impl Serialize for EntryRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let StoredEntry {
            sequence,
            version,
            entry,
            gateway,
            hash,
        } = self.0;
        let length = match version {
            EncodingVersion::V1 => VERSION_POSITION,
            EncodingVersion::V2 => VERSION_POSITION + 2,
            EncodingVersion::V3 => VERSION_POSITION + 3,
            EncodingVersion::V4 => VERSION_POSITION + 4,
        };
        let mut row = serializer.serialize_seq(Some(length))?;
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
        if *version >= EncodingVersion::V2 {
            row.serialize_element(&version.number())?;
            row.serialize_element(&entry.exchange_id)?;
        }
        if *version >= EncodingVersion::V3 {
            row.serialize_element(gateway)?;
        }
        if *version >= EncodingVersion::V4 {
            row.serialize_element(&entry.purpose)?;
        }
        row.end()
    }
}

/// The next element of a stored entry's array, which must be there.
fn required<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(
    row: &mut A,
    position: usize,
) -> Result<T, A::Error> {
    row.next_element()?
        .ok_or_else(|| de::Error::invalid_length(position, &"a stored audit entry"))
}

/// After the last field a stored entry may have: refuses anything more (a field appended to
/// an entry is an edit, not a version of its own).
fn end<'de, A: SeqAccess<'de>>(row: &mut A, position: usize) -> Result<(), A::Error> {
    match row.next_element::<IgnoredAny>()? {
        None => Ok(()),
        Some(_) => Err(de::Error::invalid_length(
            position + 1,
            &"no more fields than the entry's version has",
        )),
    }
}

/// A stored entry read back whole. The array must have exactly the fields of its version, each
/// of its type (a missing, extra or retyped field is refused); an entry of version 2 on says
/// so in its own array.
struct StoredRow(StoredEntry);

impl<'de> Deserialize<'de> for StoredRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StoredRow, D::Error> {
        deserializer.deserialize_seq(StoredRowVisitor)
    }
}

struct StoredRowVisitor;

impl<'de> Visitor<'de> for StoredRowVisitor {
    type Value = StoredRow;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a stored audit entry (a JSON array of its fields)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut row: A) -> Result<StoredRow, A::Error> {
        let sequence = required(&mut row, 0)?;
        let mut entry = AuditEntry {
            time: required(&mut row, 1)?,
            kind: required(&mut row, 2)?,
            request_id: required(&mut row, 3)?,
            exchange_id: None,
            consumer: required(&mut row, 4)?,
            provider: required(&mut row, 5)?,
            service: required(&mut row, 6)?,
            method: required(&mut row, 7)?,
            path_sha256: required(&mut row, 8)?,
            purpose_sha256: required(&mut row, 9)?,
            purpose: None,
            status: required(&mut row, 10)?,
            outcome: required(&mut row, 11)?,
            request_bytes: required(&mut row, 12)?,
            response_bytes: required(&mut row, 13)?,
            request_sha256: required(&mut row, 14)?,
            response_sha256: required(&mut row, 15)?,
            request_schema: required(&mut row, 16)?,
            response_schema: required(&mut row, 17)?,
            subject_sha256: required(&mut row, 18)?,
            total_us: required(&mut row, 19)?,
            upstream_us: required(&mut row, 20)?,
        };
        let hash = required(&mut row, 21)?;
        let version = match row.next_element::<u64>()? {
            None => EncodingVersion::V1,
            // Version 1 entries never store their version: a stored 1 is an edit.
            Some(number) => EncodingVersion::from_number(number)
                .filter(|version| *version > EncodingVersion::V1)
                .ok_or_else(|| {
                    de::Error::invalid_value(
                        de::Unexpected::Unsigned(number),
                        &"an encoding version this gateway knows, from 2 on",
                    )
                })?,
        };
        let mut position = VERSION_POSITION;
        if version >= EncodingVersion::V2 {
            position += 1;
            entry.exchange_id = required(&mut row, position)?;
        }
        let mut gateway = None;
        if version >= EncodingVersion::V3 {
            position += 1;
            gateway = required(&mut row, position)?;
        }
        if version >= EncodingVersion::V4 {
            position += 1;
            entry.purpose = required(&mut row, position)?;
        }
        end(&mut row, position)?;
        Ok(StoredRow(StoredEntry {
            sequence,
            version,
            entry,
            gateway,
            hash,
        }))
    }
}

/// The fields of a stored entry the auditors' summary groups, counts and ranks by.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A stored entry with only the summary's fields read; the others (and those of later
/// versions) are skipped without being decoded or allocated.
impl<'de> Deserialize<'de> for SummaryFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SummaryFields, D::Error> {
        deserializer.deserialize_seq(SummaryVisitor)
    }
}

struct SummaryVisitor;

impl<'de> Visitor<'de> for SummaryVisitor {
    type Value = SummaryFields;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a stored audit entry (a JSON array of its fields)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut row: A) -> Result<SummaryFields, A::Error> {
        let skip = |row: &mut A, position: usize| required::<IgnoredAny, A>(row, position);
        skip(&mut row, 0)?;
        let time = required(&mut row, 1)?;
        let kind = required(&mut row, 2)?;
        skip(&mut row, 3)?;
        let consumer = required(&mut row, 4)?;
        let provider = required(&mut row, 5)?;
        let service = required(&mut row, 6)?;
        for position in 7..=10 {
            skip(&mut row, position)?;
        }
        let outcome = required(&mut row, 11)?;
        let request_bytes = required(&mut row, 12)?;
        let response_bytes = required(&mut row, 13)?;
        for position in 14..=18 {
            skip(&mut row, position)?;
        }
        let total_us = required(&mut row, 19)?;
        skip(&mut row, 20)?;
        skip(&mut row, 21)?;
        // The version and its fields, if any: not the summary's concern.
        while row.next_element::<IgnoredAny>()?.is_some() {}
        Ok(SummaryFields {
            time,
            kind,
            consumer,
            provider,
            service,
            outcome,
            request_bytes,
            response_bytes,
            total_us,
        })
    }
}

/// The summary's fields of every entry of a block's `entries`; `None` when they are not a
/// block's entries (an edited file).
pub fn summary_fields(entries: &[u8]) -> Option<Vec<SummaryFields>> {
    serde_json::from_slice(entries).ok()
}

/// Every entry of a block's `entries`, read back whole; `None` when they are not a block's
/// entries (an edited store). Nothing is checked against the chain: that is [`BlockVerifier`]'s.
pub fn decode(entries: &[u8]) -> Option<Vec<StoredEntry>> {
    serde_json::from_slice::<Vec<StoredRow>>(entries)
        .ok()
        .map(|rows| rows.into_iter().map(|row| row.0).collect())
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
            let StoredRow(stored) = serde_json::from_str::<StoredRow>(row.get())
                .map_err(|_| unreadable(self.expected()))?;
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
    use crate::entry::{EntryKind, GENESIS_HASH, chain_entries, sha256_hex};

    fn entry(index: usize, time: &str) -> AuditEntry {
        AuditEntry {
            time: time.to_owned(),
            kind: if index.is_multiple_of(2) {
                EntryKind::Exchange
            } else {
                EntryKind::Certificate
            },
            request_id: format!("request-\"{index}\"-请求"),
            exchange_id: Some(format!("0190a3b4-5e6f-7a8b-9c0d-{index:012}")),
            consumer: "tax".to_owned(),
            provider: (!index.is_multiple_of(3)).then(|| "market-regulation".to_owned()),
            service: Some("business-licenses".to_owned()),
            method: "GET".to_owned(),
            path_sha256: Some(sha256_hex(format!("/{index}").as_bytes())),
            purpose_sha256: None,
            purpose: None,
            status: 200,
            outcome: "ok".to_owned(),
            request_bytes: index.is_multiple_of(2).then_some(0),
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
            "gw-1",
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
            .map(|row| StoredRow::deserialize(row).unwrap().0)
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

    /// `stored` rewritten as an earlier gateway chained it: version 1, no exchange ids.
    fn chain_v1(count: usize) -> Vec<StoredEntry> {
        let entries = (1..=count).map(|sequence| {
            let mut entry = entry(sequence, "2026-11-28T01:02:03.456Z");
            entry.exchange_id = None;
            entry
        });
        crate::entry::chain_entries_in(
            EncodingVersion::V1,
            AuditHash::Sha256,
            GENESIS_HASH,
            0,
            None,
            entries,
        )
    }

    #[test]
    fn version_1_rows_keep_their_layout_and_later_rows_append_version_exchange_id_and_gateway() {
        let old = chain_v1(2);
        let old_block = encode(&old).unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&old_block.entries).unwrap();
        assert_eq!(
            rows[0].as_array().unwrap().len(),
            stored_fields_v1().count()
        );
        let new = chain(1);
        let new_block = encode(&new).unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&new_block.entries).unwrap();
        let names: Vec<&str> = stored_fields().collect();
        assert_eq!(rows[0].as_array().unwrap().len(), names.len());
        assert_eq!(names[VERSION_POSITION], "version");
        assert_eq!(rows[0][VERSION_POSITION], 4);
        assert_eq!(
            rows[0][VERSION_POSITION + 1],
            "0190a3b4-5e6f-7a8b-9c0d-000000000000"
        );
        assert_eq!(names[VERSION_POSITION + 2], "gateway");
        assert_eq!(rows[0][VERSION_POSITION + 2], "gw-1");
        assert_eq!(names[VERSION_POSITION + 3], "purpose");
        // A version 2 row ends at its exchange id.
        let two = crate::entry::chain_entries_in(
            EncodingVersion::V2,
            AuditHash::Sha256,
            GENESIS_HASH,
            0,
            Some("gw-1"),
            [entry(0, "2026-11-28T01:02:03.456Z")],
        );
        let two_block = encode(&two).unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&two_block.entries).unwrap();
        assert_eq!(rows[0].as_array().unwrap().len(), VERSION_POSITION + 2);
        assert_eq!(decode(two_block.entries.as_bytes()).unwrap(), two);
        // Both read back as written, and a chain of both verifies block by block.
        let read = |block: &Block| -> Vec<StoredEntry> {
            serde_json::from_str::<Vec<StoredRow>>(&block.entries)
                .unwrap()
                .into_iter()
                .map(|row| row.0)
                .collect()
        };
        assert_eq!(read(&old_block), old);
        assert_eq!(read(&new_block), new);
        let mut verifier = BlockVerifier::new(AuditHash::Sha256);
        verifier.next(stored(&old_block)).unwrap();
        let mut head = [0u8; 32];
        hex::decode_to_slice(&old.last().unwrap().hash, &mut head).unwrap();
        let continued = chain_entries(
            AuditHash::Sha256,
            head,
            2,
            "gw-1",
            [entry(2, "2026-11-28T01:02:04.000Z")],
        );
        verifier.next(stored(&encode(&continued).unwrap())).unwrap();
        assert_eq!(verifier.count(), 3);
    }

    #[test]
    fn a_stored_version_must_be_known_and_match_the_fields_that_follow() {
        let new = encode(&chain(1)).unwrap();
        let row: serde_json::Value = serde_json::from_str::<Vec<serde_json::Value>>(&new.entries)
            .unwrap()
            .remove(0);
        let with = |edit: &dyn Fn(&mut Vec<serde_json::Value>)| {
            let mut fields = row.as_array().unwrap().clone();
            edit(&mut fields);
            serde_json::from_value::<StoredRow>(serde_json::Value::Array(fields)).is_ok()
        };
        assert!(with(&|_| {}));
        for (what, edit) in [
            (
                "version 1 stored",
                &(|fields: &mut Vec<serde_json::Value>| fields[VERSION_POSITION] = 1.into())
                    as &dyn Fn(&mut Vec<serde_json::Value>),
            ),
            ("an unknown version", &|fields| {
                fields[VERSION_POSITION] = 5.into()
            }),
            ("version 2 with version 4's fields", &|fields| {
                fields[VERSION_POSITION] = 2.into()
            }),
            ("version 3 with version 4's fields", &|fields| {
                fields[VERSION_POSITION] = 3.into()
            }),
            ("the purpose missing", &|fields| {
                fields.pop();
            }),
            ("the purpose retyped", &|fields| {
                fields[VERSION_POSITION + 3] = 7.into()
            }),
            ("the gateway retyped", &|fields| {
                fields[VERSION_POSITION + 2] = 7.into()
            }),
            ("a field appended", &|fields| fields.push("more".into())),
            ("the exchange id retyped", &|fields| {
                fields[VERSION_POSITION + 1] = 5.into()
            }),
        ] {
            assert!(!with(edit), "{what} was read as an entry");
        }
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
        // Version 1 rows too.
        let old = encode(&chain_v1(2)).unwrap();
        let fields = summary_fields(old.entries.as_bytes()).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].total_us, 1502);
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
