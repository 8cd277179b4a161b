//! Projection (SPEC §3 phase 11): keep only the listed shared fields of a record, so a consumer
//! receives no more personal data than its purpose needs.

use serde_json::{Map, Value};

use crate::pointer::{FieldPath, Segment};

/// The fields one consumer receives from one service, prepared once at load.
#[derive(Debug, Clone)]
pub struct Projection {
    paths: Vec<FieldPath>,
    /// No path leads into, or to the same place as, another: each kept value is named by
    /// exactly one path, so it can be moved out of the record rather than copied.
    disjoint: bool,
}

impl Projection {
    /// A projection onto `paths`.
    pub fn new(paths: Vec<FieldPath>) -> Projection {
        let disjoint = paths.iter().enumerate().all(|(i, path)| {
            paths[i + 1..]
                .iter()
                .all(|other| !overlap(path.segments(), other.segments()))
        });
        Projection { paths, disjoint }
    }

    /// The paths, as configured.
    pub fn paths(&self) -> &[FieldPath] {
        &self.paths
    }

    /// `record` with only the listed fields (`*` selects every array element). Fields a path
    /// names but the record lacks stay absent; the shape around kept fields (objects, array
    /// lengths) is preserved; a path over what an earlier one kept replaces it.
    pub fn apply(&self, record: Value) -> Value {
        self.apply_moving(record, self.disjoint)
    }

    /// With `moving`, the kept values are taken out of the record; without, each path reads
    /// its own copy of the record, so overlapping paths each see it whole.
    fn apply_moving(&self, mut record: Value, moving: bool) -> Value {
        // Each path adds at most one member to the record's top level.
        let mut projected = Value::Object(Map::with_capacity(self.paths.len()));
        for path in &self.paths {
            if moving {
                move_path(&mut record, &mut projected, path.segments());
            } else {
                move_path(&mut record.clone(), &mut projected, path.segments());
            }
        }
        projected
    }
}

/// Whether two paths can name the same value or one a value inside the other's: they agree
/// segment by segment as far as the shorter goes (`*` agrees with any segment).
fn overlap(a: &[Segment], b: &[Segment]) -> bool {
    a.iter().zip(b).all(|pair| match pair {
        (Segment::Key(a), Segment::Key(b)) => a == b,
        _ => true,
    })
}

/// Moves what `segments` names from `source` into `target`. A taken value leaves `null`
/// behind, so `source` must not be read again by an overlapping path.
fn move_path(source: &mut Value, target: &mut Value, segments: &[Segment]) {
    let Some((first, rest)) = segments.split_first() else {
        *target = std::mem::take(source);
        return;
    };
    match (first, source) {
        (Segment::Key(key), Value::Object(object)) => {
            let Some(child) = object.get_mut(key) else {
                return;
            };
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(target) = target {
                if rest.is_empty() {
                    target.insert(key.clone(), std::mem::take(child));
                    return;
                }
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| empty_like(child));
                move_path(child, slot, rest);
            }
        }
        (Segment::Key(key), Value::Array(items)) => {
            let Some(index) = key.parse::<usize>().ok().filter(|i| *i < items.len()) else {
                return;
            };
            let target = ensure_array_like(target, items);
            move_path(&mut items[index], &mut target[index], rest);
        }
        (Segment::Each, Value::Array(items)) => {
            let target = ensure_array_like(target, items);
            for (item, slot) in items.iter_mut().zip(target.iter_mut()) {
                move_path(item, slot, rest);
            }
        }
        _ => {}
    }
}

/// An empty container of the same kind as `value` (objects and arrays), or `null`.
fn empty_like(value: &Value) -> Value {
    match value {
        Value::Object(_) => Value::Object(Map::new()),
        Value::Array(items) => Value::Array(items.iter().map(empty_like).collect()),
        _ => Value::Null,
    }
}

