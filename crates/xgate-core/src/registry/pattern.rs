//! The gateway's own `pattern` keyword: the same ECMA-262 matching as `jsonschema`'s, with the
//! backtracking steps of one record's matches counted against one budget.
//!
//! `fancy-regex` stops a match after a number of backtracking steps but does not say how many
//! a match took, and `jsonschema` applies its limit to each match alone: a record of 62,500
//! strings that each stop just under the limit costs 62,500 times the limit. So a pattern the
//! engine must backtrack on is compiled at a few step limits ([`STEP_LIMITS`]); a match runs at
//! the smallest first, and again at the next only when it hit the limit. Each run is charged its
//! limit, an upper bound of the steps it took, to the budget of the record being validated
//! ([`within_budget`], held in a thread-local scope around one record's validation). Once the
//! budget is spent, every further match of the record fails; the caller refuses the record.
//!
//! Patterns that never backtrack are answered as `jsonschema` answers them and cost nothing:
//! literal forms (`^abc`, `^(a|b)$`, `^\S*$`), a count of characters for `^X{m,n}$`, anchored
//! sequences of classes, leading look-aheads split into look-around-free parts, and regexes
//! `fancy-regex` hands whole to its linear-time engine. The ECMA-262 translation is
//! `jsonschema-regex`'s, the one `jsonschema` uses, so a pattern means what it meant before.
//!
//! `patternProperties` is the other place a regex meets a record (every property name, also
//! through `additionalProperties` and `unevaluatedProperties`). Those regexes run inside
//! `jsonschema`'s own keywords, out of reach of this budget, so a schema may use only regexes
//! there that never backtrack ([`backtracking_property_patterns`], checked when a version is
//! compiled). `propertyNames` applies `pattern` itself, so it is budgeted.
//!
//! Pure: no I/O, no clocks.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use jsonschema::paths::Location;
use jsonschema::{Keyword, ValidationError};
use jsonschema_regex::{PatternAnalysis, RepeatedClass, Search, Sequence};
use serde_json::{Map, Value};

use crate::i18n::PatternFailure;
use crate::registry::{PATTERN_BACKTRACK_LIMIT, PATTERN_SIZE_LIMIT};

/// The step limits a backtracking pattern is compiled at, smallest first; the last is the most
/// one match may take ([`PATTERN_BACKTRACK_LIMIT`]). A match that takes `s` steps is charged at
/// most about 11 times `s`, and never less than the smallest limit.
pub const STEP_LIMITS: [usize; 4] = [100, 1_000, 10_000, PATTERN_BACKTRACK_LIMIT];

/// What one record's validation met beyond plain matches and mismatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetUse {
    /// Steps charged.
    pub charged: u64,
    /// The budget ran out: some match was refused without running.
    pub exhausted: bool,
    /// Some match could not be finished within [`PATTERN_BACKTRACK_LIMIT`] steps (or its engine
    /// failed): its outcome is unknown.
    pub undecided: bool,
}

impl BudgetUse {
    /// Whether every match was decided within the budget.
    pub fn is_clean(self) -> bool {
        !self.exhausted && !self.undecided
    }
}

/// The budget of the record being validated on this thread, if any.
#[derive(Debug, Clone, Copy)]
struct Meter {
    left: u64,
    used: BudgetUse,
}

thread_local! {
    static METER: Cell<Option<Meter>> = const { Cell::new(None) };
}

/// Puts back the enclosing scope's meter when a scope ends, also when its work panics.
struct Scope {
    enclosing: Option<Meter>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        METER.with(|meter| meter.set(self.enclosing));
    }
}

/// Runs `work` (one record's validation) with `steps` to spend on its matches, and says what it
/// spent. Scopes nest: an inner scope has a budget of its own and leaves the outer one as it was.
pub fn within_budget<T>(steps: u64, work: impl FnOnce() -> T) -> (T, BudgetUse) {
    let enclosing = METER.with(|meter| {
        meter.replace(Some(Meter {
            left: steps,
            used: BudgetUse::default(),
        }))
    });
    let scope = Scope { enclosing };
    let result = work();
    let used = current_use();
    drop(scope);
    (result, used)
}

