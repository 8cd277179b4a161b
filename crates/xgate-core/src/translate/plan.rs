//! A format's rules compiled for one direction: a trie over the paths the rules read, walked
//! once along a record to convert, in record order, every value a rule reads, and to find every
//! array a rule's `*` goes through and every field no rule covers.
//!
//! The walk does not write the other side: [`Format::translate`](super::Format::translate)
//! does, rule by rule. It borrows the record and allocates nothing per field but converted
//! values (and the location of a field no rule covers, which is rare): where it is in the
//! record is a chain of frames on the call stack.

use std::ops::Range;

use serde_json::Value;

use super::walk::Step;
use super::{Direction, Reason, Rule, array_path};
use crate::pointer::Segment;

/// The rules of a format for one direction, as a trie over their input-side paths (the own
/// paths to shared, the shared paths from shared).
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// The trie; `nodes[0]` is the record itself.
    nodes: Vec<Node>,
    /// Where each rule writes (same positions as the rules).
    targets: Vec<Target>,
}

/// Where a rule writes on the other side.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// How many segments of the output path lead to the place that everything the rule writes
    /// is under: the segments before its first `*` (before its last segment when it has none).
    pub base: usize,
    /// The same number for rules whose base is the same place (the first such rule's
    /// position), so that the place is found once for consecutive reads of such rules.
    pub group: usize,
    /// Per segment of the output path: how many members the rules write into the object
    /// there, so that it is made with room for all of them.
    pub capacities: Vec<usize>,
}

/// A place the rules' input paths reach.
#[derive(Debug, Clone, Default)]
struct Node {
    /// The rule whose input path ends here: it takes the value whole, whatever it holds.
    /// (`Format::parse` refuses a path that goes on past another's end, so a node with a
    /// rule has no members or elements.)
    rule: Option<usize>,
    /// The members rules go on into, in rule order (as records usually list them).
    members: Vec<(String, usize)>,
    /// Positions in `members`, sorted by name (for a binary search when a member is not where
    /// the rules' order expects it).
    by_name: Vec<usize>,
    /// Where rules go on into every element, when their `*` follows.
    each: Option<usize>,
    /// The rules whose `*` goes through an array here, one per array they fill on the other
    /// side (which keeps this array's length), in rule order.
    array_rules: Vec<usize>,
}

impl Node {
    /// The node of member `name`; `expected` is where in `members` the previous member was
    /// found plus one, so that a record in rule order costs one comparison per member.
    fn member(&self, name: &str, expected: &mut usize) -> Option<usize> {
        let position = match self.members.get(*expected) {
            Some((member, _)) if member == name => *expected,
            _ => {
                let found = self
                    .by_name
                    .binary_search_by(|position| self.members[*position].0.as_str().cmp(name))
                    .ok()?;
                self.by_name[found]
            }
        };
        *expected = position + 1;
        Some(self.members[position].1)
    }
}

/// What becomes of one thing a rule reads.
#[derive(Debug)]
pub(super) enum Outcome<'v> {
    /// An array the rule's `*` goes through (which `*`: as many as the indices around it):
    /// the array it fills on the other side gets as long.
    Array(&'v [Value]),
    /// The value at the end of the rule's input path, converted.
    Converted(Value),
    /// A value the rule's conversion refuses (boxed: refusals are rare, and reads are moved
    /// about when sorted).
    Refused(Box<Reason>),
}

/// One thing a rule reads, with the indices its `*`s took.
#[derive(Debug)]
pub(super) struct Read<'v> {
    /// Which rule (its position in the format).
    pub rule: usize,
    /// The index each enclosing `*` took, outermost first: a range of [`Found::indices`].
    pub indices: Range<usize>,
    /// What becomes of it.
    pub outcome: Outcome<'v>,
}

/// Why a field is not covered by any rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Uncovered {
    /// No rule goes into it.
    Field,
    /// Rules go further into it, but it is a scalar, `null` or an empty object.
    Shape,
}

/// A field no rule covers.
#[derive(Debug, Clone)]
pub(super) struct UncoveredField<'v> {
    /// Where it is.
    pub location: Vec<Step>,
    /// Its value.
    pub value: &'v Value,
    /// Why it is not covered.
    pub why: Uncovered,
}

