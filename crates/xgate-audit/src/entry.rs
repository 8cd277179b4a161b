//! Audit entries, their canonical encoding and the hash chain: pure functions over values, no
//! files or clocks, so an auditor can re-implement them from this page and crates/xgate-audit/FORMAT.md.
//!
//! The canonical encoding of an entry of version N is the bytes `xgate-audit-vN` followed by
//! every field of that version ([`EncodingVersion::fields`]: the fields of version 1, then those
//! each later version adds, in order), each as:
//! - `0x00` when the field is absent (SQL `NULL`);
//! - `0x01`, the length of the value's UTF-8 text as a 4-byte big-endian number, the text.
//!
//! Numbers are written as decimal text without sign or leading zeros; the time as stored
//! (`2026-11-28T01:02:03.456Z`). The chain: `hash(1) = H(32 zero bytes ‖ canonical(1))` and
//! `hash(n) = H(hash(n-1) ‖ canonical(n))`, with the 32 raw bytes of each hash (stored as
//! lowercase hex), `H` being SHA-256 or SM3 (GB/T 32905).
//!
//! Every entry keeps the version it was written with, and verifies by it: entries written by an
//! earlier gateway keep their encoding after an upgrade, and the chain runs on across versions.
//! A new version only adds fields at the end ([`EncodingVersion::added_fields`]), so each
//! version's encoding is the previous one's with a new prefix and more fields.

use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The hash function chaining audit entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditHash {
    /// SHA-256 (the default).
    Sha256,
    /// SM3 (GB/T 32905).
    Sm3,
}

/// The fields of version 1's canonical encoding, in encoding order.
pub const FIELDS_V1: [&str; 21] = [
    "sequence",
    "time",
    "kind",
    "request_id",
    "consumer",
    "provider",
    "service",
    "method",
    "path_sha256",
    "purpose_sha256",
    "status",
    "outcome",
    "request_bytes",
    "response_bytes",
    "request_sha256",
    "response_sha256",
    "request_schema",
    "response_schema",
    "subject_sha256",
    "total_us",
    "upstream_us",
];

/// The fields version 2 adds after those of version 1.
pub const ADDED_IN_V2: [&str; 1] = ["exchange_id"];

/// The fields version 3 adds after those of version 2.
pub const ADDED_IN_V3: [&str; 1] = ["gateway"];

/// The fields version 4 adds after those of version 3. From version 4 on, every digest of
/// personal data (`path_sha256`, `purpose_sha256`, `request_sha256`, `response_sha256`,
/// `subject_sha256`) is an HMAC under the deployment's audit key ([`crate::key`]), not a plain
/// SHA-256; the field names stay, so that queries and tools written for earlier entries run on.
pub const ADDED_IN_V4: [&str; 1] = ["purpose"];

/// Which canonical encoding an entry was chained with. Each version adds fields after those of
/// the one before; a gateway writes [`EncodingVersion::CURRENT`] and verifies every version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EncodingVersion {
    /// The first encoding (entries written before the gateway's own exchange id existed).
    V1,
    /// Version 1's fields and `exchange_id`.
    V2,
    /// Version 2's fields and `gateway` (the instance that committed the entry).
    V3,
    /// Version 3's fields and `purpose` (a vocabulary code, in clear); digests are keyed.
    V4,
}

impl EncodingVersion {
    /// The version new entries are written with.
    pub const CURRENT: EncodingVersion = EncodingVersion::V4;

    /// Every version, oldest first.
    pub const ALL: [EncodingVersion; 4] = [
        EncodingVersion::V1,
        EncodingVersion::V2,
        EncodingVersion::V3,
        EncodingVersion::V4,
    ];

    /// Its number (as stored and in the prefix).
    pub fn number(self) -> u64 {
        match self {
            EncodingVersion::V1 => 1,
            EncodingVersion::V2 => 2,
            EncodingVersion::V3 => 3,
            EncodingVersion::V4 => 4,
        }
    }

    /// The version of a stored number.
    pub fn from_number(number: u64) -> Option<EncodingVersion> {
        EncodingVersion::ALL
            .into_iter()
            .find(|version| version.number() == number)
    }