/// What the record being validated on this thread has spent so far (nothing outside a scope).
pub fn current_use() -> BudgetUse {
    METER
        .with(Cell::get)
        .map(|meter| meter.used)
        .unwrap_or_default()
}

/// Takes `steps` from the current record's budget; `false` (and the budget marked spent) when
/// they are not there. Outside any scope nothing is counted.
fn charge(steps: usize) -> bool {
    METER.with(|cell| {
        let Some(mut meter) = cell.get() else {
            return true;
        };
        let steps = steps as u64;
        let granted = !meter.used.exhausted && meter.left >= steps;
        if granted {
            meter.left -= steps;
            meter.used.charged += steps;
        } else {
            meter.used.exhausted = true;
        }
        cell.set(Some(meter));
        granted
    })
}

/// Notes that a match could not be decided.
fn note_undecided() {
    METER.with(|cell| {
        if let Some(mut meter) = cell.get() {
            meter.used.undecided = true;
            cell.set(Some(meter));
        }
    });
}

/// Whether the current record's budget is already spent.
fn is_exhausted() -> bool {
    METER.with(|cell| cell.get().is_some_and(|meter| meter.used.exhausted))
}

/// How one match ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The string matches.
    Match,
    /// It does not.
    Mismatch,
    /// The engine could not finish within [`PATTERN_BACKTRACK_LIMIT`] steps, or failed.
    Undecided,
    /// The record's budget was spent before this match could run.
    OverBudget,
}

impl From<bool> for Outcome {
    fn from(matched: bool) -> Outcome {
        if matched {
            Outcome::Match
        } else {
            Outcome::Mismatch
        }
    }
}

/// `is_match` of a regex engine, with a panic of the engine (regex-automata has had some, which
/// `jsonschema` catches too) reported as no answer.
fn guarded<T>(run: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(run)).ok()
}

/// A `pattern` that is not a valid ECMA-262 regular expression, or exceeds the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPattern;

/// A compiled `pattern`, in the cheapest form that answers it.
#[derive(Debug)]
pub struct Matcher {
    form: Form,
}

#[derive(Debug)]
enum Form {
    /// `^prefix`, `^exact$`, `^(a|b|c)$`, `^\S*$`: no engine.
    Literal(Literal),
    /// An anchored sequence of classes, decided without an engine for ASCII strings; `fallback`
    /// decides the others.
    Sequence {
        sequence: Sequence,
        fallback: Engine,
    },
    /// `^(?=X1)...(?=Xn)Z`: matches when every part does, each look-around-free.
    Parts(Box<[Part]>),
    /// The engine.
    Engine(Engine),
}

#[derive(Debug)]
enum Literal {
    Prefix(String),
    Exact(String),
    Alternation(Vec<String>),
    NoWhitespace,
}

impl Literal {
    fn is_match(&self, text: &str) -> bool {
        match self {
            Literal::Prefix(prefix) => text.starts_with(prefix.as_str()),
            Literal::Exact(exact) => text == exact,
            Literal::Alternation(alternatives) => alternatives.iter().any(|a| a == text),
            Literal::NoWhitespace => !jsonschema_regex::contains_ecma_whitespace(text),
        }
    }
}

/// One part of a pattern with leading look-aheads, on the `regex` crate (as `jsonschema` does).
#[derive(Debug)]
enum Part {
    Sequence {
        sequence: Sequence,
        fallback: regex::Regex,
    },
    RepeatedClass(RepeatedClass),
    Regex(regex::Regex),
}

impl Part {
    fn is_match(&self, text: &str) -> Option<bool> {
        match self {
            Part::Sequence { sequence, fallback } => match sequence.is_match(text.as_bytes()) {
                Some(matched) => Some(matched),
                None => guarded(|| fallback.is_match(text)),
            },
            Part::RepeatedClass(class) => Some(class.is_match(text)),
            Part::Regex(regex) => guarded(|| regex.is_match(text)),
        }
    }
}

