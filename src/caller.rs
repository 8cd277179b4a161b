//! What every answer outside the exchange path is given: the caller's language and request id,
//! and responses (problems, JSON) tagged with that id.

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::headers;
use crate::problem::ExchangeError;
use xgate_core::i18n::Lang;

/// The language and request id every non-exchange handler answers with.
pub(crate) struct Caller {
    /// From `Accept-Language`.
    pub lang: Lang,
    /// From `X-Request-Id` or generated.
    pub request_id: String,
}

impl Caller {
    /// Reads the caller's language and request id from the request headers.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Caller {
        Caller {
            lang: Lang::from_accept_language(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|value| value.to_str().ok()),
            ),
            request_id: headers::request_id(headers),
        }
    }

    /// A problem response in the caller's language.
    pub fn problem(&self, error: &ExchangeError) -> Response<Body> {
        error.to_response(self.lang, &self.request_id)
    }

    /// A JSON response with the request id.
    pub fn json(&self, status: StatusCode, body: &impl Serialize) -> Response<Body> {
        // Serializing our own response types cannot fail.
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.tag(response)
    }

    /// Adds `X-Request-Id` to a response.
    pub fn tag(&self, mut response: Response<Body>) -> Response<Body> {
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            response.headers_mut().insert(headers::X_REQUEST_ID, value);
        }
        response
    }
}