    /// The bytes the encoding starts with.
    fn prefix(self) -> &'static [u8] {
        match self {
            EncodingVersion::V1 => b"xgate-audit-v1",
            EncodingVersion::V2 => b"xgate-audit-v2",
            EncodingVersion::V3 => b"xgate-audit-v3",
            EncodingVersion::V4 => b"xgate-audit-v4",
        }
    }

    /// The fields this version adds to the one before (for version 1, all of its fields).
    pub fn added_fields(self) -> &'static [&'static str] {
        match self {
            EncodingVersion::V1 => &FIELDS_V1,
            EncodingVersion::V2 => &ADDED_IN_V2,
            EncodingVersion::V3 => &ADDED_IN_V3,
            EncodingVersion::V4 => &ADDED_IN_V4,
        }
    }

    /// Every field of this version's encoding, in encoding order.
    pub fn fields(self) -> impl Iterator<Item = &'static str> {
        EncodingVersion::ALL
            .into_iter()
            .filter(move |version| *version <= self)
            .flat_map(|version| version.added_fields().iter().copied())
    }
}

impl Serialize for EncodingVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.number())
    }
}

/// The hash before the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// What an entry records: an exchange (SPEC §3) or a certificate lookup (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A call on `/exchange/...`.
    Exchange,
    /// A lookup on `/certificates/...`.
    Certificate,
}

impl EntryKind {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Exchange => "exchange",
            EntryKind::Certificate => "certificate",
        }
    }

    /// Reads a stored word.
    pub fn parse(text: &str) -> Option<EntryKind> {
        match text {
            "exchange" => Some(EntryKind::Exchange),
            "certificate" => Some(EntryKind::Certificate),
            _ => None,
        }
    }
}

/// One audit entry before the writer numbers and chains it. Nothing in it is a record body, a
/// token, a raw certificate id or subject, a raw path or a free-text purpose: those appear only
/// as digests, keyed under the audit key from encoding version 4 on ([`ADDED_IN_V4`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When the gateway finished the call: RFC 3339, UTC, milliseconds
    /// (`2026-11-28T01:02:03.456Z`).
    pub time: String,
    /// Exchange or certificate lookup.
    pub kind: EntryKind,
    /// The request id: the caller's `X-Request-Id` (which another call may repeat) or one
    /// generated.
    pub request_id: String,
    /// The gateway's own id of the call (`Xgate-Exchange-Id`), unique to it. Absent only from
    /// entries of encoding version 1, written before it existed.
    pub exchange_id: Option<String>,
    /// The identified consumer, or `unknown`.
    pub consumer: String,
    /// The providing (for certificates: issuing) department, once routed.
    pub provider: Option<String>,
    /// The service name, or the certificate type.
    pub service: Option<String>,
    /// The request method.
    pub method: String,
    /// SHA-256 (hex) of the request path without the query: a path can hold a personal
    /// identifier, so only its digest is kept.
    pub path_sha256: Option<String>,
    /// The digest (hex) of the `Xgate-Purpose` text, when the caller sent one that is not a
    /// code of the deployment's vocabulary: free text may name a person.
    pub purpose_sha256: Option<String>,
    /// The `Xgate-Purpose` code, when the caller sent one of the deployment's vocabulary
    /// (`[purposes]`): a code is not personal, so it is kept in clear. Absent from entries of
    /// encoding versions 1 to 3.
    pub purpose: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The outcome word of SPEC §9.
    pub outcome: String,
    /// Request body bytes: read, or declared by `Content-Length` when the body streamed.
    pub request_bytes: Option<u64>,
    /// Response body bytes: built, or declared by the upstream's `Content-Length` when the
    /// body streamed.
    pub response_bytes: Option<u64>,
    /// SHA-256 (hex) of the request body as the caller sent it, when the gateway read it.
    pub request_sha256: Option<String>,
    /// SHA-256 (hex) of the response body as the caller received it, when the gateway built it.
    pub response_sha256: Option<String>,
    /// `name@version` of the request schema.
    pub request_schema: Option<String>,
    /// `name@version` of the response schema.
    pub response_schema: Option<String>,
    /// The digest (hex) of whose record the call concerned: a certificate lookup's id, or an
    /// exchange's subject (SPEC §15), keyed with its kind ([`crate::key::AuditKey::subject`]).
    pub subject_sha256: Option<String>,
    /// Total time in the gateway, microseconds.
    pub total_us: u64,
    /// Time waiting for the upstream (or issuer), microseconds.
    pub upstream_us: Option<u64>,
}

