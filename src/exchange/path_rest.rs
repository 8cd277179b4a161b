//! The path rest of an exchange (`/exchange/{provider}/{service}{rest}`): whether an upstream
//! could resolve it to a path outside the service's base path.
//!
//! The rest is forwarded byte for byte, appended to the service's upstream path. Upstreams do
//! not agree on what a path means: nginx percent-decodes the path before it resolves dot
//! segments (so `..%2f` is `../` there), Tomcat and Spring drop `;` parameters from segments
//! (so `..;` is `..`), Windows servers take `\` for `/`, a chain of proxies may decode twice
//! (so `%252e` becomes `.` at the end), and C code stops at a NUL. A rest is refused when any of
//! these readings could climb out of the base, and passed on unchanged otherwise.
//!
//! Deliberately allowed: `;` in a segment that is not a dot segment (`a;v=1`), any escape that
//! decodes to something harmless (`%20`, `%2B`, UTF-8 such as `%E4%B8%AD`, GBK, a literal `%` as
//! `%25`, even when escaped twice), and a `.`, `..`-free path of any length. Overlong UTF-8 forms
//! of `.` and `/` (`%C0%AE`, `%C0%AF`) are passed too: they are valid GBK characters, which
//! legacy systems put in paths, and no current server decodes them as dots or slashes.

use percent_encoding::percent_decode;

/// How many rounds of percent-decoding are looked through: a rest still holding escapes after
/// this many (`%25252e`...) is refused, since no legitimate path is escaped that deeply.
const DECODING_ROUNDS: usize = 3;

/// Whether an upstream could resolve `rest` (empty, or starting with `/`) outside the base path
/// it is appended to: a `.` or `..` segment (also percent-encoded, once or more, or with `;`
/// parameters), an encoded `/`, a `\` (raw or encoded), or a NUL.
pub(crate) fn may_leave_base(rest: &str) -> bool {
    let raw = rest.as_bytes();
    if dangerous(raw) {
        return true;
    }
    if !raw.contains(&b'%') {
        // The common case: nothing to decode, the raw segments were all there is to look at.
        return false;
    }
    let slashes = count_slashes(raw);
    let mut current = raw.to_vec();
    for _round in 0..DECODING_ROUNDS {
        let decoded: Vec<u8> = percent_decode(&current).collect();
        if decoded == current {
            return false;
        }
        // A slash that was not there before decoding is an encoded one: a new segment boundary
        // for an upstream that decodes first (nginx), invisible to one that does not.
        if count_slashes(&decoded) != slashes || dangerous(&decoded) {
            return true;
        }
        current = decoded;
    }
    // Still changing after every round we look through: escaped deeper than any real path.
    percent_decode(&current).ne(current.iter().copied())
}

/// A `\`, a NUL or a dot segment in `path` as it stands.
fn dangerous(path: &[u8]) -> bool {
    path.contains(&b'\\')
        || path.contains(&0)
        || path.split(|&byte| byte == b'/').any(is_dot_segment)
}

/// `.` or `..`, also with `;` parameters (`..;x=1`), which some servers drop before resolving.
fn is_dot_segment(segment: &[u8]) -> bool {
    let name = segment
        .split(|&byte| byte == b';')
        .next()
        .unwrap_or_default();
    name == b"." || name == b".."
}

fn count_slashes(path: &[u8]) -> usize {
    path.iter().filter(|&&byte| byte == b'/').count()
}

#[cfg(test)]
mod tests {
    use super::may_leave_base;

    #[test]
    fn rests_that_could_climb_out_of_the_base_are_refused() {
        for rest in [
            "/..",
            "/../x",
            "/.",
            "/a/./b",
            "/a/../../x",
            "/%2e%2e",
            "/%2E%2e/x",
            "/.%2e/x",
            "/..%2f",
            "/..%2finternal/secret",
            "/%2e%2e%2finternal",
            "/a%2F..%2F..%2Finternal",
            "/a%2fb",
            "/..;/internal",
            "/..;x=1/internal",
            "/.;x",
            "/a/..;/b",
            "/..%3b/internal",
            "/..%5cinternal",
            "/a%5Cb",
            "/a\\..\\b",
            "/%252e%252e/internal",
            "/%252e%252e%252finternal",
            "/a%252fb",
            "/%25252e%25252e/internal",
            "/%2525252e",
            "/a%00b",
            "/a%2500b",
        ] {
            assert!(may_leave_base(rest), "{rest} was let through");
        }
    }

    #[test]
    fn ordinary_rests_pass() {
        for rest in [
            "",
            "/",
            "/a/b/c",
            "/records/91350100M000100Y43",
            "/a%20b",
            "/a+b%2Bc",
            "/%E4%B8%AD%E6%96%87",
            "/%D6%D0%CE%C4",
            "/%C0%AE%C0%AE",
            "/a;v=1/b",
            "/a;b",
            "/...",
            "/.hidden",
            "/a..b",
            "/..a",
            "/100%25",
            "/100%25done",
            "/%2541",
            "/a%3Fb",
            "/a%23b",
            "//double",
        ] {
            assert!(!may_leave_base(rest), "{rest} was refused");
        }
    }
}
