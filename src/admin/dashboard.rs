//! GET `/dashboard`: the auditors' page (SPEC §4). One self-contained HTML document
//! (`dashboard.html`, inline style and script, no external assets) that holds no data: it asks
//! for an auditor or admin token and draws what `GET /audit/summary` answers with it.
//!
//! The page is served with a strict Content-Security-Policy: nothing may load but the page's
//! own inline script and style, each allowed by its SHA-256 (computed once, from the page as
//! compiled in), and the script may only call this origin.

use std::sync::LazyLock;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, Response, header};
use sha2::{Digest, Sha256};

/// The page, compiled in.
pub(crate) const PAGE: &str = include_str!("dashboard.html");

/// The page's Content-Security-Policy, computed once.
static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    // The policy is built from ASCII only (base64 and fixed words), so it is a header value.
    HeaderValue::from_str(&content_security_policy(PAGE))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

/// The text between the first `open` tag and the next `close` tag.
fn inline_block<'p>(page: &'p str, open: &str, close: &str) -> Option<&'p str> {
    let (_, rest) = page.split_once(open)?;
    let (block, _) = rest.split_once(close)?;
    Some(block)
}

/// The CSP source for an inline block: `'sha256-<base64 of its SHA-256>'`.
fn hash_source(block: &str) -> String {
    format!(
        "'sha256-{}'",
        STANDARD.encode(Sha256::digest(block.as_bytes()))
    )
}

/// The policy for `page`: its one inline `<script>` and one inline `<style>` by hash, calls to
/// this origin only, images only as `data:` URLs, and no framing, base URL or form target.
/// A page without a script or style block gets `'none'` for it.
pub(crate) fn content_security_policy(page: &str) -> String {
    let source = |open, close| {
        inline_block(page, open, close)
            .map(hash_source)
            .unwrap_or_else(|| "'none'".to_owned())
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        source("<script>", "</script>"),
        source("<style>", "</style>"),
    )
}

/// GET (and HEAD) `/dashboard`: the page, for anyone who can reach the admin listener.
pub async fn dashboard() -> Response<Body> {
    let mut response = Response::new(Body::from(PAGE));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, POLICY.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use xgate_audit::Outcome;

    /// The quoted words of the page's `var <name> = [...]` or `{...}` (its keys for an object).
    fn page_words(name: &str) -> Vec<String> {
        let start = PAGE
            .find(&format!("var {name} = "))
            .unwrap_or_else(|| panic!("the page declares {name}"));
        let rest = &PAGE[start..];
        let end = rest.find(';').expect("the declaration ends");
        let declaration = &rest[..end];
        if declaration.contains('{') {
            declaration
                .split([',', '{'])
                .filter_map(|member| member.split_once(':'))
                .map(|(key, _)| key.trim().to_owned())
                .collect()
        } else {
            declaration
                .split('\'')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        }
    }

    #[test]
    fn the_page_draws_every_exchange_outcome_and_only_those() {
        // The exchange outcomes: every `Outcome` but the lookups' cache answers.
        let mut exchange: Vec<&str> = Outcome::ALL
            .into_iter()
            .filter(|outcome| !outcome.is_cache_answer())
            .map(Outcome::as_str)
            .collect();
        let mut order = page_words("OUTCOME_ORDER");
        let mut colours = page_words("OUTCOME_COLOURS");
        exchange.sort_unstable();
        order.sort_unstable();
        colours.sort_unstable();
        assert_eq!(order, exchange, "OUTCOME_ORDER in dashboard.html");
        assert_eq!(colours, exchange, "OUTCOME_COLOURS in dashboard.html");
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_script_and_style_by_hash() {
        let page = "<style>b{}</style><script>go()</script>";
        let policy = content_security_policy(page);
        assert!(policy.starts_with("default-src 'none'; "), "{policy}");
        assert!(
            policy.contains(&format!("script-src {};", hash_source("go()"))),
            "{policy}"
        );
        assert!(
            policy.contains(&format!("style-src {};", hash_source("b{}"))),
            "{policy}"
        );
        assert!(!policy.contains("unsafe"), "{policy}");
        // The hash of a known text, as a browser computes it.
        assert_eq!(
            hash_source(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
        let bare = content_security_policy("<p>nothing</p>");
        assert!(bare.contains("script-src 'none';") && bare.contains("style-src 'none';"));
    }

    #[test]
    fn the_page_has_one_script_and_one_style_and_loads_nothing_from_elsewhere() {
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        assert!(!PAGE.contains("innerHTML"));
        // The one URL in the page is the SVG namespace, a name that is never fetched.
        let urls = PAGE.matches("http://").count() + PAGE.matches("https://").count();
        assert_eq!(urls, PAGE.matches("'http://www.w3.org/2000/svg'").count());
        assert_eq!(urls, 1);
    }
}