/// An entry as stored: numbered and chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEntry {
    /// Its place in the chain, from 1 without gaps.
    pub sequence: u64,
    /// The canonical encoding it was chained with.
    pub version: EncodingVersion,
    /// What was recorded.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// The instance name of the gateway whose writer committed it (`[gateway] instance`).
    /// Absent from entries of encoding versions 1 and 2, written before it was recorded.
    pub gateway: Option<String>,
    /// `H(previous hash ‖ canonical entry)`, lowercase hex.
    pub hash: String,
}

/// The lowercase hex SHA-256 of some bytes: how ids, paths, purposes and bodies are kept.
pub fn sha256_hex(bytes: &[u8]) -> String {
    digest_hex(&Sha256::digest(bytes).into())
}

/// A digest as lowercase hex. (`hex::encode` collects a `char` iterator; writing into a buffer
/// is several times faster, and this runs a few times per exchange.)
pub fn digest_hex(digest: &[u8; 32]) -> String {
    let mut text = [0u8; 64];
    // The output is exactly twice the input, the one case `encode_to_slice` fails on.
    hex::encode_to_slice(digest, &mut text).ok();
    String::from_utf8(text.to_vec()).unwrap_or_default()
}

/// The canonical encoding of `version` of an entry at `sequence` committed by `gateway` (see
/// the module documentation; versions before 3 do not encode the gateway).
pub fn canonical(
    version: EncodingVersion,
    sequence: u64,
    entry: &AuditEntry,
    gateway: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    encode_canonical(&mut out, version, sequence, entry, gateway);
    out
}

/// Appends the canonical encoding of `version` of an entry at `sequence` to `out`.
fn encode_canonical(
    out: &mut Vec<u8>,
    version: EncodingVersion,
    sequence: u64,
    entry: &AuditEntry,
    gateway: Option<&str>,
) {
    fn present(out: &mut Vec<u8>, text: &[u8]) {
        out.push(1);
        // Every field is far below 4 GiB (ids and words are bounded by header limits).
        let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(text);
    }
    fn optional(out: &mut Vec<u8>, text: Option<&str>) {
        match text {
            Some(text) => present(out, text.as_bytes()),
            None => out.push(0),
        }
    }
    fn number(out: &mut Vec<u8>, value: u64) {
        present(out, itoa::Buffer::new().format(value).as_bytes());
    }
    fn optional_number(out: &mut Vec<u8>, value: Option<u64>) {
        match value {
            Some(value) => number(out, value),
            None => out.push(0),
        }
    }
    out.extend_from_slice(version.prefix());
    number(out, sequence);
    present(out, entry.time.as_bytes());
    present(out, entry.kind.as_str().as_bytes());
    present(out, entry.request_id.as_bytes());
    present(out, entry.consumer.as_bytes());
    optional(out, entry.provider.as_deref());
    optional(out, entry.service.as_deref());
    present(out, entry.method.as_bytes());
    optional(out, entry.path_sha256.as_deref());
    optional(out, entry.purpose_sha256.as_deref());
    number(out, u64::from(entry.status));
    present(out, entry.outcome.as_bytes());
    optional_number(out, entry.request_bytes);
    optional_number(out, entry.response_bytes);
    optional(out, entry.request_sha256.as_deref());
    optional(out, entry.response_sha256.as_deref());
    optional(out, entry.request_schema.as_deref());
    optional(out, entry.response_schema.as_deref());
    optional(out, entry.subject_sha256.as_deref());
    number(out, entry.total_us);
    optional_number(out, entry.upstream_us);
    // Each later version's fields, in `EncodingVersion::added_fields` order.
    if version >= EncodingVersion::V2 {
        optional(out, entry.exchange_id.as_deref());
    }
    if version >= EncodingVersion::V3 {
        optional(out, gateway);
    }
    if version >= EncodingVersion::V4 {
        optional(out, entry.purpose.as_deref());
    }
}

/// `H(previous ‖ canonical(version, sequence, entry, gateway))`.
pub fn chain_hash(
    hash: AuditHash,
    previous: &[u8; 32],
    version: EncodingVersion,
    sequence: u64,
    entry: &AuditEntry,
    gateway: Option<&str>,
) -> [u8; 32] {
    let mut input = Vec::with_capacity(640);
    input.extend_from_slice(previous);
    encode_canonical(&mut input, version, sequence, entry, gateway);
    match hash {
        AuditHash::Sha256 => Sha256::digest(&input).into(),
        AuditHash::Sm3 => sm3::Sm3::digest(&input).into(),
    }
}

