//! Semantic compatibility between schema versions (SPEC §6): a pure function over documents.
//!
//! A change is accepted only when it is *proven* safe: both versions are brought to
//! `jsonschema`'s canonical form, their difference is computed as a schema (`subtract`), and
//! the difference must be proven to accept no value at all (`satisfiability() == No`).
//! `backward` (every record valid under the old version stays valid) proves `old \ new` empty;
//! `forward` (every record valid under the new version was valid under the old one) proves
//! `new \ old` empty; `full` both. The transitive modes do the same against every earlier
//! version instead of only the latest. There is no list of allowed edits.
//!
//! What the library cannot decide is a refusal with its reason, never a pass: a version the
//! canonical form cannot model (`Raw`), a difference it cannot express, or one whose emptiness
//! it cannot establish (`Unknown`). Where the difference is known it is returned as a schema of
//! the records that stop (backward) or start (forward) being accepted.

use jsonschema::canonical::{CanonicalSchema, CanonicalView, Satisfiability};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{Compatibility, SchemaVersion};
use crate::i18n::Lang;
use crate::registry::{Documents, RegistryRetriever, pattern_options};

/// Which way a check goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Every record the earlier version accepts, the new one accepts (`old \ new` is empty).
    Backward,
    /// Every record the new version accepts, the earlier one accepted (`new \ old` is empty).
    Forward,
}

impl Direction {
    /// The direction's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Backward => "backward",
            Direction::Forward => "forward",
        }
    }
}

/// Why one direction against one earlier version is not proven.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// The difference accepts some record: the change is proven unsafe in this direction.
    Accepts {
        /// The schema of the records that stop (backward) or start (forward) being accepted.
        difference: Value,
    },
    /// The difference was computed, but whether it accepts anything could not be decided.
    Undecided {
        /// The schema of the records that may stop (or start) being accepted.
        difference: Value,
    },
    /// The canonical form cannot model a version or the difference, so nothing is proven.
    Unmodelled {
        /// What stopped the proof, in English (library terms).
        reason: String,
    },
}

/// One direction against one earlier version that is not proven safe.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// Which way.
    pub direction: Direction,
    /// The earlier version compared with.
    pub against: SchemaVersion,
    /// The version being registered.
    pub candidate: SchemaVersion,
    /// What was found.
    pub finding: Finding,
}

/// A reason as answered to an admin.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonDocument {
    /// `backward` or `forward`.
    pub direction: &'static str,
    /// The earlier version compared with.
    pub version: u32,
    /// `incompatible` (proven unsafe) or `unproven` (could not be proven safe).
    pub verdict: &'static str,
    /// What it means, in the caller's language.
    pub message: String,
    /// The schema of the records that stop (or start) being accepted, when known.
    pub difference: Option<Value>,
}

impl Reason {
    /// `incompatible` when proven unsafe, `unproven` when not proven either way.
    pub fn verdict(&self) -> &'static str {
        match self.finding {
            Finding::Accepts { .. } => "incompatible",
            Finding::Undecided { .. } | Finding::Unmodelled { .. } => "unproven",
        }
    }

    /// The difference schema, when known.
    pub fn difference(&self) -> Option<&Value> {
        match &self.finding {
            Finding::Accepts { difference } | Finding::Undecided { difference } => Some(difference),
            Finding::Unmodelled { .. } => None,
        }
    }

    /// A sentence saying what failed, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        let (old, new) = (self.against, self.candidate);
        match (lang, self.direction, &self.finding) {
            (Lang::En, Direction::Backward, Finding::Accepts { .. }) => format!(
                "Not backward compatible with version {old}: version {new} rejects records version {old} accepts (see difference)"
            ),
            (Lang::En, Direction::Forward, Finding::Accepts { .. }) => format!(
                "Not forward compatible with version {old}: version {new} accepts records version {old} rejects (see difference)"
            ),
            (Lang::En, direction, Finding::Undecided { .. }) => format!(
                "Cannot prove {} compatibility with version {old}: whether any record falls in the difference could not be decided",
                direction.as_str()
            ),
            (Lang::En, direction, Finding::Unmodelled { reason }) => format!(
                "Cannot prove {} compatibility with version {old}: {reason}",
                direction.as_str()
            ),
            (Lang::Zh, Direction::Backward, Finding::Accepts { .. }) => {
                format!(
                    "与版本 {old} 不向后兼容：版本 {new} 拒绝了版本 {old} 接受的记录（见 difference）"
                )
            }
            (Lang::Zh, Direction::Forward, Finding::Accepts { .. }) => {
                format!(
                    "与版本 {old} 不向前兼容：版本 {new} 接受了版本 {old} 拒绝的记录（见 difference）"
                )
            }
            (Lang::Zh, direction, Finding::Undecided { .. }) => format!(
                "无法证明与版本 {old} {}：无法判定是否有记录落在差异中",
                direction_zh(direction)
            ),
            (Lang::Zh, direction, Finding::Unmodelled { reason }) => {
                format!("无法证明与版本 {old} {}：{reason}", direction_zh(direction))
            }
        }
    }

    /// The reason as answered to an admin.
    pub fn to_document(&self, lang: Lang) -> ReasonDocument {
        ReasonDocument {
            direction: self.direction.as_str(),
            version: self.against.get(),
            verdict: self.verdict(),
            message: self.message(lang),
            difference: self.difference().cloned(),
        }
    }
}

