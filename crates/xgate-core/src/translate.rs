//! Formats (SPEC §7): how a department's own record layout maps to a shared schema's layout,
//! both ways, from one set of rules.
//!
//! A [`Format`] is compiled once at configuration load from `[formats.<schema>]`. Translating
//! is a pure function of a format and a record: no I/O, no clocks, no panics; problems come back
//! as data ([`TranslationError`]), every one of them, in the sender's layout.
//!
//! How a record is translated (to shared; from shared is the mirror image):
//! 1. every rule copies each value its `own` path names (with `*` expanded) to its `shared`
//!    path (the `*`s taking the same indices), converting it; `null` stays `null` unconverted;
//!    arrays that a `*` goes through keep their length;
//! 2. fields that no rule covers are refused (`reject`), left out (`drop`) or copied unchanged
//!    (`keep`): under the same pointer, or, inside an array element that a rule's `*` maps, into
//!    the corresponding element on the other side. A `null`, a scalar or an empty object where
//!    rules expect to find fields inside is such a field too. A kept field joins an object
//!    already there, and collides with any place a rule writes, or would read on the way back.

mod convert;
mod pattern;
mod plan;
mod reason;
mod walk;

use std::collections::BTreeMap;

use serde_json::Value;

pub use self::convert::{CodeTable, Conversion};
pub use self::pattern::Pattern;
use self::plan::{Outcome, Plan, Read, Uncovered, UncoveredField};
pub use self::reason::Reason;
use self::walk::Step;
use crate::i18n::Lang;
use crate::pointer::{FieldPath, Segment};
use crate::registry::Violation;
use serde::Deserialize;

/// The most translation errors reported for one record.
pub const MAX_ERRORS: usize = 100;

/// What happens to a field of a record that no rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmapped {
    /// The record is refused, listing the fields.
    Reject,
    /// The field is left out.
    Drop,
    /// The field is copied unchanged.
    Keep,
}

/// Which way a record is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The department's own layout into the shared layout.
    ToShared,
    /// The shared layout into the department's own layout.
    FromShared,
}

impl Direction {
    /// The `direction` label of metrics and the `?direction=` of the admin route.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToShared => "to-shared",
            Direction::FromShared => "from-shared",
        }
    }
}

/// One mapping rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Where the value is in the department's layout.
    pub own: FieldPath,
    /// Where it is in the shared layout.
    pub shared: FieldPath,
    /// How the value changes on the way.
    pub conversion: Conversion,
    /// The rule as an operator recognises it: `/CLRQ ↔ /established_on (date:%Y%m%d)`.
    pub description: String,
}

impl Rule {
    fn paths(&self, direction: Direction) -> (&FieldPath, &FieldPath) {
        match direction {
            Direction::ToShared => (&self.own, &self.shared),
            Direction::FromShared => (&self.shared, &self.own),
        }
    }

    /// Converts a value the rule reads; `null` stays `null` unconverted.
    fn convert(&self, value: &Value, direction: Direction) -> Result<Value, Reason> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        match direction {
            Direction::ToShared => self.conversion.to_shared(value),
            Direction::FromShared => self.conversion.to_own(value),
        }
    }
}

/// A department's format for one schema.
#[derive(Debug, Clone)]
pub struct Format {
    /// The policy for fields no rule covers.
    pub unmapped: Unmapped,
    /// The rules, in configuration order.
    pub rules: Vec<Rule>,
    /// The rules compiled for translating to shared (a trie over the own paths).
    to_shared: Plan,
    /// The rules compiled for translating from shared (a trie over the shared paths).
    from_shared: Plan,
}

/// Why part of a record could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A value that its rule's conversion refuses.
    Conversion {
        /// The rule's description.
        rule: String,
        /// Why.
        reason: Reason,
    },
    /// A field no rule covers, under `unmapped = "reject"`.
    Unmapped,
    /// A field kept under `unmapped = "keep"` whose place a rule fills (or would read back).
    Collision,
    /// A scalar, `null` or empty object where the format maps fields inside, under `reject`.
    Shape,
    /// The record is not an object or array at all.
    NotARecord,
}