/// The first thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The sequence number of the first entry that does not verify.
    pub sequence: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks a chain entry by entry, in stored order, keeping only the previous hash: bounded
/// memory whatever the length.
#[derive(Debug)]
pub struct ChainVerifier {
    hash: AuditHash,
    previous: [u8; 32],
    count: u64,
}

impl ChainVerifier {
    /// A verifier at the start of a chain.
    pub fn new(hash: AuditHash) -> ChainVerifier {
        ChainVerifier {
            hash,
            previous: GENESIS_HASH,
            count: 0,
        }
    }

    /// Checks the next stored entry: its number follows the previous one (a removed or
    /// inserted entry breaks this) and its hash is recomputed (a changed, swapped or inserted
    /// entry breaks this, and so does every later entry's hash).
    pub fn next(&mut self, stored: &StoredEntry) -> Result<(), Break> {
        let expected = self.count + 1;
        if stored.sequence != expected {
            return Err(Break {
                sequence: stored.sequence,
                reason: format!(
                    "sequence number {} where {expected} was expected: an entry was removed or inserted",
                    stored.sequence
                ),
            });
        }
        let computed = chain_hash(
            self.hash,
            &self.previous,
            stored.version,
            stored.sequence,
            &stored.entry,
            stored.gateway.as_deref(),
        );
        if digest_hex(&computed) != stored.hash {
            return Err(Break {
                sequence: stored.sequence,
                reason: "the stored hash does not match the entry and its predecessor: the entry was changed, moved or inserted".to_owned(),
            });
        }
        self.previous = computed;
        self.count = expected;
        Ok(())
    }

    /// How many entries verified.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hash of the last verified entry (the chain's head), lowercase hex.
    pub fn head(&self) -> String {
        digest_hex(&self.previous)
    }
}

/// Verifies a whole chain held in memory.
pub fn verify_chain<'e>(
    hash: AuditHash,
    entries: impl IntoIterator<Item = &'e StoredEntry>,
) -> Result<u64, Break> {
    let mut verifier = ChainVerifier::new(hash);
    for stored in entries {
        verifier.next(stored)?;
    }
    Ok(verifier.count())
}

/// Numbers and chains entries after `previous` with the current encoding, stamped with the
/// committing gateway's instance name (the writer's step, pure).
pub fn chain_entries(
    hash: AuditHash,
    previous: [u8; 32],
    sequence: u64,
    gateway: &str,
    entries: impl IntoIterator<Item = AuditEntry>,
) -> Vec<StoredEntry> {
    chain_entries_in(
        EncodingVersion::CURRENT,
        hash,
        previous,
        sequence,
        Some(gateway),
        entries,
    )
}