/// The regex engine for a whole pattern.
#[derive(Debug)]
enum Engine {
    /// `^X{m,n}$` over one class: the characters are counted.
    RepeatedClass(RepeatedClass),
    /// A regex `fancy-regex` runs entirely on its linear-time engine: it never backtracks.
    Linear(fancy_regex::Regex),
    /// A regex that needs backtracking, compiled once per limit of [`STEP_LIMITS`].
    Backtracking(Box<[(usize, fancy_regex::Regex)]>),
}

impl Engine {
    /// Compiles the `fancy-regex` form of `pattern` (translated as `translated`), as `jsonschema`
    /// does: a character count for `^X{m,n}$`, counts at the edges collapsed, the size bounded.
    fn compile(pattern: &str, translated: &str) -> Result<Engine, ()> {
        let collapsed;
        let source = match jsonschema_regex::search_form(pattern, translated) {
            Some(Search::RepeatedClass(class)) => return Ok(Engine::RepeatedClass(class)),
            Some(Search::Collapsed(form)) => {
                collapsed = form;
                collapsed.as_str()
            }
            None => translated,
        };
        let build = |step_limit: usize, probe: bool| {
            let mut builder = fancy_regex::RegexBuilder::new(source);
            builder
                .backtrack_limit(step_limit)
                .delegate_size_limit(PATTERN_SIZE_LIMIT)
                .delegate_dfa_size_limit(PATTERN_SIZE_LIMIT);
            if probe {
                // A regex `fancy-regex` delegates whole to regex-automata has no program of its
                // own: with no room for one it still builds, and it never backtracks.
                builder.max_prog_size(0);
            }
            builder.build()
        };
        match build(PATTERN_BACKTRACK_LIMIT, true) {
            Ok(linear) => return Ok(Engine::Linear(linear)),
            Err(fancy_regex::Error::CompileError(error))
                if matches!(*error, fancy_regex::CompileError::PatternTooComplex) => {}
            Err(_) => return Err(()),
        }
        STEP_LIMITS
            .iter()
            .map(|limit| build(*limit, false).map(|regex| (*limit, regex)))
            .collect::<Result<Box<[_]>, _>>()
            .map(Engine::Backtracking)
            .map_err(|_| ())
    }

    fn is_match(&self, text: &str) -> Outcome {
        match self {
            Engine::RepeatedClass(class) => class.is_match(text).into(),
            Engine::Linear(regex) => match guarded(|| regex.is_match(text)) {
                Some(Ok(matched)) => matched.into(),
                Some(Err(_)) | None => Outcome::Undecided,
            },
            Engine::Backtracking(rungs) => {
                for (limit, regex) in rungs.iter() {
                    if !charge(*limit) {
                        return Outcome::OverBudget;
                    }
                    match guarded(|| regex.is_match(text)) {
                        Some(Ok(matched)) => return matched.into(),
                        Some(Err(fancy_regex::Error::RuntimeError(
                            fancy_regex::RuntimeError::BacktrackLimitExceeded,
                        ))) => {}
                        Some(Err(_)) | None => return Outcome::Undecided,
                    }
                }
                Outcome::Undecided
            }
        }
    }

    fn backtracks(&self) -> bool {
        matches!(self, Engine::Backtracking(_))
    }
}

impl Matcher {
    /// Compiles an ECMA-262 pattern the way `jsonschema` compiles `pattern` with `fancy-regex`
    /// and limits: literal forms, then an anchored sequence (with the engine behind it), then
    /// leading look-aheads as separate look-around-free regexes, then the engine. `Err` for a
    /// pattern that is not a valid regex or exceeds the size limit.
    pub fn compile(pattern: &str) -> Result<Matcher, InvalidPattern> {
        if let Some(analysis) = jsonschema_regex::analyze_pattern(pattern) {
            let literal = match analysis {
                PatternAnalysis::Prefix(prefix) => Literal::Prefix(prefix.into_owned()),
                PatternAnalysis::Exact(exact) => Literal::Exact(exact.into_owned()),
                PatternAnalysis::Alternation(alternatives) => Literal::Alternation(alternatives),
                PatternAnalysis::NoWhitespace => Literal::NoWhitespace,
            };
            return Ok(Matcher {
                form: Form::Literal(literal),
            });
        }
        let translated = jsonschema_regex::to_rust_regex(pattern);
        if let Ok(translated) = &translated
            && let Some(sequence) = Sequence::compile(translated)
        {
            return Ok(Matcher {
                form: Form::Sequence {
                    sequence,
                    fallback: Engine::compile(pattern, translated).map_err(|()| InvalidPattern)?,
                },
            });
        }
        if let Some(parts) = leading_lookahead_parts(pattern) {
            return Ok(Matcher {
                form: Form::Parts(parts),
            });
        }
        let translated = translated.map_err(|_| InvalidPattern)?;
        Ok(Matcher {
            form: Form::Engine(Engine::compile(pattern, &translated).map_err(|()| InvalidPattern)?),
        })
    }

