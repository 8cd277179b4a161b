//! Walking records along field paths: finding every place a path names (with `*` expanded),
//! writing at a path with given array indices, and finding the fields no path covers.

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

/// Something found at a path: the indices its `*`s took, its location, its value.
pub struct Found<'v> {
    /// The index each `*` took, outermost first.
    pub indices: Vec<usize>,
    /// Where it is.
    pub location: Vec<Step>,
    /// The value there.
    pub value: &'v Value,
}

/// An array a `*` of the path went through: which `*` (0-based), the indices of the `*`s
/// before it, and the array.
pub struct ArraySeen<'v> {
    /// Which `*` of the path.
    pub star: usize,
    /// The indices of the enclosing `*`s.
    pub indices: Vec<usize>,
    /// The array.
    pub items: &'v [Value],
}

/// Every place `path` names in `value`, and every array its `*`s go through.
pub fn find<'v>(value: &'v Value, path: &[Segment]) -> (Vec<Found<'v>>, Vec<ArraySeen<'v>>) {
    let mut found = Vec::new();
    let mut arrays = Vec::new();
    let mut indices = Vec::new();
    let mut location = Vec::new();
    find_into(
        value,
        path,
        &mut indices,
        &mut location,
        &mut found,
        &mut arrays,
    );
    (found, arrays)
}

fn find_into<'v>(
    value: &'v Value,
    path: &[Segment],
    indices: &mut Vec<usize>,
    location: &mut Vec<Step>,
    found: &mut Vec<Found<'v>>,
    arrays: &mut Vec<ArraySeen<'v>>,
) {
    let Some((first, rest)) = path.split_first() else {
        found.push(Found {
            indices: indices.clone(),
            location: location.clone(),
            value,
        });
        return;
    };
    match (first, value) {
        (Segment::Key(key), Value::Object(object)) => {
            if let Some(child) = object.get(key) {
                location.push(Step::Key(key.clone()));
                find_into(child, rest, indices, location, found, arrays);
                location.pop();
            }
        }
        (Segment::Key(key), Value::Array(items)) => {
            if let Some(child) = key.parse::<usize>().ok().and_then(|i| items.get(i)) {
                location.push(Step::Index(key.parse().unwrap_or_default()));
                find_into(child, rest, indices, location, found, arrays);
                location.pop();
            }
        }
        (Segment::Each, Value::Array(items)) => {
            arrays.push(ArraySeen {
                star: indices.len(),
                indices: indices.clone(),
                items,
            });
            for (index, child) in items.iter().enumerate() {
                indices.push(index);
                location.push(Step::Index(index));
                find_into(child, rest, indices, location, found, arrays);
                location.pop();
                indices.pop();
            }
        }
        _ => {}
    }
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
            Step::Key(key) => {
                if current.is_null() {
                    *current = Value::Object(Map::new());
                }
                current
                    .as_object_mut()?
                    .entry(key.clone())
                    .or_insert(Value::Null)
            }
            Step::Index(index) => {
                if current.is_null() {
                    *current = Value::Array(Vec::new());
                }
                let items = current.as_array_mut()?;
                if items.len() <= *index {
                    items.resize(index + 1, Value::Null);
                }
                &mut items[*index]
            }
        };
    }
    Some(current)
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

/// Why a field is not covered by any path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncovered {
    /// No path goes into it.
    Field,
    /// Paths go further into it, but it is a scalar, `null` or an empty object.
    Shape,
}

/// The locations of the fields of `value` that no path covers. A path covers the value at its
/// end and everything below; a field is uncovered when it is a member (or element) of a
/// container some path goes into, and no path goes on into it, or when it is an empty object
/// (or a scalar) where paths expect to go further.
pub fn uncovered(value: &Value, paths: &[&[Segment]]) -> Vec<(Vec<Step>, Uncovered)> {
    let mut out = Vec::new();
    let mut location = Vec::new();
    uncovered_into(value, paths, &mut location, &mut out);
    out
}

fn uncovered_into(
    value: &Value,
    paths: &[&[Segment]],
    location: &mut Vec<Step>,
    out: &mut Vec<(Vec<Step>, Uncovered)>,
) {
    if paths.iter().any(|path| path.is_empty()) {
        return;
    }
    match value {
        // An empty object that paths go into, as a member: no rule finds anything in it, so
        // nothing would bring it back on the way home. (An empty array element is kept by its
        // array's placeholder instead.)
        Value::Object(object)
            if object.is_empty() && matches!(location.last(), Some(Step::Key(_))) =>
        {
            out.push((location.clone(), Uncovered::Shape));
        }
        Value::Object(object) => {
            for (key, child) in object {
                let next: Vec<&[Segment]> = paths
                    .iter()
                    .filter_map(|path| match path.split_first() {
                        Some((Segment::Key(k), rest)) if k == key => Some(rest),
                        _ => None,
                    })
                    .collect();
                location.push(Step::Key(key.clone()));
                if next.is_empty() {
                    out.push((location.clone(), Uncovered::Field));
                } else {
                    uncovered_into(child, &next, location, out);
                }
                location.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let next: Vec<&[Segment]> = paths
                    .iter()
                    .filter_map(|path| match path.split_first() {
                        Some((Segment::Each, rest)) => Some(rest),
                        Some((Segment::Key(k), rest)) if k.parse::<usize>().ok() == Some(index) => {
                            Some(rest)
                        }
                        _ => None,
                    })
                    .collect();
                location.push(Step::Index(index));
                if next.is_empty() {
                    out.push((location.clone(), Uncovered::Field));
                } else {
                    uncovered_into(child, &next, location, out);
                }
                location.pop();
            }
        }
        // A scalar (or null) where the paths expect a container: the whole value is uncovered,
        // unless it is the record itself (the caller reports a record of the wrong shape).
        _ if !location.is_empty() => out.push((location.clone(), Uncovered::Shape)),
        _ => {}
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
