//! Locations in records: concrete steps and their JSON Pointers, writing at a location or at
//! a rule's path with given array indices, and matching paths against locations.

use serde_json::{Map, Value};

use crate::pointer::Segment;

/// One step of a concrete location in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A concrete location as a JSON Pointer.
pub fn pointer(steps: &[Step]) -> String {
    let mut text = String::new();
    for step in steps {
        text.push('/');
        match step {
            Step::Key(key) => text.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Step::Index(index) => text.push_str(&index.to_string()),
        }
    }
    text
}

/// Parses a JSON Pointer into steps; numeric tokens become indices (validators report array
/// elements that way).
pub fn parse_pointer(text: &str) -> Option<Vec<Step>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let rest = text.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|token| {
                let key = token.replace("~1", "/").replace("~0", "~");
                match key.parse::<usize>() {
                    Ok(index) if !key.starts_with('+') && (key == "0" || !key.starts_with('0')) => {
                        Step::Index(index)
                    }
                    _ => Step::Key(key),
                }
            })
            .collect(),
    )
}

/// The concrete location of `path` with its `*`s taking `indices`, and with only the first
/// `segments` segments.
pub fn locate(path: &[Segment], indices: &[usize]) -> Vec<Step> {
    let mut stars = indices.iter();
    path.iter()
        .map(|segment| match segment {
            Segment::Key(key) => Step::Key(key.clone()),
            Segment::Each => Step::Index(stars.next().copied().unwrap_or_default()),
        })
        .collect()
}

/// The slot at `location` in `target`, creating objects and arrays on the way (an array is
/// extended with `null`s up to the index). `None` when something that is not a container is in
/// the way.
pub fn slot<'t>(target: &'t mut Value, location: &[Step]) -> Option<&'t mut Value> {
    let mut current = target;
    for step in location {
        current = match step {
            Step::Key(key) => member_slot(current, key, 0)?,
            Step::Index(index) => element_slot(current, *index)?,
        };
    }
    Some(current)
}

/// The slot at `path` in `target` with its `*`s taking `indices`: [`slot`] at
/// `locate(path, indices)`, without building the location. An object made on the way at
/// segment `n` has room for `capacities[n]` members.
pub fn slot_at<'t>(
    target: &'t mut Value,
    path: &[Segment],
    indices: &[usize],
    capacities: &[usize],
) -> Option<&'t mut Value> {
    let mut stars = indices.iter();
    let mut current = target;
    for (depth, segment) in path.iter().enumerate() {
        current = match segment {
            Segment::Key(key) => {
                let capacity = capacities.get(depth).copied().unwrap_or_default();
                member_slot(current, key, capacity)?
            }
            Segment::Each => element_slot(current, stars.next().copied().unwrap_or_default())?,
        };
    }
    Some(current)
}

/// Puts `value` at `path` in `target` with its `*`s taking `indices`, as `*slot_at(..) = value`
/// would, but inserting the last member directly. `false` when something that is not a
/// container is in the way.
pub fn put_at(
    target: &mut Value,
    path: &[Segment],
    indices: &[usize],
    capacities: &[usize],
    value: Value,
) -> bool {
    let Some((last, parents)) = path.split_last() else {
        *target = value;
        return true;
    };
    let Some(parent) = slot_at(target, parents, indices, capacities) else {
        return false;
    };
    match last {
        Segment::Key(key) => {
            if parent.is_null() {
                let capacity = capacities.get(parents.len()).copied().unwrap_or_default();
                *parent = Value::Object(Map::with_capacity(capacity));
            }
            let Some(object) = parent.as_object_mut() else {
                return false;
            };
            object.insert(key.clone(), value);
            true
        }
        Segment::Each => {
            let stars = parents
                .iter()
                .filter(|segment| matches!(segment, Segment::Each))
                .count();
            let index = indices.get(stars).copied().unwrap_or_default();
            match element_slot(parent, index) {
                Some(slot) => {
                    *slot = value;
                    true
                }
                None => false,
            }
        }
    }
}

fn member_slot<'t>(current: &'t mut Value, key: &str, capacity: usize) -> Option<&'t mut Value> {
    if current.is_null() {
        *current = Value::Object(Map::with_capacity(capacity));
    }
    Some(current.as_object_mut()?.entry(key).or_insert(Value::Null))
}

fn element_slot(current: &mut Value, index: usize) -> Option<&mut Value> {
    if current.is_null() {
        *current = Value::Array(Vec::new());
    }
    let items = current.as_array_mut()?;
    if items.len() <= index {
        items.resize(index + 1, Value::Null);
    }
    items.get_mut(index)
}

/// Whether `path` reaches anything in `value`: a value at its end, or an array one of its `*`s
/// goes through.
pub fn reaches(value: &Value, path: &[Segment]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    match (first, value) {
        (Segment::Key(key), Value::Object(object)) => {
            object.get(key).is_some_and(|child| reaches(child, rest))
        }
        (Segment::Key(key), Value::Array(items)) => key
            .parse::<usize>()
            .ok()
            .and_then(|index| items.get(index))
            .is_some_and(|child| reaches(child, rest)),
        (Segment::Each, Value::Array(_)) => true,
        _ => false,
    }
}

/// Puts `value` into `slot`: into an empty one (`null`, as a new or placeholder slot is), or
/// member by member into an object already there. `false` when something is in the way: a
/// value other than `null`, or an empty object that would vanish into a filled one.
pub fn merge(slot: &mut Value, value: Value) -> bool {
    match (slot, value) {
        (slot @ Value::Null, value) => {
            *slot = value;
            true
        }
        (Value::Object(existing), Value::Object(members)) if !members.is_empty() => members
            .into_iter()
            .all(|(key, member)| merge(existing.entry(key).or_insert(Value::Null), member)),
        _ => false,
    }
}

/// An empty value of the same kind as `value`, standing in for an array element until rules
/// fill it: `{}` for objects, `[]` for arrays, `null` otherwise.
pub fn placeholder(value: &Value) -> Value {
    match value {
        Value::Object(_) => Value::Object(Map::new()),
        Value::Array(_) => Value::Array(Vec::new()),
        _ => Value::Null,
    }
}

/// Whether `path` matches the first steps of `location` (`*` matches any index); on a match,
/// the indices the `*`s took.
pub fn match_prefix(path: &[Segment], location: &[Step]) -> Option<Vec<usize>> {
    if path.len() > location.len() {
        return None;
    }
    let mut indices = Vec::new();
    for (segment, step) in path.iter().zip(location) {
        match (segment, step) {
            (Segment::Key(key), Step::Key(name)) if key == name => {}
            (Segment::Key(key), Step::Index(index))
                if key.parse::<usize>().ok() == Some(*index) => {}
            (Segment::Each, Step::Index(index)) => indices.push(*index),
            _ => return None,
        }
    }
    Some(indices)
}
