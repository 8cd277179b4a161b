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
//!
//! The check is bounded. `jsonschema`'s difference compares `enum` values pairwise, so two
//! versions whose enums hold `n` and `m` values cost `n × m` comparisons: a version pair past
//! [`MAX_ENUM_COMPARISONS`] is not given to it. Two versions that differ only in the values of
//! some `enum`s reached through keywords where a wider enum can only accept more (`properties`,
//! `items`, `allOf`, `anyOf`, ...; no `$ref`, no `not`, no `oneOf` on the way) are first compared
//! with hash sets, in linear time: the values one version has and the other lacks decide it. What
//! neither can settle within the budget is a refusal as `unproven`, saying so.

use std::collections::HashSet;

use jsonschema::canonical::{CanonicalSchema, CanonicalView, Satisfiability};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{Compatibility, SchemaVersion};
use crate::i18n::Lang;
use crate::registry::witness;

mod normalize;
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
    /// Proving it would take more than the check's budget: `comparisons` pairs of `enum`
    /// values, more than [`MAX_ENUM_COMPARISONS`].
    OverBudget {
        /// The pairs of `enum` values the difference would compare.
        comparisons: u128,
    },
    /// The check ran past `[registry] check_timeout_ms`.
    OutOfTime {
        /// The limit it ran past, in milliseconds.
        limit_ms: u128,
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
            (Unmodelled::OverBudget { comparisons }, Lang::En) => format!(
                "the proof would compare {comparisons} pairs of enum values, more than the check's budget of {MAX_ENUM_COMPARISONS}; no record showing a difference was found"
            ),
            (Unmodelled::OverBudget { comparisons }, Lang::Zh) => format!(
                "证明需要比较 {comparisons} 对枚举值，超出检查的预算 {MAX_ENUM_COMPARISONS}；也未找到能说明差异的记录"
            ),
            (Unmodelled::OutOfTime { limit_ms }, Lang::En) => format!(
                "the check did not finish within its time limit of {limit_ms} ms ([registry] check_timeout_ms)"
            ),
            (Unmodelled::OutOfTime { limit_ms }, Lang::Zh) => {
                format!("检查未能在时限 {limit_ms} 毫秒内完成（[registry] check_timeout_ms）")
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

/// The directions a mode checks, and the earlier versions (ascending) it checks against: the
/// last one, every one in the transitive modes, none in `none`.
pub fn compared<T>(mode: Compatibility, earlier: &[T]) -> (&'static [Direction], &[T]) {
    let (directions, transitive) = plan(mode);
    let compared = match (directions.is_empty(), transitive) {
        (true, _) => &[][..],
        (false, true) => earlier,
        (false, false) => earlier
            .len()
            .checked_sub(1)
            .map_or(&[][..], |last| &earlier[last..]),
    };
    (directions, compared)
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

/// The report of a check that ran past its time limit: every comparison the mode asks for is
/// unproven. `candidate` is the version being registered; `earlier` the schema's versions, in
/// ascending order.
pub fn out_of_time(
    mode: Compatibility,
    candidate: SchemaVersion,
    earlier: &[SchemaVersion],
    limit: std::time::Duration,
) -> Report {
    let (directions, compared) = compared(mode, earlier);
    let reasons = compared
        .iter()
        .flat_map(|&against| {
            directions.iter().map(move |&direction| Reason {
                direction,
                against,
                candidate,
                finding: Finding::Unmodelled {
                    cause: Unmodelled::OutOfTime {
                        limit_ms: limit.as_millis(),
                    },
                },
            })
        })
        .collect();
    Report { reasons }
}

/// How many compatibility checks run at once. A check past its time limit is answered at once
/// but runs on to its end on its thread (the proof cannot be interrupted), holding its slot: the
/// slots bound what abandoned checks can take.
pub const CONCURRENT_CHECKS: usize = 2;

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
    let (directions, compared) = compared(mode, earlier);
    if compared.is_empty() {
        return Report::default();
    }
    let new = std::cell::OnceCell::new();
    let new = || {
        new.get_or_init(|| {
            faithful(candidate)?;
            canonical(&candidate.comparable, candidate.version, documents)
        })
    };
    let mut reasons = Vec::new();
    for earlier_version in compared {
        // The hash-set proof reads the 2020-12 forms too: not for a version without a faithful one.
        let changes = (candidate.unfaithful.is_none() && earlier_version.unfaithful.is_none())
            .then(|| enum_changes(&earlier_version.comparable, &candidate.comparable))
            .flatten();
        let comparisons = u128::from(enum_values(&earlier_version.comparable))
            * u128::from(enum_values(&candidate.comparable));
        // Rewritten into equivalent documents shaped alike where the canonical form could not
        // see through a difference of shape (`normalize`); a side left as it was is used as it
        // is, the candidate's canonical form computed once for all of them.
        let normalized = std::cell::OnceCell::new();
        let normalized = || {
            normalized
                .get_or_init(|| normalize::pair(&earlier_version.comparable, &candidate.comparable))
        };
        let old = std::cell::OnceCell::new();
        let old = || {
            old.get_or_init(|| {
                faithful(earlier_version)?;
                canonical(
                    normalized()
                        .old
                        .as_ref()
                        .unwrap_or(&earlier_version.comparable),
                    earlier_version.version,
                    documents,
                )
            })
        };
        let normalized_new = std::cell::OnceCell::new();
        let new = || match &normalized().new {
            Some(document) => {
                normalized_new.get_or_init(|| canonical(document, candidate.version, documents))
            }
            None => new(),
        };
        for direction in directions {
            let (accepting, rejecting) = match direction {
                Direction::Backward => (*earlier_version, candidate),
                Direction::Forward => (candidate, *earlier_version),
            };
            let decided = changes
                .as_deref()
                .map(|changes| by_hash_sets(*direction, changes, accepting, rejecting));
            let finding = match decided {
                Some(Decided::Proven) => None,
                Some(Decided::Example(example)) => Some(Finding::Accepts {
                    difference: None,
                    example: Some(example),
                }),
                Some(Decided::Open) | None if comparisons > MAX_ENUM_COMPARISONS => {
                    Some(Finding::Unmodelled {
                        cause: Unmodelled::OverBudget { comparisons },
                    })
                }
                Some(Decided::Open) | None => match (old(), new()) {
                    (Err(cause), _) | (_, Err(cause)) => Some(Finding::Unmodelled {
                        cause: cause.clone(),
                    }),
                    (Ok(old), Ok(new)) => match direction {
                        Direction::Backward => prove_empty(old.subtract(new)),
                        Direction::Forward => prove_empty(new.subtract(old)),
                    },
                },
            };
            let finding = finding.map(|finding| match finding {
                Finding::Accepts {
                    example: Some(_), ..
                } => finding,
                finding => with_example(finding, accepting, rejecting),
            });
            if let Some(finding) = finding {
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

/// The most pairs of `enum` values a version pair may make `jsonschema`'s difference compare
/// (the product of the two versions' counts of `enum` values): about a tenth of a second.
pub const MAX_ENUM_COMPARISONS: u128 = 4_000_000;

/// How many `enum` values a document holds, anywhere.
fn enum_values(document: &Value) -> u64 {
    let mut count = 0u64;
    let mut pending = vec![document];
    // Bounded by the document: each value is visited once.
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                if let Some(Value::Array(values)) = object.get("enum") {
                    count = count.saturating_add(values.len() as u64);
                }
                pending.extend(object.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    count
}

/// One step from a schema to a subschema where a wider `enum` can only accept more records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'d> {
    /// `properties/<name>`: the member `name` of the record.
    Property(&'d str),
    /// `prefixItems/<i>`: item `i`; `items`: any item (the first is used for examples).
    Item(usize),
    /// `allOf/<i>`, `anyOf/<i>`: the same record.
    Same,
    /// `patternProperties`, `additionalProperties`, `dependentSchemas`: members no example is
    /// built for.
    Elsewhere,
}

/// An `enum` whose values differ between two versions that are otherwise equal.
#[derive(Debug)]
struct EnumChange<'d> {
    steps: Vec<Step<'d>>,
    old: &'d [Value],
    new: &'d [Value],
}

/// The `enum`s that differ between two documents equal in everything else, when every one of
/// them is reached only through keywords where a wider subschema accepts more (so comparing the
/// values is a proof), and neither document has references or `unevaluated*` keywords (which
/// could reach a subschema another way). `None` when the documents differ otherwise.
fn enum_changes<'d>(old: &'d Value, new: &'d Value) -> Option<Vec<EnumChange<'d>>> {
    if has_indirection(old) || has_indirection(new) {
        return None;
    }
    let (Value::Object(old_root), Value::Object(new_root)) = (old, new) else {
        return None;
    };
    let mut changes = Vec::new();
    // The root `$id` names the version (`urn:xgate:schema:<name>:<version>`): it differs always
    // and, without references, means nothing.
    compare_schemas(old_root, new_root, true, Vec::new(), &mut changes).then_some(changes)
}

/// Whether a document holds a keyword that reaches a subschema other than by position:
/// `$ref`, `$dynamicRef`, `$recursiveRef`, `unevaluatedProperties`, `unevaluatedItems`.
/// (A property named so also counts: the answer is only ever too cautious.)
fn has_indirection(document: &Value) -> bool {
    const KEYWORDS: [&str; 5] = [
        "$ref",
        "$dynamicRef",
        "$recursiveRef",
        "unevaluatedProperties",
        "unevaluatedItems",
    ];
    let mut pending = vec![document];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                if KEYWORDS.iter().any(|keyword| object.contains_key(*keyword)) {
                    return true;
                }
                pending.extend(object.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    false
}

/// Compares two schema objects at `steps`, collecting differing `enum`s; `false` when they
/// differ in anything else.
fn compare_schemas<'d>(
    old: &'d Map<String, Value>,
    new: &'d Map<String, Value>,
    root: bool,
    steps: Vec<Step<'d>>,
    changes: &mut Vec<EnumChange<'d>>,
) -> bool {
    if old.len() != new.len() {
        return false;
    }
    for (keyword, old_value) in old {
        let Some(new_value) = new.get(keyword) else {
            return false;
        };
        if root && keyword == "$id" {
            continue;
        }
        let step = |step: Step<'d>| {
            let mut steps = steps.clone();
            steps.push(step);
            steps
        };
        let equal = match (keyword.as_str(), old_value, new_value) {
            ("enum", Value::Array(old_values), Value::Array(new_values)) => {
                if old_values != new_values {
                    changes.push(EnumChange {
                        steps: steps.clone(),
                        old: old_values,
                        new: new_values,
                    });
                }
                true
            }
            (
                "properties" | "patternProperties" | "dependentSchemas",
                Value::Object(old_members),
                Value::Object(new_members),
            ) => {
                old_members.len() == new_members.len()
                    && old_members.iter().all(|(member, old_schema)| {
                        let at = if keyword == "properties" {
                            Step::Property(member)
                        } else {
                            Step::Elsewhere
                        };
                        new_members.get(member).is_some_and(|new_schema| {
                            compare_subschemas(old_schema, new_schema, step(at), changes)
                        })
                    })
            }
            (
                "prefixItems" | "allOf" | "anyOf",
                Value::Array(old_items),
                Value::Array(new_items),
            ) => {
                old_items.len() == new_items.len()
                    && old_items.iter().zip(new_items).enumerate().all(
                        |(index, (old_schema, new_schema))| {
                            let at = if keyword == "prefixItems" {
                                Step::Item(index)
                            } else {
                                Step::Same
                            };
                            compare_subschemas(old_schema, new_schema, step(at), changes)
                        },
                    )
            }
            ("items", _, _) => {
                compare_subschemas(old_value, new_value, step(Step::Item(0)), changes)
            }
            ("additionalProperties", _, _) => {
                compare_subschemas(old_value, new_value, step(Step::Elsewhere), changes)
            }
            _ => old_value == new_value,
        };
        if !equal {
            return false;
        }
    }
    true
}

fn compare_subschemas<'d>(
    old: &'d Value,
    new: &'d Value,
    steps: Vec<Step<'d>>,
    changes: &mut Vec<EnumChange<'d>>,
) -> bool {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            compare_schemas(old, new, false, steps, changes)
        }
        _ => old == new,
    }
}

/// What comparing the values of the changed `enum`s settled for one direction.
#[derive(Debug)]
enum Decided {
    /// The accepting version's enums hold no value the rejecting one's lack: proven safe.
    Proven,
    /// A record the accepting version takes and the rejecting one refuses.
    Example(Value),
    /// Values are missing, but no record showing it was found.
    Open,
}

/// How many of the missing values are tried as examples.
const MAX_TRIED_VALUES: usize = 16;

/// Decides one direction over the changed `enum`s with hash sets: linear in their values.
fn by_hash_sets(
    direction: Direction,
    changes: &[EnumChange<'_>],
    accepting: &CompiledSchema,
    rejecting: &CompiledSchema,
) -> Decided {
    let mut proven = true;
    for change in changes {
        let (wider, narrower) = match direction {
            Direction::Backward => (change.old, change.new),
            Direction::Forward => (change.new, change.old),
        };
        // The serialized value is a finer key than JSON Schema's equality (`1` and `1.0` differ
        // here): a value may look missing that is not, never the reverse.
        let kept: HashSet<String> = narrower.iter().map(Value::to_string).collect();
        let missing: Vec<&Value> = wider
            .iter()
            .filter(|value| !kept.contains(&value.to_string()))
            .collect();
        if missing.is_empty() {
            continue;
        }
        proven = false;
        for value in missing.into_iter().take(MAX_TRIED_VALUES) {
            for record in records_with(&change.steps, value, accepting) {
                if accepting.is_valid(&record) && !rejecting.is_valid(&record) {
                    return Decided::Example(record);
                }
            }
        }
    }
    if proven {
        Decided::Proven
    } else {
        Decided::Open
    }
}

/// Records holding `value` where `steps` lead: the value itself at the root, else the accepting
/// version's example records with the value put in place. None past a step no record position
/// answers.
fn records_with(steps: &[Step<'_>], value: &Value, accepting: &CompiledSchema) -> Vec<Value> {
    let path: Vec<Step<'_>> = steps
        .iter()
        .copied()
        .filter(|step| *step != Step::Same)
        .collect();
    if path.contains(&Step::Elsewhere) {
        return Vec::new();
    }
    if path.is_empty() {
        return vec![value.clone()];
    }
    let mut bases = witness::candidates(&accepting.comparable);
    bases.push(Value::Null);
    bases
        .into_iter()
        .filter_map(|mut base| put(&mut base, &path, value).then_some(base))
        .collect()
}

/// Puts `value` at `path` in `record`, building objects and arrays on the way.
fn put(record: &mut Value, path: &[Step<'_>], value: &Value) -> bool {
    let Some((first, rest)) = path.split_first() else {
        *record = value.clone();
        return true;
    };
    match first {
        Step::Property(name) => {
            if !record.is_object() {
                *record = Value::Object(Map::new());
            }
            match record {
                Value::Object(object) => put(
                    object.entry((*name).to_owned()).or_insert(Value::Null),
                    rest,
                    value,
                ),
                _ => false,
            }
        }
        Step::Item(index) => {
            if !record.is_array() {
                *record = Value::Array(Vec::new());
            }
            match record {
                Value::Array(items) if *index <= items.len() => {
                    if *index == items.len() {
                        items.push(Value::Null);
                    }
                    put(&mut items[*index], rest, value)
                }
                _ => false,
            }
        }
        Step::Same | Step::Elsewhere => false,
    }
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
        .with_retriever(RegistryRetriever::converting(documents.clone()))
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

/// Refuses a version whose 2020-12 form may not accept exactly what it accepts
/// ([`crate::registry::draft::to_2020_12`]): nothing is proven about it.
fn faithful(version: &CompiledSchema) -> Result<(), Unmodelled> {
    match &version.unfaithful {
        None => Ok(()),
        Some(reason) => Err(Unmodelled::Failed {
            version: version.version,
            error: format!("it cannot be converted to draft 2020-12 faithfully: {reason}"),
        }),
    }
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
    pool.extend(witness::candidates(&accepting.comparable));
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

/// The schema checks (compiling and proving a submitted version) running now, by schema name,
/// and the names whose checks are held before they start: a test holds a name to watch its
/// check in flight while other registrations go on. Nobody else holds one; a check then only
/// takes an uncontended lock to count itself.
#[derive(Debug, Default)]
pub struct Checks {
    state: std::sync::Mutex<ChecksState>,
    released: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct ChecksState {
    running: std::collections::HashMap<String, usize>,
    held: HashSet<String>,
}

/// One check, counted from its start to its end.
#[derive(Debug)]
pub struct Running<'c> {
    checks: &'c Checks,
    name: String,
}

/// Holds the checks of one name until dropped.
#[derive(Debug)]
pub struct Hold<'c> {
    checks: &'c Checks,
    name: String,
}

impl Checks {
    fn state(&self) -> std::sync::MutexGuard<'_, ChecksState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a check of `name` as running, then waits while the name is held. Call it on a
    /// blocking thread, never on the runtime.
    pub fn start(&self, name: &str) -> Running<'_> {
        let mut state = self.state();
        *state.running.entry(name.to_owned()).or_default() += 1;
        while state.held.contains(name) {
            state = self
                .released
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        Running {
            checks: self,
            name: name.to_owned(),
        }
    }

    /// How many checks of `name` are running (or held).
    pub fn running(&self, name: &str) -> usize {
        self.state().running.get(name).copied().unwrap_or(0)
    }

    /// Holds the checks of `name` that start from now on until the guard is dropped.
    pub fn hold(&self, name: &str) -> Hold<'_> {
        self.state().held.insert(name.to_owned());
        Hold {
            checks: self,
            name: name.to_owned(),
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = self.checks.state();
        if let Some(count) = state.running.get_mut(&self.name) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.running.remove(&self.name);
            }
        }
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.checks.state().held.remove(&self.name);
        self.checks.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::SchemaName;
    use crate::registry::compile_version;

    fn compiled(version: u32, document: Value) -> CompiledSchema {
        let name = SchemaName::parse("codes").unwrap();
        let version = SchemaVersion::parse(&version.to_string()).unwrap();
        compile_version(&name, version, document, &Default::default(), Lang::En).unwrap()
    }

    fn report(mode: Compatibility, old: Value, new: Value) -> Report {
        let (old, new) = (compiled(1, old), compiled(2, new));
        check(mode, &new, &[&old], &Documents::default())
    }

    #[test]
    fn enums_reached_through_monotone_keywords_are_compared_as_sets() {
        let object = |values: Value| json!({"type": "object", "properties": {"status": {"anyOf": [{"enum": values}]}}});
        let old = object(json!(["a", "b"]));
        let wider = object(json!(["b", "a", "c"]));
        assert!(enum_changes(&old, &wider).is_some_and(|changes| changes.len() == 1));
        assert!(report(Compatibility::Backward, old.clone(), wider.clone()).compatible());
        let forward = report(Compatibility::Forward, old, wider);
        assert_eq!(forward.reasons.len(), 1);
        assert_eq!(forward.reasons[0].verdict(), "incompatible");
        assert_eq!(forward.reasons[0].example(), Some(&json!({"status": "c"})));
    }

    #[test]
    fn enums_under_negating_or_counting_keywords_get_no_set_proof() {
        for wrap in [
            |values: Value| json!({"not": {"enum": values}}),
            |values: Value| json!({"oneOf": [{"enum": values}, {"type": "string"}]}),
            |values: Value| json!({"$defs": {"e": {"enum": values}}, "$ref": "#/$defs/e"}),
        ] {
            let (old, new) = (wrap(json!([1, 2])), wrap(json!([1, 2, 3])));
            assert!(enum_changes(&old, &new).is_none(), "{old}");
        }
        // Still proven by the library when it is within the budget: `not` of a wider enum is
        // narrower, so backward fails with an example.
        let reasons = report(
            Compatibility::Backward,
            json!({"type": "integer", "not": {"enum": [1, 2]}}),
            json!({"type": "integer", "not": {"enum": [1, 2, 3]}}),
        )
        .reasons;
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].verdict(), "incompatible");
    }

    #[test]
    fn a_pair_past_the_enum_budget_is_unproven_with_its_reason() {
        let negated = |count: u64| json!({"type": "integer", "not": {"enum": (0..count).collect::<Vec<_>>()}});
        let reasons = report(Compatibility::Backward, negated(2_001), negated(2_002)).reasons;
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].verdict(), "unproven");
        assert!(
            reasons[0]
                .message(Lang::En)
                .contains("more than the check's budget of 4000000")
        );
    }
}