fn ensure_array_like<'t>(target: &'t mut Value, items: &[Value]) -> &'t mut Vec<Value> {
    if !matches!(target, Value::Array(existing) if existing.len() == items.len()) {
        *target = Value::Array(items.iter().map(empty_like).collect());
    }
    match target {
        Value::Array(array) => array,
        _ => unreachable!("target was just made an array"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(texts: &[&str]) -> Vec<FieldPath> {
        texts.iter().map(|t| FieldPath::parse(t).unwrap()).collect()
    }

    fn project(record: &Value, paths: &[FieldPath]) -> Value {
        Projection::new(paths.to_vec()).apply(record.clone())
    }

    #[test]
    fn keeps_only_listed_fields() {
        let record = json!({
            "uscc": "91350100M000100Y43", "name": "闽江数据", "capital": 100,
            "legal_representative": {"name": "张三", "resident_id": "11010519491231002X"},
            "shareholders": [{"name": "甲", "share": 1}, {"name": "乙", "share": 2}, {"share": 3}]
        });
        let projected = project(
            &record,
            &paths(&[
                "/uscc",
                "/legal_representative/name",
                "/shareholders/*/name",
                "/missing",
            ]),
        );
        assert_eq!(
            projected,
            json!({
                "uscc": "91350100M000100Y43",
                "legal_representative": {"name": "张三"},
                "shareholders": [{"name": "甲"}, {"name": "乙"}, {}]
            })
        );
    }

    #[test]
    fn moving_gives_what_reading_copies_gives() {
        let record = json!({
            "uscc": "91350100M000100Y43", "name": "闽江数据", "capital": 100, "n": null,
            "legal_representative": {"name": "张三", "resident_id": "11010519491231002X"},
            "shareholders": [{"name": "甲", "share": 1}, {"name": "乙", "share": 2}, {"share": 3}, 7],
            "a": {"b": [1, 2, 3]}, "c": [{"d": 1}, {"d": 2}]
        });
        let cases: &[&[&str]] = &[
            &[
                "/uscc",
                "/legal_representative/name",
                "/shareholders/*/name",
                "/missing",
                "/n",
            ],
            &["/a", "/c/1/d", "/name"],
            &["/shareholders/*", "/capital"],
            &["/a/b/1", "/a/b/0", "/c/*/d"],
            // Overlapping paths: each reads a copy.
            &["/legal_representative", "/legal_representative/name"],
            &["/shareholders/*/name", "/shareholders/1"],
            &["/uscc", "/uscc"],
            &[],
        ];
        for case in cases {
            let paths = paths(case);
            let projection = Projection::new(paths);
            assert_eq!(
                projection.apply(record.clone()),
                projection.apply_moving(record.clone(), false),
                "{case:?}"
            );
        }
        assert_eq!(
            project(
                &record,
                &paths(&["/legal_representative", "/legal_representative/name"])
            ),
            json!({"legal_representative": {"name": "张三", "resident_id": "11010519491231002X"}})
        );
        assert_eq!(
            project(
                &record,
                &paths(&["/shareholders/*/name", "/shareholders/1"])
            ),
            json!({"shareholders": [{"name": "甲"}, {"name": "乙", "share": 2}, {}, null]})
        );
        assert!(Projection::new(paths(&["/a/b", "/a/c", "/c/*/d"])).disjoint);
        assert!(!Projection::new(paths(&["/a", "/a/b"])).disjoint);
        assert!(!Projection::new(paths(&["/c/*/d", "/c/1"])).disjoint);
        assert_eq!(
            Projection::new(paths(&["/a"])).apply(json!("scalar")),
            json!({})
        );
    }

    #[test]
    fn whole_subtrees_and_indexes() {
        let record = json!({"a": {"b": [1, 2, 3]}, "c": [{"d": 1}, {"d": 2}]});
        assert_eq!(
            project(&record, &paths(&["/a"])),
            json!({"a": {"b": [1, 2, 3]}})
        );
        assert_eq!(
            project(&record, &paths(&["/c/1/d"])),
            json!({"c": [{}, {"d": 2}]})
        );
        assert_eq!(project(&record, &paths(&[])), json!({}));
        assert_eq!(project(&json!("scalar"), &paths(&["/a"])), json!({}));
    }
}