/// One translation problem, located in both layouts where it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslationError {
    /// Where in the department's own layout.
    pub own_pointer: Option<String>,
    /// Where in the shared layout.
    pub shared_pointer: Option<String>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl TranslationError {
    /// The error as a violation of the problem document: `pointer` in the department's layout
    /// (the shared one when the field has no place there), `shared_pointer` beside it.
    pub fn to_violation(&self, lang: Lang) -> Violation {
        let zh = lang == Lang::Zh;
        let (keyword, message, rule) = match &self.kind {
            ErrorKind::Conversion { rule, reason } => {
                let message = if zh {
                    format!("无法按规则 {rule} 转换：{}", reason.message(true))
                } else {
                    format!("cannot convert by {rule}: {}", reason.message(false))
                };
                ("translation", message, Some(rule.clone()))
            }
            ErrorKind::Unmapped => (
                "unmapped",
                lang.pick(
                    "no rule of the format maps this field",
                    "格式中没有映射该字段的规则",
                )
                .to_owned(),
                None,
            ),
            ErrorKind::Collision => (
                "unmapped",
                lang.pick(
                    "this unmapped field would overwrite a mapped one",
                    "该未映射字段会覆盖已映射的字段",
                )
                .to_owned(),
                None,
            ),
            ErrorKind::Shape => (
                "type",
                lang.pick(
                    "expected an object or array with the fields the format maps inside it",
                    "此处应为包含格式所映射字段的对象或数组",
                )
                .to_owned(),
                None,
            ),
            ErrorKind::NotARecord => (
                "type",
                lang.pick(
                    "a record is a JSON object or array",
                    "记录应为 JSON 对象或数组",
                )
                .to_owned(),
                None,
            ),
        };
        let pointer = self
            .own_pointer
            .clone()
            .or_else(|| self.shared_pointer.clone())
            .unwrap_or_default();
        let shared_pointer = self
            .shared_pointer
            .clone()
            .filter(|shared| *shared != pointer);
        Violation {
            pointer,
            shared_pointer,
            keyword,
            message,
            rule,
            missing_property: None,
        }
    }
}