    /// Matches `text`, charging the current record's budget for any backtracking.
    pub fn is_match(&self, text: &str) -> Outcome {
        if is_exhausted() {
            return Outcome::OverBudget;
        }
        let outcome = match &self.form {
            Form::Literal(literal) => literal.is_match(text).into(),
            Form::Sequence { sequence, fallback } => match sequence.is_match(text.as_bytes()) {
                Some(matched) => matched.into(),
                None => fallback.is_match(text),
            },
            Form::Parts(parts) => {
                let mut outcome = Outcome::Match;
                for part in parts.iter() {
                    match part.is_match(text) {
                        Some(true) => {}
                        Some(false) => {
                            outcome = Outcome::Mismatch;
                            break;
                        }
                        None => {
                            outcome = Outcome::Undecided;
                            break;
                        }
                    }
                }
                outcome
            }
            Form::Engine(engine) => engine.is_match(text),
        };
        if outcome == Outcome::Undecided {
            note_undecided();
        }
        outcome
    }

    /// Whether some string can make this pattern backtrack (and so cost steps).
    pub fn backtracks(&self) -> bool {
        match &self.form {
            Form::Literal(_) | Form::Parts(_) => false,
            Form::Sequence { fallback, .. } => fallback.backtracks(),
            Form::Engine(engine) => engine.backtracks(),
        }
    }
}

/// Whether `jsonschema`'s `fancy-regex` form of `pattern` (the one `patternProperties`,
/// `additionalProperties` and `unevaluatedProperties` match property names with) backtracks.
/// `false` for a pattern that does not compile: the compiler reports it.
fn engine_backtracks(pattern: &str) -> bool {
    jsonschema_regex::to_rust_regex(pattern)
        .ok()
        .and_then(|translated| Engine::compile(pattern, &translated).ok())
        .is_some_and(|engine| engine.backtracks())
}

/// `^(?=X1)...(?=Xn)Z` as look-around-free parts on the `regex` crate, when every part compiles
/// as one (as `jsonschema` splits them, with the `regex` crate's default size limit).
fn leading_lookahead_parts(pattern: &str) -> Option<Box<[Part]>> {
    jsonschema_regex::split_leading_lookaheads(pattern)?
        .iter()
        .map(|part| {
            let translated = jsonschema_regex::to_rust_regex(part).ok()?;
            if let Some(sequence) = Sequence::compile(&translated) {
                let fallback = regex::Regex::new(&translated).ok()?;
                return Some(Part::Sequence { sequence, fallback });
            }
            match jsonschema_regex::search_form(part, &translated) {
                Some(Search::RepeatedClass(class)) => Some(Part::RepeatedClass(class)),
                Some(Search::Collapsed(collapsed)) => {
                    regex::Regex::new(&collapsed).ok().map(Part::Regex)
                }
                None => regex::Regex::new(&translated).ok().map(Part::Regex),
            }
        })
        .collect()
}

/// The `pattern` keyword of one schema location.
struct PatternKeyword {
    matcher: Arc<Matcher>,
    pattern: Arc<str>,
}

impl PatternKeyword {
    fn outcome(&self, instance: &Value) -> Outcome {
        match instance {
            Value::String(text) => self.matcher.is_match(text),
            _ => Outcome::Match,
        }
    }
}