/// [`chain_entries`] with the encoding `version` (the tests chain entries as earlier gateways
/// wrote them). The gateway is kept only by versions that record it (3 on).
pub fn chain_entries_in(
    version: EncodingVersion,
    hash: AuditHash,
    mut previous: [u8; 32],
    mut sequence: u64,
    gateway: Option<&str>,
    entries: impl IntoIterator<Item = AuditEntry>,
) -> Vec<StoredEntry> {
    let gateway = gateway
        .filter(|_| version >= EncodingVersion::V3)
        .map(str::to_owned);
    entries
        .into_iter()
        .map(|entry| {
            sequence += 1;
            previous = chain_hash(
                hash,
                &previous,
                version,
                sequence,
                &entry,
                gateway.as_deref(),
            );
            StoredEntry {
                sequence,
                version,
                entry,
                gateway: gateway.clone(),
                hash: digest_hex(&previous),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(request_id: &str) -> AuditEntry {
        AuditEntry {
            time: "2026-11-28T01:02:03.456Z".to_owned(),
            kind: EntryKind::Exchange,
            request_id: request_id.to_owned(),
            exchange_id: Some("0190a3b4-5e6f-7a8b-9c0d-1e2f3a4b5c6d".to_owned()),
            consumer: "tax".to_owned(),
            provider: Some("market-regulation".to_owned()),
            service: Some("business-licenses".to_owned()),
            method: "GET".to_owned(),
            path_sha256: Some(sha256_hex(
                b"/exchange/market-regulation/business-licenses/1",
            )),
            purpose_sha256: None,
            purpose: None,
            status: 200,
            outcome: "ok".to_owned(),
            request_bytes: Some(0),
            response_bytes: Some(120),
            request_sha256: None,
            response_sha256: Some(sha256_hex(b"{}")),
            request_schema: None,
            response_schema: Some("business-license@1".to_owned()),
            subject_sha256: None,
            total_us: 1500,
            upstream_us: Some(900),
        }
    }

    fn chain(hash: AuditHash, count: usize) -> Vec<StoredEntry> {
        chain_entries(
            hash,
            GENESIS_HASH,
            0,
            "gw-1",
            (0..count).map(|index| entry(&format!("request-{index}"))),
        )
    }

    #[test]
    fn sm3_matches_the_standard_test_vector() {
        // GB/T 32905-2016, appendix A.1: "abc".
        let digest: [u8; 32] = sm3::Sm3::digest(b"abc").into();
        assert_eq!(
            hex::encode(digest),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn the_canonical_encoding_is_length_prefixed_and_marks_absent_fields() {
        let mut small = entry("r");
        small.provider = None;
        for version in EncodingVersion::ALL {
            let encoded = canonical(version, 7, &small, Some("gw-1"));
            // sequence, time, kind, request id, consumer, then the absent provider.
            let mut expected = format!("xgate-audit-v{}", version.number()).into_bytes();
            for text in ["7", "2026-11-28T01:02:03.456Z", "exchange", "r", "tax"] {
                expected.push(1);
                expected.extend_from_slice(&(text.len() as u32).to_be_bytes());
                expected.extend_from_slice(text.as_bytes());
            }
            expected.push(0);
            assert!(encoded.starts_with(&expected), "{version:?}");
        }
    }

    #[test]
    fn version_2_is_version_1_with_its_prefix_and_the_exchange_id_after_every_field() {
        let full = entry("r");
        let one = canonical(EncodingVersion::V1, 3, &full, Some("gw-1"));
        let two = canonical(EncodingVersion::V2, 3, &full, Some("gw-1"));
        let id = full.exchange_id.as_deref().unwrap();
        let mut expected = b"xgate-audit-v2".to_vec();
        expected.extend_from_slice(&one[b"xgate-audit-v1".len()..]);
        expected.push(1);
        expected.extend_from_slice(&(id.len() as u32).to_be_bytes());
        expected.extend_from_slice(id.as_bytes());
        assert_eq!(two, expected);
        // Version 1 has no exchange id: it is not in its encoding even when the entry has one.
        let mut without = full.clone();
        without.exchange_id = None;
        assert_eq!(canonical(EncodingVersion::V1, 3, &without, None), one);
        // In version 2 an absent id is marked absent.
        assert_eq!(
            canonical(EncodingVersion::V2, 3, &without, None),
            [&b"xgate-audit-v2"[..], &one[14..], &[0]].concat()
        );
        assert_eq!(
            EncodingVersion::V2.fields().collect::<Vec<_>>(),
            FIELDS_V1
                .iter()
                .chain(&ADDED_IN_V2)
                .copied()
                .collect::<Vec<_>>()
        );
        for version in EncodingVersion::ALL {
            assert_eq!(
                EncodingVersion::from_number(version.number()),
                Some(version)
            );
        }
        assert_eq!(EncodingVersion::from_number(0), None);
        assert_eq!(EncodingVersion::from_number(5), None);
    }

    #[test]
    fn version_4_is_version_3_with_its_prefix_and_the_purpose_code_after_every_field() {
        let mut full = entry("r");
        full.purpose = Some("tax-assessment".to_owned());
        let three = canonical(EncodingVersion::V3, 3, &full, Some("gw-2"));
        let four = canonical(EncodingVersion::V4, 3, &full, Some("gw-2"));
        let mut expected = b"xgate-audit-v4".to_vec();
        expected.extend_from_slice(&three[b"xgate-audit-v3".len()..]);
        expected.extend_from_slice(b"\x01\x00\x00\x00\x0etax-assessment");
        assert_eq!(four, expected);
        // Versions before 4 do not encode a purpose code, even when the entry has one.
        let mut without = full.clone();
        without.purpose = None;
        assert_eq!(
            canonical(EncodingVersion::V3, 3, &without, Some("gw-2")),
            three
        );
        assert_eq!(EncodingVersion::CURRENT, EncodingVersion::V4);
        assert_eq!(EncodingVersion::V4.fields().last(), Some("purpose"));
        // The hash covers the code.
        let mut chained = chain_entries(AuditHash::Sha256, GENESIS_HASH, 0, "gw-2", [full]);
        assert_eq!(verify_chain(AuditHash::Sha256, &chained), Ok(1));
        chained[0].entry.purpose = Some("benefit-review".to_owned());
        assert!(verify_chain(AuditHash::Sha256, &chained).is_err());
    }

    #[test]
    fn version_3_is_version_2_with_its_prefix_and_the_gateway_after_every_field() {
        let full = entry("r");
        let two = canonical(EncodingVersion::V2, 3, &full, None);
        let three = canonical(EncodingVersion::V3, 3, &full, Some("gw-2"));
        let mut expected = b"xgate-audit-v3".to_vec();
        expected.extend_from_slice(&two[b"xgate-audit-v2".len()..]);
        expected.extend_from_slice(b"\x01\x00\x00\x00\x04gw-2");
        assert_eq!(three, expected);
        // Versions before 3 do not encode a gateway, even when one is given.
        assert_eq!(canonical(EncodingVersion::V2, 3, &full, Some("gw-2")), two);
        assert_eq!(
            canonical(EncodingVersion::V3, 3, &full, None),
            [&b"xgate-audit-v3"[..], &two[14..], &[0]].concat()
        );
        assert_eq!(
            EncodingVersion::V3.fields().last(),
            Some("gateway"),
            "the gateway is version 3's last field"
        );
        // The writer stamps the gateway, and the hash covers it.
        let mut chained = chain_entries(AuditHash::Sha256, GENESIS_HASH, 0, "gw-2", [full]);
        assert_eq!(chained[0].gateway.as_deref(), Some("gw-2"));
        assert_eq!(verify_chain(AuditHash::Sha256, &chained), Ok(1));
        chained[0].gateway = Some("gw-3".to_owned());
        assert!(verify_chain(AuditHash::Sha256, &chained).is_err());
        // Earlier versions keep no gateway.
        let old = chain_entries_in(
            EncodingVersion::V2,
            AuditHash::Sha256,
            GENESIS_HASH,
            0,
            Some("gw-2"),
            [entry("r")],
        );
        assert_eq!(old[0].gateway, None);
    }

    #[test]
    fn numbers_are_encoded_as_their_decimal_text() {
        for value in [0, 7, 10, 1500, u64::MAX] {
            let mut small = entry("r");
            small.total_us = value;
            let encoded = canonical(EncodingVersion::V1, 1, &small, None);
            let text = value.to_string();
            let mut expected = vec![1];
            expected.extend_from_slice(&(text.len() as u32).to_be_bytes());
            expected.extend_from_slice(text.as_bytes());
            // In version 1, total_us is followed only by upstream_us (present: 0x01, length,
            // "900").
            let tail = [&expected[..], b"\x01\x00\x00\x00\x03900"].concat();
            assert!(encoded.ends_with(&tail), "{value}");
        }
        assert_eq!(digest_hex(&[0xab; 32]), "ab".repeat(32));
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        // "ab" + "c" and "a" + "bc" must not encode alike.
        let mut first = entry("r");
        first.consumer = "ab".to_owned();
        first.method = "c".to_owned();
        let mut second = entry("r");
        second.consumer = "a".to_owned();
        second.method = "bc".to_owned();
        let v = EncodingVersion::CURRENT;
        assert_ne!(
            canonical(v, 1, &first, None),
            canonical(v, 1, &second, None)
        );
        // An absent field differs from an empty one.
        let mut absent = entry("r");
        absent.provider = None;
        let mut empty = entry("r");
        empty.provider = Some(String::new());
        assert_ne!(
            canonical(v, 1, &absent, None),
            canonical(v, 1, &empty, None)
        );
    }

    #[test]
    fn a_fresh_chain_verifies_with_both_hashes_and_not_with_the_other() {
        for (hash, other) in [
            (AuditHash::Sha256, AuditHash::Sm3),
            (AuditHash::Sm3, AuditHash::Sha256),
        ] {
            let entries = chain(hash, 5);
            assert_eq!(verify_chain(hash, &entries), Ok(5));
            assert_eq!(
                verify_chain(other, &entries).map_err(|b| b.sequence),
                Err(1)
            );
        }
    }

    #[test]
    fn the_first_hash_is_over_the_genesis_hash_and_the_encoding() {
        let entries = chain(AuditHash::Sha256, 1);
        let mut input = GENESIS_HASH.to_vec();
        input.extend_from_slice(&canonical(
            EncodingVersion::CURRENT,
            1,
            &entries[0].entry,
            entries[0].gateway.as_deref(),
        ));
        assert_eq!(entries[0].hash, sha256_hex(&input));
    }

    #[test]
    fn every_kind_of_tampering_is_caught_at_the_first_broken_entry() {
        let hash = AuditHash::Sha256;
        let original = chain(hash, 6);

        let mut changed = original.clone();
        changed[2].entry.status = 500;
        assert_eq!(verify_chain(hash, &changed).map_err(|b| b.sequence), Err(3));

        let mut removed = original.clone();
        removed.remove(3);
        assert_eq!(verify_chain(hash, &removed).map_err(|b| b.sequence), Err(5));

        let mut removed_last = original.clone();
        removed_last.pop();
        // Removing the newest entry leaves a valid shorter chain: only the count (and the
        // head hash an auditor noted earlier) shows it.
        assert_eq!(verify_chain(hash, &removed_last), Ok(5));

        let mut inserted = original.clone();
        let mut intruder = original[1].clone();
        intruder.entry.request_id = "intruder".to_owned();
        inserted.insert(2, intruder);
        for (index, stored) in inserted.iter_mut().enumerate() {
            stored.sequence = index as u64 + 1;
        }
        assert_eq!(
            verify_chain(hash, &inserted).map_err(|b| b.sequence),
            Err(3)
        );

        let mut swapped = original.clone();
        let (first, second) = (swapped[1].entry.clone(), swapped[4].entry.clone());
        swapped[1].entry = second;
        swapped[4].entry = first;
        let hashes = (swapped[1].hash.clone(), swapped[4].hash.clone());
        swapped[1].hash = hashes.1;
        swapped[4].hash = hashes.0;
        assert_eq!(verify_chain(hash, &swapped).map_err(|b| b.sequence), Err(2));

        let mut renumbered = original.clone();
        renumbered[0].sequence = 2;
        assert_eq!(
            verify_chain(hash, &renumbered).map_err(|b| b.sequence),
            Err(2)
        );
    }

    #[test]
    fn a_chain_runs_on_from_version_1_entries_into_the_current_version_and_a_changed_version_breaks_it()
     {
        let hash = AuditHash::Sha256;
        // Three entries as an earlier gateway chained them, without exchange ids.
        let mut previous = GENESIS_HASH;
        let mut old: Vec<StoredEntry> = (1..=3)
            .map(|sequence| {
                let mut entry = entry(&format!("old-{sequence}"));
                entry.exchange_id = None;
                previous = chain_hash(hash, &previous, EncodingVersion::V1, sequence, &entry, None);
                StoredEntry {
                    sequence,
                    version: EncodingVersion::V1,
                    entry,
                    gateway: None,
                    hash: digest_hex(&previous),
                }
            })
            .collect();
        let new = chain_entries(hash, previous, 3, "gw-1", [entry("new-4"), entry("new-5")]);
        assert!(
            new.iter()
                .all(|stored| stored.version == EncodingVersion::CURRENT)
        );
        let all: Vec<&StoredEntry> = old.iter().chain(&new).collect();
        assert_eq!(verify_chain(hash, all), Ok(5));
        // The version is covered by the hash: claiming another breaks the entry.
        old[1].version = EncodingVersion::V2;
        assert_eq!(
            verify_chain(hash, old.iter().chain(&new)).map_err(|b| b.sequence),
            Err(2)
        );
    }

    #[test]
    fn chaining_continues_from_a_stored_head() {
        let hash = AuditHash::Sm3;
        let first = chain(hash, 3);
        let mut head = [0u8; 32];
        hex::decode_to_slice(&first[2].hash, &mut head).unwrap();
        let more = chain_entries(hash, head, 3, "gw-2", [entry("later")]);
        let all: Vec<_> = first.iter().chain(&more).collect();
        assert_eq!(verify_chain(hash, all), Ok(4));
    }
}