/// Everything one walk found, in record order.
#[derive(Debug, Default)]
pub(super) struct Found<'v> {
    /// What the rules read.
    pub reads: Vec<Read<'v>>,
    /// The indices of all reads, one after the other (one allocation for all of them).
    pub indices: Vec<usize>,
    /// The fields no rule covers.
    pub uncovered: Vec<UncoveredField<'v>>,
}

impl Plan {
    /// Compiles the rules' input paths for `direction` into a trie.
    pub(super) fn new(rules: &[Rule], direction: Direction) -> Plan {
        let mut nodes = vec![Node::default()];
        for (index, rule) in rules.iter().enumerate() {
            let (from, to) = rule.paths(direction);
            let mut current = 0;
            let mut star = 0;
            for segment in from.segments() {
                current = match segment {
                    Segment::Key(name) => match nodes[current].member(name, &mut 0) {
                        Some(next) => next,
                        None => {
                            let next = push(&mut nodes);
                            let node = &mut nodes[current];
                            node.members.push((name.clone(), next));
                            let members = &node.members;
                            let at = node
                                .by_name
                                .partition_point(|position| members[*position].0 < *name);
                            node.by_name.insert(at, members.len() - 1);
                            next
                        }
                    },
                    Segment::Each => {
                        // Rules that fill the same array on the other side need it made once.
                        let fills = array_path(to.segments(), star);
                        let filled = nodes[current].array_rules.iter().any(|other| {
                            array_path(rules[*other].paths(direction).1.segments(), star) == fills
                        });
                        if !filled {
                            nodes[current].array_rules.push(index);
                        }
                        star += 1;
                        match nodes[current].each {
                            Some(next) => next,
                            None => {
                                let next = push(&mut nodes);
                                nodes[current].each = Some(next);
                                next
                            }
                        }
                    }
                };
            }
            nodes[current].rule = Some(index);
        }
        let outputs: Vec<&[Segment]> = rules
            .iter()
            .map(|rule| rule.paths(direction).1.segments())
            .collect();
        let targets = outputs
            .iter()
            .map(|output| {
                let base = base_of(output);
                let group = outputs
                    .iter()
                    .position(|other| other[..base_of(other)] == output[..base])
                    .unwrap_or_default();
                let capacities = (0..output.len())
                    .map(|depth| {
                        // The distinct names rules write at this depth under the same place.
                        let mut names: Vec<&str> = outputs
                            .iter()
                            .filter(|other| {
                                other.len() > depth && other[..depth] == output[..depth]
                            })
                            .filter_map(|other| match &other[depth] {
                                Segment::Key(name) => Some(name.as_str()),
                                Segment::Each => None,
                            })
                            .collect();
                        names.sort_unstable();
                        names.dedup();
                        names.len()
                    })
                    .collect();
                Target {
                    base,
                    group,
                    capacities,
                }
            })
            .collect();
        Plan { nodes, targets }
    }

    /// Where `rule` writes.
    pub(super) fn target(&self, rule: usize) -> Option<&Target> {
        self.targets.get(rule)
    }

    /// Walks `record` along the trie, converting what `rules` (the rules this plan was
    /// compiled from) read. Fields no rule covers are listed unless `drop_fields` (under
    /// `unmapped = "drop"` only a `null` where rules expect an array matters).
    pub(super) fn walk<'v>(
        &self,
        record: &'v Value,
        rules: &[Rule],
        direction: Direction,
        drop_fields: bool,
    ) -> Found<'v> {
        let mut walk = Walk {
            plan: self,
            rules,
            direction,
            drop_fields,
            found: Found {
                reads: Vec::with_capacity(self.nodes.len()),
                ..Found::default()
            },
        };
        walk.visit(0, record, None);
        walk.found
    }
}

/// How many segments of an output path lead to the place everything it writes is under.
fn base_of(output: &[Segment]) -> usize {
    output
        .iter()
        .position(|segment| matches!(segment, Segment::Each))
        .unwrap_or(output.len().saturating_sub(1))
}

fn push(nodes: &mut Vec<Node>) -> usize {
    nodes.push(Node::default());
    nodes.len() - 1
}

