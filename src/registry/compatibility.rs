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
//!
//! An undecided or unmodelled refusal is then looked at once more: example records built from the
//! difference and the versions ([`witness`](crate::registry::witness)) are run through both
//! versions' real validators, and one that the earlier version accepts and the new one rejects
//! (or the reverse, forward) proves the change unsafe and is shown to the admin. Examples can
//! only turn "cannot prove" into "proven incompatible", never into a pass.

use jsonschema::canonical::{CanonicalSchema, CanonicalView, Satisfiability};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{Compatibility, SchemaVersion};
use crate::i18n::Lang;
use crate::registry::witness;
use crate::registry::{CompiledSchema, Documents, RegistryRetriever, pattern_options};

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
    /// Some record is accepted by one version and not the other: the change is proven unsafe in
    /// this direction.
    Accepts {
        /// The schema of the records that stop (backward) or start (forward) being accepted,
        /// when the library could compute it.
        difference: Option<Value>,
        /// One such record, checked against both versions, when one was found.
        example: Option<Value>,
    },
    /// The difference was computed, but whether it accepts anything could not be decided.
    Undecided {
        /// The schema of the records that may stop (or start) being accepted.
        difference: Value,
    },
    /// The canonical form cannot model a version or the difference, so nothing is proven.
    Unmodelled {
        /// What stopped the proof.
        cause: Unmodelled,
    },
}

/// Why the canonical form could not be used for a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmodelled {
    /// A version could not be canonicalized at all.
    Failed {
        /// The version.
        version: SchemaVersion,
        /// The library's description.
        error: String,
    },
    /// A version holds a construct the canonical form keeps verbatim (`Raw`).
    Raw {
        /// The version.
        version: SchemaVersion,
        /// The library's label (`unmodeled`, `outgrew_intersections`, ...).
        reason: &'static str,
        /// Where in the version's document, when known.
        pointer: Option<String>,
    },
    /// The difference of the two versions cannot be expressed.
    Difference {
        /// The library's description.
        error: String,
    },
}

impl Unmodelled {
    fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (Unmodelled::Failed { version, error }, Lang::En) => {
                format!("version {version} cannot be brought to canonical form ({error})")
            }
            (Unmodelled::Failed { version, error }, Lang::Zh) => {
                format!("版本 {version} 无法化为规范形式（{error}）")
            }
            (
                Unmodelled::Raw {
                    version,
                    reason,
                    pointer,
                },
                Lang::En,
            ) => {
                let at = pointer
                    .as_deref()
                    .map(|pointer| format!(" at {:?}", excerpt(pointer)))
                    .unwrap_or_default();
                format!(
                    "version {version} uses a construct the canonical form does not model ({reason}){at}"
                )
            }
            (
                Unmodelled::Raw {
                    version,
                    reason,
                    pointer,
                },
                Lang::Zh,
            ) => {
                let at = pointer
                    .as_deref()
                    .map(|pointer| format!("，位置 {:?}", excerpt(pointer)))
                    .unwrap_or_default();
                format!("版本 {version} 含有规范形式无法表达的结构（{reason}）{at}")
            }
            (Unmodelled::Difference { error }, Lang::En) => {
                format!("the difference of the two versions cannot be expressed ({error})")
            }
            (Unmodelled::Difference { error }, Lang::Zh) => {
                format!("两个版本的差异无法表达（{error}）")
            }
        }
    }
}