impl Format {
    /// Compiles a `[formats.<schema>]` section; errors are `(key, reason)` pairs relative to it.
    pub fn parse(section: &FormatSection) -> Result<Format, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let unmapped = match section.unmapped.as_str() {
            "reject" => Unmapped::Reject,
            "drop" => Unmapped::Drop,
            "keep" => Unmapped::Keep,
            other => {
                errors.push((
                    "unmapped".to_owned(),
                    format!("{other:?} is not one of reject, drop, keep"),
                ));
                Unmapped::Reject
            }
        };
        let mut rules: Vec<Rule> = Vec::with_capacity(section.fields.len());
        for (index, field) in section.fields.iter().enumerate() {
            let key = format!("fields[{index}]");
            let own = FieldPath::parse(&field.own)
                .map_err(|reason| errors.push((format!("{key}.own"), reason)))
                .ok();
            let shared = FieldPath::parse(&field.shared)
                .map_err(|reason| errors.push((format!("{key}.shared"), reason)))
                .ok();
            let conversion = match (&field.convert, &field.codes) {
                (Some(_), Some(_)) => Err((
                    key.clone(),
                    "a rule has either convert or codes, not both".to_owned(),
                )),
                (Some(text), None) => {
                    Conversion::parse(text).map_err(|reason| (format!("{key}.convert"), reason))
                }
                (None, Some(table)) => {
                    let table: Vec<(String, Value)> = table
                        .iter()
                        .map(|(own, shared)| (own.clone(), toml_to_json(shared)))
                        .collect();
                    Conversion::codes(&table).map_err(|reason| (format!("{key}.codes"), reason))
                }
                (None, None) => Ok(Conversion::Identity),
            };
            let conversion = conversion.map_err(|error| errors.push(error)).ok();
            let (Some(own), Some(shared), Some(conversion)) = (own, shared, conversion) else {
                continue;
            };
            let positional = |path: &FieldPath| {
                path.segments().iter().any(
                    |segment| matches!(segment, Segment::Key(key) if key.parse::<usize>().is_ok()),
                )
            };
            if positional(&own) || positional(&shared) {
                errors.push((
                    key.clone(),
                    "a numeric segment would be an array position, which rules do not map (write * for every element)".to_owned(),
                ));
                continue;
            }
            if own.wildcard_count() != shared.wildcard_count() {
                errors.push((
                    key.clone(),
                    "own and shared must have the same number of * segments".to_owned(),
                ));
                continue;
            }
            for (side, path, other) in [("own", &own, false), ("shared", &shared, true)] {
                let clash = rules.iter().position(|rule| {
                    let existing = if other { &rule.shared } else { &rule.own };
                    overlaps(existing.segments(), path.segments())
                });
                if let Some(first) = clash {
                    errors.push((
                        format!("{key}.{side}"),
                        format!(
                            "{path} overlaps fields[{first}].{side}: two rules would write the same place"
                        ),
                    ));
                }
            }
            // One shared array filled from two own arrays would take the longer length, and
            // the shorter own array would come back longer: the round trip breaks.
            let merged = rules.iter().position(|rule| {
                (0..own.wildcard_count()).any(|star| {
                    (0..rule.own.wildcard_count()).any(|other| {
                        array_path(shared.segments(), star)
                            == array_path(rule.shared.segments(), other)
                            && array_path(own.segments(), star)
                                != array_path(rule.own.segments(), other)
                    })
                })
            });
            if let Some(first) = merged {
                errors.push((
                    format!("{key}.shared"),
                    format!(
                        "{shared} and fields[{first}].shared ({}) fill one array from two different arrays ({own} and {}): their lengths would not round-trip",
                        rules[first].shared, rules[first].own
                    ),
                ));
            }
            let description = match &field.convert {
                Some(text) => format!("{own} ↔ {shared} ({text})"),
                None if field.codes.is_some() => format!("{own} ↔ {shared} (codes)"),
                None => format!("{own} ↔ {shared}"),
            };
            rules.push(Rule {
                own,
                shared,
                conversion,
                description,
            });
        }
        if errors.is_empty() {
            Ok(Format {
                unmapped,
                to_shared: Plan::new(&rules, Direction::ToShared),
                from_shared: Plan::new(&rules, Direction::FromShared),
                rules,
            })
        } else {
            Err(errors)
        }
    }

    /// Translates a record; on failure, every problem (at most [`MAX_ERRORS`]).
    pub fn translate(
        &self,
        record: &Value,
        direction: Direction,
    ) -> Result<Value, Vec<TranslationError>> {
        let mut errors = Vec::new();
        if !record.is_object() && !record.is_array() {
            errors.push(self.error(direction, Vec::new(), None, ErrorKind::NotARecord));
            return Err(errors);
        }
        let plan = match direction {
            Direction::ToShared => &self.to_shared,
            Direction::FromShared => &self.from_shared,
        };
        // One walk along the record converts what every rule reads and finds what no rule
        // covers; then the rules write, and then the fields no rule covers are placed.
        let found = plan.walk(
            record,
            &self.rules,
            direction,
            self.unmapped == Unmapped::Drop,
        );
        let mut output = Value::Null;
        self.write(
            plan,
            found.reads,
            &found.indices,
            direction,
            &mut output,
            &mut errors,
        );
        self.place_uncovered(found.uncovered, direction, &mut output, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        if output.is_null() {
            output = walk::placeholder(record);
        }
        Ok(output)
    }

    /// Writes what the rules read into `output`, rule by rule in configuration order
    /// (whatever the record's order): an object on the other side lists its members in the
    /// order of the rules that fill them, and conversion errors come rule by rule. Stops at
    /// [`MAX_ERRORS`].
    fn write(
        &self,
        plan: &Plan,
        mut reads: Vec<Read<'_>>,
        indices: &[usize],
        direction: Direction,
        output: &mut Value,
        errors: &mut Vec<TranslationError>,
    ) {
        // A stable sort keeps each rule's reads in record order.
        if !reads.is_sorted_by_key(|read| read.rule) {
            reads.sort_by_key(|read| read.rule);
        }
        // Everything a rule writes is under one place: its output path before the first `*`
        // (before the last segment when it has none). That place is found once, from the root,
        // for consecutive rules that share it, and only when one of them writes something.
        let group = |rule: usize| plan.target(rule).map(|target| target.group);
        for reads in reads.chunk_by_mut(|a, b| group(a.rule) == group(b.rule)) {
            let mut base = None;
            for read in reads {
                let (Some(rule), Some(target)) =
                    (self.rules.get(read.rule), plan.target(read.rule))
                else {
                    continue;
                };
                let (from, to) = rule.paths(direction);
                let (base_path, rest) = to.segments().split_at(target.base);
                let rest_capacities = target.capacities.get(target.base..).unwrap_or_default();
                let indices = &indices[read.indices.clone()];
                if base.is_none() && !matches!(read.outcome, Outcome::Refused(_)) {
                    base = Some(walk::slot_at(output, base_path, &[], &target.capacities));
                }
                let base = base.as_mut().and_then(Option::as_deref_mut);
                let error = match &mut read.outcome {
                    // Arrays a `*` goes through keep their length on the other side.
                    Outcome::Array(items) => {
                        let array = array_path(to.segments(), indices.len())
                            .get(target.base..)
                            .unwrap_or_default();
                        let items = *items;
                        if let Some(Value::Array(filled)) = base
                            .and_then(|base| walk::slot_at(base, array, indices, rest_capacities))
                            .map(|slot| {
                                if slot.is_null() {
                                    *slot = Value::Array(Vec::with_capacity(items.len()));
                                }
                                slot
                            })
                            && filled.len() < items.len()
                        {
                            let start = filled.len();
                            filled.extend(items[start..].iter().map(walk::placeholder));
                        }
                        continue;
                    }
                    Outcome::Converted(value) => {
                        let value = std::mem::take(value);
                        let put = base.is_some_and(|base| {
                            walk::put_at(base, rest, indices, rest_capacities, value)
                        });
                        if put {
                            continue;
                        }
                        ErrorKind::Collision
                    }
                    Outcome::Refused(reason) => ErrorKind::Conversion {
                        rule: rule.description.clone(),
                        reason: (**reason).clone(),
                    },
                };
                errors.push(self.error(
                    direction,
                    walk::locate(from.segments(), indices),
                    Some(walk::locate(to.segments(), indices)),
                    error,
                ));
                if errors.len() >= MAX_ERRORS {
                    return;
                }
            }
        }
    }

    /// Deals with the fields no rule covers, in record order, after the rules have written:
    /// refused, left out or kept as the policy says (a `null` array stays `null` whatever it
    /// says). Stops at [`MAX_ERRORS`].
    fn place_uncovered(
        &self,
        uncovered: Vec<UncoveredField<'_>>,
        direction: Direction,
        output: &mut Value,
        errors: &mut Vec<TranslationError>,
    ) {
        for UncoveredField {
            location,
            value,
            why,
        } in uncovered
        {
            if errors.len() >= MAX_ERRORS {
                return;
            }
            // `null` for an array that a rule's `*` goes through is `null` on the other side
            // too, whatever the policy: departments commonly send it for "no list".
            if why == Uncovered::Shape
                && value.is_null()
                && let Some(target) = self.null_array_target(&location, direction)
            {
                if let Some(slot) = walk::slot(output, &target)
                    && slot.is_null()
                {
                    continue;
                }
                errors.push(self.error(direction, location, Some(target), ErrorKind::Collision));
                continue;
            }
            match self.unmapped {
                Unmapped::Drop => continue,
                Unmapped::Reject => {
                    let kind = match why {
                        Uncovered::Field => ErrorKind::Unmapped,
                        Uncovered::Shape => ErrorKind::Shape,
                    };
                    errors.push(self.error(direction, location, None, kind));
                    continue;
                }
                Unmapped::Keep => {}
            }
            let target = self.corresponding(&location, direction);
            // A field kept inside an object that rules also fill (`/FDDBR/XB` beside the
            // mapped `/FDDBR/XM`) comes back as one uncovered object: it joins the members
            // already there instead of colliding with them.
            let kept = !self.claimed(&target, value, direction)
                && walk::slot(output, &target).is_some_and(|slot| walk::merge(slot, value.clone()));
            if !kept {
                errors.push(self.error(direction, location, Some(target), ErrorKind::Collision));
            }
        }
    }

    /// The location on the other side of a field no rule covers: inside an array element that
    /// a rule's `*` maps, the corresponding element; otherwise the same location.
    fn corresponding(&self, location: &[Step], direction: Direction) -> Vec<Step> {
        let mut best: Option<(usize, Vec<Step>)> = None;
        for rule in &self.rules {
            let (from, to) = rule.paths(direction);
            for star in 0..from.wildcard_count() {
                let anchor = element_path(from.segments(), star);
                if let Some(indices) = walk::match_prefix(anchor, location) {
                    let length = anchor.len();
                    if best
                        .as_ref()
                        .is_none_or(|(best_length, _)| length > *best_length)
                    {
                        let mut target = walk::locate(element_path(to.segments(), star), &indices);
                        target.extend_from_slice(&location[length..]);
                        best = Some((length, target));
                    }
                }
            }
        }
        best.map(|(_, target)| target)
            .unwrap_or_else(|| location.to_vec())
    }

    /// Where `null` for the array that a rule's `*` goes through at `location` belongs on the
    /// other side: the array the same `*` fills there.
    fn null_array_target(&self, location: &[Step], direction: Direction) -> Option<Vec<Step>> {
        self.rules.iter().find_map(|rule| {
            let (from, to) = rule.paths(direction);
            (0..from.wildcard_count()).find_map(|star| {
                let array = array_path(from.segments(), star);
                if array.len() != location.len() {
                    return None;
                }
                let indices = walk::match_prefix(array, location)?;
                Some(walk::locate(array_path(to.segments(), star), &indices))
            })
        })
    }

    /// Whether a field kept at `target` with `value` would be read by a rule on the way back:
    /// it lies at or under a place a rule writes, or it brings something where a rule reads.
    /// Keeping it would not round-trip (it would come back under the rule's field), so it
    /// collides even when the rule wrote nothing this time.
    fn claimed(&self, target: &[Step], value: &Value, direction: Direction) -> bool {
        self.rules.iter().any(|rule| {
            let to = rule.paths(direction).1.segments();
            if walk::match_prefix(to, target).is_some() {
                return true;
            }
            let Some(rest) = to.get(target.len()..) else {
                return false;
            };
            if walk::match_prefix(&to[..target.len()], target).is_none() {
                return false;
            }
            walk::reaches(value, rest)
        })
    }

    fn error(
        &self,
        direction: Direction,
        source: Vec<Step>,
        target: Option<Vec<Step>>,
        kind: ErrorKind,
    ) -> TranslationError {
        let source = Some(walk::pointer(&source));
        let target = target.map(|target| walk::pointer(&target));
        let (own_pointer, shared_pointer) = match direction {
            Direction::ToShared => (source, target),
            Direction::FromShared => (target, source),
        };
        TranslationError {
            own_pointer,
            shared_pointer,
            kind,
        }
    }

    /// The department's pointer for a place in the shared layout: through the rule whose
    /// shared path matches it (or its longest prefix), else through a `*` anchor; `None` when
    /// no rule maps it.
    pub fn own_pointer(&self, shared_pointer: &str) -> Option<String> {
        let location = walk::parse_pointer(shared_pointer)?;
        if location.is_empty() {
            return Some(String::new());
        }
        let mut best: Option<(usize, Vec<Step>)> = None;
        for rule in &self.rules {
            if let Some(indices) = walk::match_prefix(rule.shared.segments(), &location) {
                let length = rule.shared.segments().len();
                if best
                    .as_ref()
                    .is_none_or(|(best_length, _)| length > *best_length)
                {
                    let mut own = walk::locate(rule.own.segments(), &indices);
                    own.extend_from_slice(&location[length..]);
                    best = Some((length, own));
                }
            }
        }
        if let Some((_, own)) = best {
            return Some(walk::pointer(&own));
        }
        // A container the rules go into (`/legal_representative` for `/legal_representative/name`
        // ↔ `/FDDBR/XM`): the own container the same rules go into, when they all agree.
        let mut containers = self.rules.iter().filter_map(|rule| {
            let shared = rule.shared.segments();
            let own = rule.own.segments();
            let depth = shared
                .len()
                .checked_sub(location.len())
                .filter(|d| *d > 0)?;
            let indices = walk::match_prefix(&shared[..location.len()], &location)?;
            let own_end = own.len().checked_sub(depth)?;
            let plain = |segments: &[Segment]| !segments.iter().any(|s| matches!(s, Segment::Each));
            (plain(&shared[location.len()..]) && plain(&own[own_end..]))
                .then(|| walk::locate(&own[..own_end], &indices))
        });
        if let Some(first) = containers.next()
            && containers.all(|other| other == first)
        {
            return Some(walk::pointer(&first));
        }
        let own = self.corresponding(&location, Direction::FromShared);
        (own != location).then(|| walk::pointer(&own))
    }

    /// Puts the violations of a shared record into the department's layout: `pointer` becomes
    /// the department's (when a rule maps it) and `shared_pointer` keeps the shared one; a
    /// missing required field is named by the department's own field name.
    pub fn relabel(&self, violations: &mut [Violation], lang: Lang) {
        for violation in violations {
            let shared = match &violation.missing_property {
                Some(property) => format!("{}/{}", violation.pointer, escape(property)),
                None => violation.pointer.clone(),
            };
            let Some(own) = self.own_pointer(&shared) else {
                continue;
            };
            if violation.missing_property.is_some() {
                let name = own
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .replace("~1", "/")
                    .replace("~0", "~");
                violation.message = crate::i18n::required_message(&name, lang);
            }
            if own != shared {
                violation.shared_pointer = Some(shared);
            }
            violation.pointer = own;
        }
    }
}

