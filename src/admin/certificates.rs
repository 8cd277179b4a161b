//! The certificate cache on the admin plane: DELETE `/admin/certificates/{type}` drops every
//! cached certificate of a type, DELETE `/admin/certificates/{type}/{id}` one (role admin, 204).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use http::{HeaderMap, Response};

use super::{WRITERS, require_role};
use crate::caller::Caller;
use crate::certificates::{self, check_id, drop_certificate, no_content, route};
use crate::gateway::Gateway;
use crate::problem::ExchangeError;

/// DELETE `/admin/certificates/{type}`: every cached certificate of the type.
pub(crate) async fn flush_type(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = gateway.snapshot();
    let outcome = async {
        let admin = require_role(&snapshot, &headers, WRITERS)?;
        let Path(certificate_type) =
            path.map_err(|_| ExchangeError::InvalidParameter { name: "type" })?;
        let issuer = route(&snapshot, &certificate_type)?;
        gateway
            .certificates
            .invalidate_type(&issuer.settings.certificate_type);
        tracing::info!(
            certificate_type = %issuer.settings.certificate_type,
            by = %admin.id,
            "certificate type flushed"
        );
        certificates::announce_invalidation(&gateway, &issuer.settings.certificate_type, None).await
    }
    .await;
    match outcome {
        Ok(()) => no_content(&caller),
        Err(error) => caller.problem(&error),
    }
}

/// DELETE `/admin/certificates/{type}/{id}`: one cached certificate.
pub(crate) async fn flush_one(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = gateway.snapshot();
    let outcome = async {
        let admin = require_role(&snapshot, &headers, WRITERS)?;
        let (certificate_type, id) = certificates::path_parts(path)?;
        let issuer = route(&snapshot, &certificate_type)?;
        check_id(issuer, &id)?;
        drop_certificate(&gateway, issuer, &id, admin.id.as_str()).await
    }
    .await;
    match outcome {
        Ok(()) => no_content(&caller),
        Err(error) => caller.problem(&error),
    }
}