impl<'i> Keyword<'i> for PatternKeyword {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        let failure = match self.outcome(instance) {
            Outcome::Match => return Ok(()),
            Outcome::Mismatch => PatternFailure::Mismatch {
                pattern: &self.pattern,
            },
            Outcome::Undecided => PatternFailure::StepLimit,
            Outcome::OverBudget => PatternFailure::Budget,
        };
        Err(ValidationError::custom(failure.encode()))
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        self.outcome(instance) == Outcome::Match
    }
}

/// Compiled patterns of one schema build, so a pattern used in many places compiles once.
type PatternCache = Arc<Mutex<HashMap<String, Arc<Matcher>>>>;

/// The factory of the `pattern` keyword for one schema build (`ValidationOptions::with_keyword`).
#[allow(clippy::type_complexity)]
pub fn keyword_factory() -> impl for<'a> Fn(
    &'a Map<String, Value>,
    &'a Value,
    Location,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>>
+ Send
+ Sync
+ 'static {
    let cache: PatternCache = Arc::default();
    move |_parent, value, _location| {
        let Value::String(pattern) = value else {
            // The meta-schema refuses this before any build; a schema built without it still
            // gets a clear error.
            return Err(ValidationError::schema(PatternFailure::NotAString.encode()));
        };
        let cached = cache
            .lock()
            .ok()
            .and_then(|cache| cache.get(pattern).cloned());
        let matcher = match cached {
            Some(matcher) => matcher,
            None => {
                let matcher = Arc::new(Matcher::compile(pattern).map_err(|InvalidPattern| {
                    ValidationError::schema(PatternFailure::Invalid { pattern }.encode())
                })?);
                if let Ok(mut cache) = cache.lock() {
                    cache.insert(pattern.clone(), matcher.clone());
                }
                matcher
            }
        };
        Ok(Box::new(PatternKeyword {
            matcher,
            pattern: Arc::from(pattern.as_str()),
        }))
    }
}