/// Whether one path is a prefix of the other, pattern-wise (`*` and an index both match any
/// index position): two rules with such paths would write the same place.
fn overlaps(a: &[Segment], b: &[Segment]) -> bool {
    a.iter().zip(b).all(|pair| match pair {
        (Segment::Key(x), Segment::Key(y)) => x == y,
        (Segment::Each, Segment::Each) => true,
        (Segment::Each, Segment::Key(key)) | (Segment::Key(key), Segment::Each) => {
            key.parse::<usize>().is_ok()
        }
    })
}

/// The path of the array that the `star`-th `*` (0-based) of `path` goes through: the segments
/// before that `*`.
fn array_path(path: &[Segment], star: usize) -> &[Segment] {
    let end = star_position(path, star).unwrap_or(path.len());
    &path[..end]
}

/// The path of the elements that the `star`-th `*` (0-based) of `path` goes through: the
/// segments up to and including that `*`.
fn element_path(path: &[Segment], star: usize) -> &[Segment] {
    let end = star_position(path, star).map_or(path.len(), |position| position + 1);
    &path[..end]
}

fn star_position(path: &[Segment], star: usize) -> Option<usize> {
    path.iter()
        .enumerate()
        .filter(|(_, segment)| matches!(segment, Segment::Each))
        .nth(star)
        .map(|(position, _)| position)
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Turns a TOML value of a code table into JSON.
fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(number) => Value::from(*number),
        toml::Value::Float(number) => serde_json::Number::from_f64(*number)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), toml_to_json(value)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
    }
}

