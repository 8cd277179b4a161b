//! Field paths: JSON Pointers (RFC 6901) whose `*` segments stand for every element of an array.
//!
//! Formats (SPEC §7) and projections (`[services.<s>.fields]`) name fields this way.

use std::fmt;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object member (or, on an array, an index written as a decimal number).
    Key(String),
    /// Every element of an array.
    Each,
}

/// A parsed field path such as `/shareholders/*/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    /// Parses a JSON Pointer with `*` wildcards. `~0` and `~1` are unescaped; `~` followed by
    /// anything else is an error. The empty string is the whole record.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        if text.is_empty() {
            return Ok(FieldPath {
                segments: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err("a JSON Pointer starts with '/'".to_owned());
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                segments.push(Segment::Each);
                continue;
            }
            let mut key = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => key.push('~'),
                        Some('1') => key.push('/'),
                        _ => return Err("'~' must be followed by 0 or 1".to_owned()),
                    }
                } else {
                    key.push(c);
                }
            }
            segments.push(Segment::Key(key));
        }
        Ok(FieldPath { segments })
    }

    /// The path's segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// How many `*` segments the path has.
    pub fn wildcard_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|segment| matches!(segment, Segment::Each))
            .count()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Each => f.write_str("/*")?,
                Segment::Key(key) => {
                    f.write_str("/")?;
                    f.write_str(&key.replace('~', "~0").replace('/', "~1"))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for text in ["", "/a", "/a/*/b", "/a~1b/~0c", "/*", "/0/x", "/"] {
            let path = FieldPath::parse(text).unwrap();
            assert_eq!(path.to_string(), text);
        }
        let path = FieldPath::parse("/GDXX/*/GDMC").unwrap();
        assert_eq!(path.wildcard_count(), 1);
        assert_eq!(path.segments()[0], Segment::Key("GDXX".to_owned()));
    }

    #[test]
    fn refuses_what_is_not_a_pointer() {
        for text in ["a", "a/b", "/a~", "/a~2"] {
            assert!(FieldPath::parse(text).is_err(), "{text}");
        }
    }
}