fn direction_zh(direction: Direction) -> &'static str {
    match direction {
        Direction::Backward => "向后兼容",
        Direction::Forward => "向前兼容",
    }
}

/// The outcome of a check: compatible when no reason is left.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Every direction and earlier version not proven safe.
    pub reasons: Vec<Reason>,
}

impl Report {
    /// Whether the new version may be registered.
    pub fn compatible(&self) -> bool {
        self.reasons.is_empty()
    }

    /// The first known difference, for the `difference` member of answers.
    pub fn difference(&self) -> Option<&Value> {
        self.reasons.iter().find_map(Reason::difference)
    }
}

/// The directions a mode checks, and whether against every earlier version.
fn plan(mode: Compatibility) -> (&'static [Direction], bool) {
    const BACKWARD: &[Direction] = &[Direction::Backward];
    const FORWARD: &[Direction] = &[Direction::Forward];
    const BOTH: &[Direction] = &[Direction::Backward, Direction::Forward];
    match mode {
        Compatibility::None => (&[], false),
        Compatibility::Backward => (BACKWARD, false),
        Compatibility::Forward => (FORWARD, false),
        Compatibility::Full => (BOTH, false),
        Compatibility::BackwardTransitive => (BACKWARD, true),
        Compatibility::ForwardTransitive => (FORWARD, true),
        Compatibility::FullTransitive => (BOTH, true),
    }
}

/// Checks `candidate` (to become version `candidate_version`) against the earlier versions
/// (in ascending order; only the last one unless the mode is transitive), resolving `$ref`s to
/// registry URNs from `documents`.
pub fn check(
    mode: Compatibility,
    candidate_version: SchemaVersion,
    candidate: &Value,
    earlier: &[(SchemaVersion, &Value)],
    documents: &Documents,
) -> Report {
    let (directions, transitive) = plan(mode);
    let compared: &[(SchemaVersion, &Value)] = match (directions.is_empty(), transitive) {
        (true, _) => &[],
        (false, true) => earlier,
        (false, false) => earlier
            .len()
            .checked_sub(1)
            .map_or(&[], |last| &earlier[last..]),
    };
    if compared.is_empty() {
        return Report::default();
    }
    let new = canonical(candidate, candidate_version, documents);
    let mut reasons = Vec::new();
    for (version, document) in compared {
        let old = canonical(document, *version, documents);
        for direction in directions {
            let finding = match (&old, &new) {
                (Err(reason), _) | (_, Err(reason)) => Some(Finding::Unmodelled {
                    reason: reason.clone(),
                }),
                (Ok(old), Ok(new)) => match direction {
                    Direction::Backward => prove_empty(old.subtract(new)),
                    Direction::Forward => prove_empty(new.subtract(old)),
                },
            };
            if let Some(finding) = finding {
                reasons.push(Reason {
                    direction: *direction,
                    against: *version,
                    candidate: candidate_version,
                    finding,
                });
            }
        }
    }
    Report { reasons }
}

/// The canonical form of one version, or why the proof cannot use it.
fn canonical(
    document: &Value,
    version: SchemaVersion,
    documents: &Documents,
) -> Result<CanonicalSchema, String> {
    let canonical = jsonschema::canonical::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .with_pattern_options(pattern_options())
        .with_retriever(RegistryRetriever::new(documents.clone()))
        .canonicalize(document)
        .map_err(|error| format!("version {version} cannot be canonicalized: {error}"))?;
    if let CanonicalView::Raw(raw) = canonical.view() {
        let at = raw
            .pointer
            .map(|pointer| format!(" at {:?}", pointer.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        return Err(format!(
            "version {version} uses a construct the canonical form does not model ({}{at})",
            raw.reason.as_str()
        ));
    }
    Ok(canonical)
}

/// `None` when the difference is proven empty; otherwise what is known about it.
fn prove_empty(
    difference: Result<CanonicalSchema, jsonschema::CanonicalizationError>,
) -> Option<Finding> {
    match difference {
        Ok(difference) => match difference.satisfiability() {
            Satisfiability::No => None,
            Satisfiability::Yes => Some(Finding::Accepts {
                difference: difference.to_json_schema(),
            }),
            Satisfiability::Unknown => Some(Finding::Undecided {
                difference: difference.to_json_schema(),
            }),
        },
        Err(error) => Some(Finding::Unmodelled {
            reason: format!("the difference cannot be computed: {error}"),
        }),
    }
}