/// Where the walk is: one step, and the frame of the container it is in (`None` at the
/// record), borrowed from the record and kept on the call stack.
#[derive(Debug, Clone, Copy)]
struct Frame<'f, 'v> {
    step: StepRef<'v>,
    parent: Option<&'f Frame<'f, 'v>>,
}

/// One step of a location, borrowed from the record.
#[derive(Debug, Clone, Copy)]
enum StepRef<'v> {
    Key(&'v str),
    Index(usize),
}

/// A walk in progress.
struct Walk<'p, 'v> {
    plan: &'p Plan,
    rules: &'p [Rule],
    direction: Direction,
    drop_fields: bool,
    found: Found<'v>,
}

impl<'v> Walk<'_, 'v> {
    fn visit(&mut self, node: usize, value: &'v Value, at: Option<&Frame<'_, 'v>>) {
        let plan = self.plan;
        let node = &plan.nodes[node];
        if let Some(rule) = node.rule {
            let outcome = match self
                .rules
                .get(rule)
                .map(|rule| rule.convert(value, self.direction))
            {
                Some(Ok(converted)) => Outcome::Converted(converted),
                Some(Err(reason)) => Outcome::Refused(Box::new(reason)),
                None => return,
            };
            let indices = self.indices(at);
            self.found.reads.push(Read {
                rule,
                indices,
                outcome,
            });
            return;
        }
        match value {
            // An empty object that rules go into, as a member: no rule finds anything in it,
            // so nothing would bring it back on the way home. (An empty array element is kept
            // by its array's placeholder instead.)
            Value::Object(object)
                if object.is_empty()
                    && at.is_some_and(|frame| matches!(frame.step, StepRef::Key(_))) =>
            {
                self.uncovered(value, Uncovered::Shape, at);
            }
            Value::Object(object) => {
                let mut expected = 0;
                for (name, member) in object {
                    let frame = Frame {
                        step: StepRef::Key(name),
                        parent: at,
                    };
                    match node.member(name, &mut expected) {
                        Some(next) => self.visit(next, member, Some(&frame)),
                        None => self.uncovered(member, Uncovered::Field, Some(&frame)),
                    }
                }
            }
            Value::Array(items) => {
                if !node.array_rules.is_empty() {
                    let indices = self.indices(at);
                    for &rule in &node.array_rules {
                        self.found.reads.push(Read {
                            rule,
                            indices: indices.clone(),
                            outcome: Outcome::Array(items),
                        });
                    }
                }
                for (index, item) in items.iter().enumerate() {
                    let frame = Frame {
                        step: StepRef::Index(index),
                        parent: at,
                    };
                    match node.each {
                        Some(next) => self.visit(next, item, Some(&frame)),
                        None => self.uncovered(item, Uncovered::Field, Some(&frame)),
                    }
                }
            }
            // A scalar (or null) where rules expect a container: the whole value is uncovered,
            // unless it is the record itself (the caller reports a record of the wrong shape).
            _ if at.is_some() => self.uncovered(value, Uncovered::Shape, at),
            _ => {}
        }
    }

    /// The indices the `*`s took on the way here (every array element on the way is one: rules
    /// have no numeric segments), stored once for the reads made here.
    fn indices(&mut self, at: Option<&Frame<'_, 'v>>) -> Range<usize> {
        let start = self.found.indices.len();
        let mut frame = at;
        while let Some(current) = frame {
            if let StepRef::Index(index) = current.step {
                self.found.indices.push(index);
            }
            frame = current.parent;
        }
        self.found.indices[start..].reverse();
        start..self.found.indices.len()
    }

    fn uncovered(&mut self, value: &'v Value, why: Uncovered, at: Option<&Frame<'_, 'v>>) {
        // Dropped fields need no location; a `null` for an array still does (it stays `null`).
        if self.drop_fields && !(why == Uncovered::Shape && value.is_null()) {
            return;
        }
        let mut location = Vec::new();
        let mut frame = at;
        while let Some(current) = frame {
            location.push(match current.step {
                StepRef::Key(name) => Step::Key(name.to_owned()),
                StepRef::Index(index) => Step::Index(index),
            });
            frame = current.parent;
        }
        location.reverse();
        self.found.uncovered.push(UncoveredField {
            location,
            value,
            why,
        });
    }
}