/// The `patternProperties` regexes of `document` that need backtracking, by the pointer of the
/// `patternProperties` keyword and the regex. They are matched against every property name of a
/// record by `jsonschema`'s own keywords, where no budget reaches, so a version may not use them.
/// Regexes that do not compile are left to the compiler's own error.
pub fn backtracking_property_patterns(document: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), document)];
    // Bounded by the document: each value is visited once.
    while let Some((pointer, value)) = pending.pop() {
        match value {
            Value::Object(object) => {
                if let Some(Value::Object(patterns)) = object.get("patternProperties") {
                    for pattern in patterns.keys() {
                        if engine_backtracks(pattern) {
                            found.push((format!("{pointer}/patternProperties"), pattern.clone()));
                        }
                    }
                }
                for (key, child) in object {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    pending.push((format!("{pointer}/{escaped}"), child));
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    pending.push((format!("{pointer}/{index}"), child));
                }
            }
            _ => {}
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn outcome(pattern: &str, text: &str) -> Outcome {
        Matcher::compile(pattern).unwrap().is_match(text)
    }

    #[test]
    fn each_form_answers_as_ecma_262_does() {
        for (pattern, text, expected) in [
            ("^abc", "abcd", true),
            ("^abc$", "abcd", false),
            ("^(get|put)$", "put", true),
            (r"^\S*$", "a\u{3000}b", false),
            (r"^[0-9]{2,4}$", "123", true),
            (r"^[A-Z][a-z]+$", "Name", true),
            (r"^(?=.*\d)(?=.*[a-z])\w{4,}$", "ab12", true),
            (r"^(?=.*\d)(?=.*[a-z])\w{4,}$", "abcd", false),
            (r"^.$", "\u{2028}", false),
            (r"\d", "٣", false),
            (r"^(\w)\1$", "aa", true),
            (r"^(\w)\1$", "ab", false),
            (r"^(?!x-)", "x-a", false),
            (r"(?<=a)b", "ab", true),
        ] {
            assert_eq!(
                outcome(pattern, text),
                Outcome::from(expected),
                "{pattern:?} on {text:?}"
            );
        }
        assert!(Matcher::compile("(").is_err());
        assert!(Matcher::compile(r"^\p{Bogus}$").is_err());
    }

    #[test]
    fn only_patterns_that_backtrack_are_charged() {
        let linear = Matcher::compile(r"a+b").unwrap();
        let backtracking = Matcher::compile(r"(a*)*\1b").unwrap();
        assert!(!linear.backtracks());
        assert!(backtracking.backtracks());
        let ((), used) = within_budget(1_000_000, || {
            assert_eq!(linear.is_match(&"a".repeat(1000)), Outcome::Mismatch);
        });
        assert_eq!(used.charged, 0);
        // A cheap backtracking match costs the smallest limit.
        let ((), used) = within_budget(1_000_000, || {
            assert_eq!(backtracking.is_match("ab"), Outcome::Match);
        });
        assert_eq!(used.charged, STEP_LIMITS[0] as u64);
        // 14 `a`s without a `b` take 98,301 steps: every limit is tried, each charged.
        let ((), used) = within_budget(1_000_000, || {
            assert_eq!(backtracking.is_match(&"a".repeat(14)), Outcome::Mismatch);
        });
        assert_eq!(used.charged, STEP_LIMITS.iter().sum::<usize>() as u64);
        assert!(used.is_clean());
    }

    #[test]
    fn a_spent_budget_fails_every_further_match_and_a_cut_off_match_is_undecided() {
        let backtracking = Matcher::compile(r"(a*)*\1b").unwrap();
        let text = "a".repeat(14);
        let (outcomes, used) = within_budget(250_000, || {
            (0..4)
                .map(|_| backtracking.is_match(&text))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            outcomes,
            [
                Outcome::Mismatch,
                Outcome::Mismatch,
                Outcome::OverBudget,
                Outcome::OverBudget
            ]
        );
        assert!(used.exhausted && !used.undecided);
        // Even a literal fails once the budget is spent: the record is refused as a whole.
        let (outcome, _) = within_budget(0, || {
            let _ = backtracking.is_match("ab");
            Matcher::compile("^a").unwrap().is_match("abc")
        });
        assert_eq!(outcome, Outcome::OverBudget);

        let (outcome, used) = within_budget(u64::MAX, || {
            Matcher::compile(r"^((?=a)a+)+b$")
                .unwrap()
                .is_match(&format!("{}!", "a".repeat(64)))
        });
        assert_eq!(outcome, Outcome::Undecided);
        assert!(used.undecided && !used.exhausted);
    }

    #[test]
    fn scopes_nest_and_nothing_is_counted_outside_them() {
        let backtracking = Matcher::compile(r"(a*)*\1b").unwrap();
        assert_eq!(backtracking.is_match("ab"), Outcome::Match);
        let ((), outer) = within_budget(1_000, || {
            let ((), inner) = within_budget(0, || {
                assert_eq!(backtracking.is_match("ab"), Outcome::OverBudget);
            });
            assert!(inner.exhausted);
            assert_eq!(backtracking.is_match("ab"), Outcome::Match);
        });
        assert!(outer.is_clean());
        assert_eq!(outer.charged, STEP_LIMITS[0] as u64);
    }

    /// The library's own `pattern` and ours, over the same schema.
    fn both_validators(schema: &Value) -> Option<(jsonschema::Validator, jsonschema::Validator)> {
        let options = || {
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .with_pattern_options(crate::registry::pattern_options())
        };
        let library = options().build(schema);
        let ours = options()
            .with_keyword("pattern", keyword_factory())
            .build(schema);
        assert_eq!(
            library.is_ok(),
            ours.is_ok(),
            "both compile {schema} or neither"
        );
        Some((library.ok()?, ours.ok()?))
    }

    #[test]
    fn answers_as_the_librarys_pattern_on_its_own_hard_cases() {
        let cases: &[(&str, &[&str])] = &[
            (r"^\s$", &["\u{3000}", "\u{2028}", "\u{0085}", " ", "a"]),
            (r"^[^\s]$", &["\u{3000}", "\u{0085}"]),
            (r"^.$", &["\r", "\u{2028}", "\u{85}", "a"]),
            (r"^[.]$", &["\r", "."]),
            (r"^a.b$", &["a\u{85}b", "a\nb"]),
            (r"^.{0,262144}$", &["", "a\nb", "a\u{85}b"]),
            (r"^[\s\S]{1,204800}$", &["a\nb", ""]),
            (r"[^\p{C}]{1,2048}", &["\u{1}a", "\u{1}\n"]),
            (r"^(?=.{1,262144}$)[a-z]", &["ab", "a\nb"]),
            (
                r"^(?=.*[A-Z])(?=.*\d)[\s\S]{8,204800}$",
                &["Abcdefg1", "Abcdef1"],
            ),
            (r"^(?=(a))\1b", &["aab", "ab"]),
            (r"^(?=a|b)c", &["c"]),
            (r"^[a-z&&^b]+$", &["d", "b"]),
            (r"^[a-z--b]$", &["0", "-", "c"]),
            (r"^[\w--z]$", &["-", "z", "a"]),
            (r"^[[a]]$", &["a]", "a"]),
            (r"\cJ", &["\n", "J"]),
            (r"^\p{L}+$", &["汉字", "a1"]),
            (r"^\d+$", &["123", "١٢٣"]),
            (r"^\w+$", &["abc", "é"]),
            (r"(?<!a)b", &["ab", "cb"]),
            (r"^(\w+)\s\1$", &["hi hi", "hi ho"]),
            (r"^(a+)+$", &["aaaa", "aaab"]),
            (r"\bword\b", &["a word here", "swordfish"]),
            (r"^\u00e9$", &["é"]),
            (r"[\u{1F600}]", &["😀"]),
        ];
        for (pattern, texts) in cases {
            let schema = serde_json::json!({ "pattern": pattern });
            let Some((library, ours)) = both_validators(&schema) else {
                continue;
            };
            for text in *texts {
                let text = Value::String((*text).to_owned());
                assert_eq!(
                    ours.is_valid(&text),
                    library.is_valid(&text),
                    "{pattern:?} on {text}"
                );
            }
        }
    }

    #[test]
    #[cfg_attr(
        xgate_missing = "json-schema-test-suite",
        ignore = "the JSON Schema test suite is not at ../shared/testdata/json-schema-test-suite"
    )]
    fn answers_as_the_librarys_pattern_on_the_test_suites_regex_groups() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/testdata/json-schema-test-suite/tests/draft2020-12");
        assert!(
            folder.is_dir(),
            "the JSON Schema test suite is missing at {}",
            folder.display()
        );
        let mut compared = 0;
        for file in [
            "pattern.json",
            "propertyNames.json",
            "optional/ecmascript-regex.json",
            "optional/non-bmp-regex.json",
        ] {
            let text = std::fs::read_to_string(folder.join(file)).unwrap();
            let groups: Vec<Value> = serde_json::from_str(&text).unwrap();
            for group in groups {
                let Some((library, ours)) = both_validators(&group["schema"]) else {
                    continue;
                };
                for case in group["tests"].as_array().unwrap() {
                    let data = &case["data"];
                    let (valid, used) = within_budget(u64::MAX, || ours.is_valid(data));
                    assert!(used.is_clean());
                    assert_eq!(
                        valid,
                        library.is_valid(data),
                        "{file}: {} / {}",
                        group["description"],
                        case["description"]
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 100, "{compared} cases compared");
    }

    #[test]
    fn backtracking_regexes_in_pattern_properties_are_found() {
        // `^(?=a)` is a look-ahead that fancy-regex rewrites for its linear-time engine: it is
        // judged by what the engine does, not by its syntax.
        let document = json!({
            "patternProperties": {"^x-": {}, "^[a-z]+$": {}},
            "properties": {"inner": {"patternProperties": {"^(a+)\\1$": {}, "^(?!x)": {}, "^(?=a)": {}}}},
            "items": [{"patternProperties": {"(": {}}}]
        });
        assert_eq!(
            backtracking_property_patterns(&document),
            [
                (
                    "/properties/inner/patternProperties".to_owned(),
                    "^(?!x)".to_owned()
                ),
                (
                    "/properties/inner/patternProperties".to_owned(),
                    "^(a+)\\1$".to_owned()
                ),
            ]
        );
    }
}