/// `[formats.<schema>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatSection {
    /// What happens to a field no rule covers: `reject`, `drop` or `keep`.
    #[serde(default = "reject")]
    pub unmapped: String,
    /// The mapping rules.
    #[serde(default)]
    pub fields: Vec<FieldRuleSection>,
}

/// One entry of `fields = [...]` in a format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRuleSection {
    /// Where the value sits in the department's own layout (JSON Pointer, `*` for array elements).
    pub own: String,
    /// Where it sits in the shared layout.
    pub shared: String,
    /// A conversion: `date:<strftime>`, `datetime:<strftime>[@<offset>]`, `scale:<factor>`,
    /// `number`, `string` or `boolean:<true>/<false>`.
    pub convert: Option<String>,
    /// A one-to-one table of own values to shared values.
    pub codes: Option<BTreeMap<String, toml::Value>>,
}

/// The default of `unmapped`.
fn reject() -> String {
    "reject".to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn format(toml_text: &str) -> Format {
        let section: FormatSection = toml::from_str(toml_text).unwrap();
        Format::parse(&section).unwrap()
    }

    #[test]
    fn a_business_licence_travels_both_ways() {
        let format = format(
            r#"
unmapped = "reject"
fields = [
  { own = "/TYSHXYDM", shared = "/uscc" },
  { own = "/QYMC", shared = "/name" },
  { own = "/CLRQ", shared = "/established_on", convert = "date:%Y%m%d" },
  { own = "/ZCZB", shared = "/registered_capital_yuan", convert = "scale:10000" },
  { own = "/DJZT", shared = "/status", codes = { "1" = "active", "2" = "revoked", "3" = "cancelled" } },
  { own = "/GDXX/*/GDMC", shared = "/shareholders/*/name" },
  { own = "/FR/XM", shared = "/legal_representative/name" },
]
"#,
        );
        let own = json!({
            "TYSHXYDM": "91350100M000100Y43", "QYMC": "闽江数据", "CLRQ": "20160818",
            "ZCZB": 0.3, "DJZT": "1", "GDXX": [{"GDMC": "甲"}, {"GDMC": "乙"}, {}],
            "FR": {"XM": "林志远"}
        });
        let shared = format.translate(&own, Direction::ToShared).unwrap();
        assert_eq!(
            shared,
            json!({
                "uscc": "91350100M000100Y43", "name": "闽江数据", "established_on": "2016-08-18",
                "registered_capital_yuan": 3000, "status": "active",
                "shareholders": [{"name": "甲"}, {"name": "乙"}, {}],
                "legal_representative": {"name": "林志远"}
            })
        );
        assert_eq!(
            format.translate(&shared, Direction::FromShared).unwrap(),
            own
        );
        assert_eq!(
            format.own_pointer("/shareholders/1/name").as_deref(),
            Some("/GDXX/1/GDMC")
        );
        // A container the rules go into maps to the own container (a missing required object
        // is named in the sender's layout), and unknown places map to nothing.
        assert_eq!(
            format.own_pointer("/legal_representative").as_deref(),
            Some("/FR")
        );
        assert_eq!(
            format.own_pointer("/shareholders/1").as_deref(),
            Some("/GDXX/1")
        );
        assert_eq!(format.own_pointer("/nowhere"), None);

        let mut bad = own.clone();
        bad["CLRQ"] = json!("2016-08-18");
        bad["DJZT"] = json!("9");
        bad["EXTRA"] = json!(1);
        bad["GDXX"][0]["ZZ"] = json!(2);
        let errors = format.translate(&bad, Direction::ToShared).unwrap_err();
        let pointers: Vec<_> = errors
            .iter()
            .map(|e| e.own_pointer.clone().unwrap())
            .collect();
        assert_eq!(pointers, ["/CLRQ", "/DJZT", "/GDXX/0/ZZ", "/EXTRA"]);
    }

    #[test]
    fn objects_list_members_in_rule_order_whatever_the_record_order() {
        let format = format(
            r#"
unmapped = "reject"
fields = [
  { own = "/A/X", shared = "/p/x" },
  { own = "/B", shared = "/p/y" },
  { own = "/A/Z", shared = "/p/z", convert = "number" },
  { own = "/L/*/N", shared = "/l/*/n" },
  { own = "/L/*/M", shared = "/l/*/m" },
]
"#,
        );
        let in_order = json!({"A": {"X": 1, "Z": "2"}, "B": 3, "L": [{"N": 4, "M": 5}]});
        let reversed = json!({"L": [{"M": 5, "N": 4}], "B": 3, "A": {"Z": "2", "X": 1}});
        let expected = r#"{"p":{"x":1,"y":3,"z":2},"l":[{"n":4,"m":5}]}"#;
        for own in [in_order, reversed] {
            let shared = format.translate(&own, Direction::ToShared).unwrap();
            assert_eq!(serde_json::to_string(&shared).unwrap(), expected, "{own}");
        }
        // Conversion errors come rule by rule, then uncovered fields in record order.
        let bad = json!({"L": [{"N": 1, "Q": 0}], "A": {"Z": "x"}, "C": 1, "B": 2});
        let errors = format.translate(&bad, Direction::ToShared).unwrap_err();
        let pointers: Vec<_> = errors
            .iter()
            .map(|e| e.own_pointer.clone().unwrap())
            .collect();
        assert_eq!(pointers, ["/A/Z", "/L/0/Q", "/C"]);
    }

    #[test]
    fn keep_copies_unmapped_fields_into_corresponding_elements() {
        let format = format(
            r#"
unmapped = "keep"
fields = [{ own = "/GDXX/*/GDMC", shared = "/shareholders/*/name" }]
"#,
        );
        let own = json!({"GDXX": [{"GDMC": "甲", "BL": 0.5}], "BZ": "x"});
        let shared = format.translate(&own, Direction::ToShared).unwrap();
        assert_eq!(
            shared,
            json!({"shareholders": [{"name": "甲", "BL": 0.5}], "BZ": "x"})
        );
        assert_eq!(
            format.translate(&shared, Direction::FromShared).unwrap(),
            own
        );
    }
}