/// At most 200 characters of a pointer, for messages.
fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
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
    /// A record that stops (or starts) being accepted, checked against both versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<Value>,
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
            Finding::Accepts { difference, .. } => difference.as_ref(),
            Finding::Undecided { difference } => Some(difference),
            Finding::Unmodelled { .. } => None,
        }
    }

    /// A record showing the incompatibility, when one was found.
    pub fn example(&self) -> Option<&Value> {
        match &self.finding {
            Finding::Accepts { example, .. } => example.as_ref(),
            Finding::Undecided { .. } | Finding::Unmodelled { .. } => None,
        }
    }

    /// A sentence saying what failed, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        let (old, new) = (self.against, self.candidate);
        let evidence = self.evidence(lang);
        match (lang, self.direction, &self.finding) {
            (Lang::En, Direction::Backward, Finding::Accepts { .. }) => format!(
                "Not backward compatible with version {old}: version {new} rejects records version {old} accepts{evidence}"
            ),
            (Lang::En, Direction::Forward, Finding::Accepts { .. }) => format!(
                "Not forward compatible with version {old}: version {new} accepts records version {old} rejects{evidence}"
            ),
            (Lang::En, direction, Finding::Undecided { .. }) => format!(
                "Cannot prove {} compatibility with version {old}: whether any record falls in the difference could not be decided",
                direction.as_str()
            ),
            (Lang::En, direction, Finding::Unmodelled { cause }) => format!(
                "Cannot prove {} compatibility with version {old}: {}",
                direction.as_str(),
                cause.message(lang)
            ),
            (Lang::Zh, Direction::Backward, Finding::Accepts { .. }) => {
                format!("与版本 {old} 不向后兼容：版本 {new} 拒绝了版本 {old} 接受的记录{evidence}")
            }
            (Lang::Zh, Direction::Forward, Finding::Accepts { .. }) => {
                format!("与版本 {old} 不向前兼容：版本 {new} 接受了版本 {old} 拒绝的记录{evidence}")
            }
            (Lang::Zh, direction, Finding::Undecided { .. }) => format!(
                "无法证明与版本 {old} {}：无法判定是否有记录落在差异中",
                direction_zh(direction)
            ),
            (Lang::Zh, direction, Finding::Unmodelled { cause }) => format!(
                "无法证明与版本 {old} {}：{}",
                direction_zh(direction),
                cause.message(lang)
            ),
        }
    }

    /// Where the admin finds the proof: the difference, the example, or both.
    fn evidence(&self, lang: Lang) -> &'static str {
        match (self.difference().is_some(), self.example().is_some()) {
            (true, true) => lang.pick(
                " (see difference and example)",
                "（见 difference 与 example）",
            ),
            (true, false) => lang.pick(" (see difference)", "（见 difference）"),
            (false, true) => lang.pick(" (see example)", "（见 example）"),
            (false, false) => "",
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
            example: self.example().cloned(),
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

/// Checks `candidate` (compiled, not yet registered) against the earlier versions of its schema
/// (in ascending order; only the last one unless the mode is transitive), resolving `$ref`s to
/// registry URNs from `documents`. Nothing is recompiled: example records are judged by the
/// versions' own validators.
pub fn check(
    mode: Compatibility,
    candidate: &CompiledSchema,
    earlier: &[&CompiledSchema],
    documents: &Documents,
) -> Report {
    let (directions, transitive) = plan(mode);
    let compared: &[&CompiledSchema] = match (directions.is_empty(), transitive) {
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
    let new = canonical(&candidate.document, candidate.version, documents);
    let mut reasons = Vec::new();
    for earlier_version in compared {
        let old = canonical(
            &earlier_version.document,
            earlier_version.version,
            documents,
        );
        for direction in directions {
            let finding = match (&old, &new) {
                (Err(cause), _) | (_, Err(cause)) => Some(Finding::Unmodelled {
                    cause: cause.clone(),
                }),
                (Ok(old), Ok(new)) => match direction {
                    Direction::Backward => prove_empty(old.subtract(new)),
                    Direction::Forward => prove_empty(new.subtract(old)),
                },
            };
            let (accepting, rejecting) = match direction {
                Direction::Backward => (*earlier_version, candidate),
                Direction::Forward => (candidate, *earlier_version),
            };
            if let Some(finding) = finding.map(|f| with_example(f, accepting, rejecting)) {
                reasons.push(Reason {
                    direction: *direction,
                    against: earlier_version.version,
                    candidate: candidate.version,
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
) -> Result<CanonicalSchema, Unmodelled> {
    let canonical = jsonschema::canonical::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .with_pattern_options(pattern_options())
        .with_retriever(RegistryRetriever::new(documents.clone()))
        .canonicalize(document)
        .map_err(|error| Unmodelled::Failed {
            version,
            error: error.to_string(),
        })?;
    if let CanonicalView::Raw(raw) = canonical.view() {
        return Err(Unmodelled::Raw {
            version,
            reason: raw.reason.as_str(),
            pointer: raw.pointer,
        });
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
                difference: Some(difference.to_json_schema()),
                example: None,
            }),
            Satisfiability::Unknown => Some(Finding::Undecided {
                difference: difference.to_json_schema(),
            }),
        },
        Err(error) => Some(Finding::Unmodelled {
            cause: Unmodelled::Difference {
                error: error.to_string(),
            },
        }),
    }
}

/// Looks for a record the accepting version takes and the rejecting one refuses, among values
/// built from the difference and from the accepting version; a found one makes the finding a
/// proven incompatibility and is kept as its example.
fn with_example(
    finding: Finding,
    accepting: &CompiledSchema,
    rejecting: &CompiledSchema,
) -> Finding {
    let difference = match &finding {
        Finding::Accepts { difference, .. } => difference.clone(),
        Finding::Undecided { difference } => Some(difference.clone()),
        Finding::Unmodelled { .. } => None,
    };
    let mut pool = difference
        .as_ref()
        .map(witness::candidates)
        .unwrap_or_default();
    pool.extend(witness::candidates(&accepting.document));
    let example = pool
        .into_iter()
        .find(|value| accepting.is_valid(value) && !rejecting.is_valid(value));
    match (finding, example) {
        (finding, None) => finding,
        (_, Some(example)) => Finding::Accepts {
            difference,
            example: Some(example),
        },
    }
}
