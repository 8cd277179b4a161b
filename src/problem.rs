//! Errors and their one mapping to HTTP: RFC 9457 `application/problem+json` (SPEC §10).
//!
//! Every refusal the gateway makes is an [`ExchangeError`]. Its variants say whose fault it is
//! and which problem `type` it becomes; [`ExchangeError::to_response`] is the only place
//! that turns one into an HTTP response. Nothing internal (paths, upstream addresses, library
//! error text that could carry them) is ever put in a response.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;

use xgate_audit::Outcome;
use xgate_core::domain::InvalidName;
use xgate_core::i18n::Lang;
use xgate_core::registry::compatibility::{ReasonDocument, Report};
use xgate_core::registry::{Conflict, Violation};

/// Who caused a record not to translate, which decides the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranslationFault {
    /// The caller's record (422).
    Caller,
    /// The provider's answer (502).
    Upstream,
    /// A valid shared record that a department's format cannot express (502).
    Gateway,
}

/// Why a request was not (fully) served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// No credentials, or credentials no department has.
    #[error("unauthenticated")]
    Unauthenticated,
    /// The caller is known but may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No such provider, service, schema or route.
    #[error("not found")]
    NotFound,
    /// The service does not accept this method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods it does accept.
        allowed: Vec<Method>,
    },
    /// A query parameter has a value the route does not know.
    #[error("invalid parameter")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
    },
    /// The body is not JSON (or not UTF-8, or nested too deeply).
    #[error("malformed JSON: {reason}")]
    MalformedJson {
        /// The parser's description (position and kind; never the input itself).
        reason: String,
    },
    /// A JSON object in the body has two members of one name (after unescaping): which one a
    /// parser keeps differs, so what was validated could differ from what a provider reads
    /// (400 `malformed-json`, the member's pointer in `errors`).
    #[error("duplicate key")]
    DuplicateKey {
        /// The JSON Pointer of the duplicated member.
        pointer: String,
    },
    /// The body is not `application/json` (or `+json`).
    #[error("unsupported media type")]
    UnsupportedMediaType {
        /// The media types accepted here.
        expected: &'static str,
    },
    /// The body is larger than `max_body_bytes`.
    #[error("payload too large")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The record breaks its schema.
    #[error("schema validation failed")]
    SchemaValidation {
        /// `name@version` of the schema.
        schema: String,
        /// Every violation (bounded).
        violations: Vec<Violation>,
    },
    /// A record does not translate between a department's layout and the shared one.
    #[error("translation failed")]
    Translation {
        /// `name@version` of the schema.
        schema: String,
        /// The department whose format failed.
        department: String,
        /// Which way.
        direction: xgate_core::translate::Direction,
        /// Whose fault.
        fault: TranslationFault,
        /// Every problem, in the department's layout (bounded).
        violations: Vec<Violation>,
    },
    /// The upstream refused the connection, reset it, or failed mid-way.
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    #[error("upstream timeout")]
    UpstreamTimeout,
    /// The upstream answered a body that is not what its schema promises.
    #[error("upstream invalid response")]
    UpstreamInvalidResponse {
        /// `name@version` of the response schema.
        schema: String,
        /// How many violations (or 0 when the body was not JSON at all).
        violation_count: usize,
    },
    /// A name or version in the path breaks its pattern (no such thing can exist).
    #[error("invalid name")]
    InvalidName(InvalidName),
    /// A submitted schema is not a valid draft 2020-12 schema the registry can compile.
    #[error("invalid schema")]
    InvalidSchema {
        /// `name@version` it would have become.
        schema: String,
        /// Every problem, at pointers into the submitted document (bounded).
        violations: Vec<Violation>,
    },
    /// A configuration reload found problems; the running configuration stays.
    #[error("invalid configuration")]
    InvalidConfig {
        /// Every problem: `file: key: reason`, files relative to the configuration folder.
        problems: Vec<Violation>,
    },
    /// A new version is not proven compatible in the schema's mode.
    #[error("incompatible schema")]
    IncompatibleSchema {
        /// `name@version` it would have become.
        schema: String,
        /// The schema's compatibility mode.
        mode: xgate_core::domain::Compatibility,
        /// Every direction and earlier version not proven safe.
        report: Report,
    },
    /// The change conflicts with what exists (a referenced or pinned version).
    #[error("conflict")]
    Conflict(Conflict),
    /// A certificate lookup without `Xgate-Purpose` (SPEC §8).
    #[error("purpose required")]
    PurposeRequired,
    /// A certificate id that breaks its type's `id_format`: no issuer is asked.
    #[error("invalid certificate id")]
    InvalidCertificateId {
        /// The identifier format the id must have (`cn-uscc`, ...).
        id_format: String,
    },
    /// A subject id that breaks its kind's identifier format (`GET /audit/subjects/...`).
    #[error("invalid subject id")]
    InvalidSubjectId {
        /// The subject kind.
        kind: String,
        /// The identifier format ids of that kind must have, if it has one.
        id_format: Option<&'static str>,
    },
    /// The issuer has no certificate with this id (possibly remembered by the cache).
    #[error("certificate not found")]
    CertificateNotFound,
    /// The request's HTTP framing is broken: a head hyper could not parse, or a body that
    /// broke off or was malformed (a bad chunk size or terminator). The caller's fault (400).
    #[error("malformed request")]
    MalformedRequest,
    /// The request head is larger than `max_header_bytes`, or has more than `max_headers`
    /// headers (431).
    #[error("request header too large")]
    HeaderTooLarge,
    /// The request target is longer than the gateway reads (414).
    #[error("URI too long")]
    UriTooLong,
    /// The caller is past one of its limits (in-flight calls; later the rates and quotas of
    /// SPEC §14): 429 with `Retry-After`.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until a call would pass (`Retry-After`).
        retry_after_seconds: u64,
    },
    /// The gateway is at its bound of exchanges in flight: 503 with `Retry-After`.
    #[error("overloaded")]
    Overloaded {
        /// Seconds after which trying again makes sense (`Retry-After`).
        retry_after_seconds: u64,
    },
    /// The audit trail cannot commit (a full disk, an unreachable database): nothing that
    /// cannot be audited is served (503 with `Retry-After`, SPEC §13).
    #[error("store unavailable")]
    StoreUnavailable {
        /// Seconds after which trying again makes sense (`Retry-After`).
        retry_after_seconds: u64,
    },
    /// The shared store (SPEC §13) cannot be reached for a change that lives there (a schema
    /// registration, mode or deletion, a certificate invalidation's announcement): nothing was
    /// changed in the store (503 `store-unavailable` with `Retry-After`).
    #[error("shared store unreachable")]
    StoreUnreachable,
    /// The caller hung up before the gateway forwarded its call: it is not forwarded. Nobody
    /// receives this answer; the trail records it with status 499 (nginx's "client closed
    /// request") and outcome `cancelled`.
    #[error("caller gone")]
    CallerGone,
    /// The gateway failed; the details are in the log, not in the response.
    #[error("internal error")]
    Internal,
}

/// Status 499, "client closed request" (nginx's word; not in RFC 9110): what the trail records
/// for a call whose caller hung up before it was forwarded.
pub(crate) const CLIENT_CLOSED_REQUEST: u16 = 499;

/// The problem document of RFC 9457 with xgate's extensions.
#[derive(Debug, Serialize)]
struct ProblemDocument<'a> {
    #[serde(rename = "type")]
    problem_type: String,
    title: &'static str,
    status: u16,
    detail: String,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [Violation]>,
    /// `incompatible-schema`: every direction and earlier version not proven safe.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<Vec<ReasonDocument>>,
    /// `incompatible-schema`: the first known difference, or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    difference: Option<serde_json::Value>,
}

impl ExchangeError {
    /// The refusal of a call while the audit trail cannot commit.
    pub fn store_unavailable() -> ExchangeError {
        ExchangeError::StoreUnavailable {
            retry_after_seconds: xgate_audit::RETRY_AFTER_SECONDS,
        }
    }

    /// How long a caller refused for an unreachable store waits before trying again: the
    /// store's listener and the trail's probe try again well within it.
    pub const STORE_RETRY_AFTER_SECONDS: u64 = 1;

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ExchangeError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ExchangeError::Forbidden => StatusCode::FORBIDDEN,
            ExchangeError::NotFound => StatusCode::NOT_FOUND,
            ExchangeError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ExchangeError::MalformedJson { .. }
            | ExchangeError::DuplicateKey { .. }
            | ExchangeError::InvalidParameter { .. }
            | ExchangeError::InvalidName(_)
            | ExchangeError::PurposeRequired => StatusCode::BAD_REQUEST,
            ExchangeError::InvalidCertificateId { .. } | ExchangeError::InvalidSubjectId { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ExchangeError::CertificateNotFound => StatusCode::NOT_FOUND,
            ExchangeError::InvalidSchema { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ExchangeError::InvalidConfig { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ExchangeError::IncompatibleSchema { .. } | ExchangeError::Conflict(_) => {
                StatusCode::CONFLICT
            }
            ExchangeError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ExchangeError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ExchangeError::SchemaValidation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ExchangeError::Translation { fault, .. } => match fault {
                TranslationFault::Caller => StatusCode::UNPROCESSABLE_ENTITY,
                TranslationFault::Upstream | TranslationFault::Gateway => StatusCode::BAD_GATEWAY,
            },
            ExchangeError::UpstreamUnavailable | ExchangeError::UpstreamInvalidResponse { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ExchangeError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ExchangeError::MalformedRequest => StatusCode::BAD_REQUEST,
            ExchangeError::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ExchangeError::UriTooLong => StatusCode::URI_TOO_LONG,
            ExchangeError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ExchangeError::Overloaded { .. }
            | ExchangeError::StoreUnavailable { .. }
            | ExchangeError::StoreUnreachable => StatusCode::SERVICE_UNAVAILABLE,
            ExchangeError::CallerGone => {
                StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ExchangeError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The last part of the problem `type` URN.
    pub fn problem_type(&self) -> &'static str {
        match self {
            ExchangeError::Unauthenticated => "unauthenticated",
            ExchangeError::Forbidden => "forbidden",
            ExchangeError::NotFound => "not-found",
            ExchangeError::MethodNotAllowed { .. } => "method-not-allowed",
            ExchangeError::MalformedJson { .. } | ExchangeError::DuplicateKey { .. } => {
                "malformed-json"
            }
            ExchangeError::InvalidParameter { .. } | ExchangeError::InvalidName(_) => {
                "invalid-parameter"
            }
            ExchangeError::InvalidSchema { .. } => "invalid-schema",
            ExchangeError::InvalidConfig { .. } => "invalid-config",
            ExchangeError::IncompatibleSchema { .. } => "incompatible-schema",
            ExchangeError::Conflict(_) => "conflict",
            ExchangeError::UnsupportedMediaType { .. } => "unsupported-media-type",
            ExchangeError::PayloadTooLarge { .. } => "payload-too-large",
            ExchangeError::SchemaValidation { .. } => "schema-validation",
            ExchangeError::Translation { .. } => "translation",
            ExchangeError::UpstreamUnavailable => "upstream-unavailable",
            ExchangeError::UpstreamTimeout => "upstream-timeout",
            ExchangeError::UpstreamInvalidResponse { .. } => "upstream-invalid-response",
            ExchangeError::PurposeRequired => "purpose-required",
            ExchangeError::InvalidCertificateId { .. } | ExchangeError::InvalidSubjectId { .. } => {
                "schema-validation"
            }
            ExchangeError::CertificateNotFound => "certificate-not-found",
            ExchangeError::MalformedRequest => "malformed-request",
            ExchangeError::HeaderTooLarge => "header-too-large",
            ExchangeError::UriTooLong => "uri-too-long",
            ExchangeError::RateLimited { .. } => "rate-limited",
            ExchangeError::Overloaded { .. } => "overloaded",
            ExchangeError::StoreUnavailable { .. } | ExchangeError::StoreUnreachable => {
                "store-unavailable"
            }
            ExchangeError::CallerGone => "client-closed-request",
            ExchangeError::Internal => "internal",
        }
    }

    /// The `outcome` label of SPEC §9.
    pub fn outcome(&self) -> Outcome {
        match self {
            ExchangeError::Unauthenticated => Outcome::Unauthenticated,
            ExchangeError::Forbidden | ExchangeError::MethodNotAllowed { .. } => Outcome::Forbidden,
            ExchangeError::NotFound | ExchangeError::CertificateNotFound => Outcome::NotFound,
            ExchangeError::MalformedJson { .. }
            | ExchangeError::DuplicateKey { .. }
            | ExchangeError::InvalidParameter { .. }
            | ExchangeError::InvalidName(_)
            | ExchangeError::InvalidSchema { .. }
            | ExchangeError::InvalidConfig { .. }
            | ExchangeError::IncompatibleSchema { .. }
            | ExchangeError::Conflict(_)
            | ExchangeError::UnsupportedMediaType { .. }
            | ExchangeError::SchemaValidation { .. }
            | ExchangeError::PurposeRequired
            | ExchangeError::InvalidCertificateId { .. }
            | ExchangeError::InvalidSubjectId { .. }
            | ExchangeError::MalformedRequest => Outcome::InvalidRequest,
            ExchangeError::PayloadTooLarge { .. }
            | ExchangeError::HeaderTooLarge
            | ExchangeError::UriTooLong => Outcome::TooLarge,
            ExchangeError::RateLimited { .. } | ExchangeError::Overloaded { .. } => {
                Outcome::RateLimited
            }
            ExchangeError::StoreUnavailable { .. } | ExchangeError::StoreUnreachable => {
                Outcome::StoreUnavailable
            }
            ExchangeError::CallerGone => Outcome::Cancelled,
            ExchangeError::Translation { .. } => Outcome::TranslationError,
            ExchangeError::UpstreamUnavailable | ExchangeError::Internal => Outcome::UpstreamError,
            ExchangeError::UpstreamTimeout => Outcome::UpstreamTimeout,
            ExchangeError::UpstreamInvalidResponse { .. } => Outcome::InvalidResponse,
        }
    }

    fn title(&self, lang: Lang) -> &'static str {
        let (en, zh) = match self {
            ExchangeError::Unauthenticated => ("Authentication required", "需要身份认证"),
            ExchangeError::Forbidden => ("Forbidden", "无权访问"),
            ExchangeError::NotFound => ("Not found", "未找到"),
            ExchangeError::MethodNotAllowed { .. } => ("Method not allowed", "不允许的请求方法"),
            ExchangeError::MalformedJson { .. } | ExchangeError::DuplicateKey { .. } => {
                ("Malformed JSON", "JSON 格式错误")
            }
            ExchangeError::InvalidParameter { .. } => ("Invalid parameter", "参数无效"),
            ExchangeError::UnsupportedMediaType { .. } => {
                ("Unsupported media type", "不支持的内容类型")
            }
            ExchangeError::PayloadTooLarge { .. } => ("Payload too large", "请求体过大"),
            ExchangeError::SchemaValidation { .. } => {
                ("Record does not match schema", "记录不符合数据规范")
            }
            ExchangeError::Translation { .. } => ("Record does not translate", "记录无法转换"),
            ExchangeError::UpstreamUnavailable => ("Upstream unavailable", "提供方服务不可用"),
            ExchangeError::UpstreamTimeout => ("Upstream timeout", "提供方服务响应超时"),
            ExchangeError::UpstreamInvalidResponse { .. } => (
                "Upstream response does not match schema",
                "提供方响应不符合数据规范",
            ),
            ExchangeError::InvalidName(_) => ("Invalid name", "名称无效"),
            ExchangeError::InvalidSchema { .. } => ("Invalid schema", "数据规范无效"),
            ExchangeError::InvalidConfig { .. } => ("Invalid configuration", "配置无效"),
            ExchangeError::IncompatibleSchema { .. } => {
                ("Incompatible schema version", "数据规范版本不兼容")
            }
            ExchangeError::Conflict(_) => ("Conflict", "操作冲突"),
            ExchangeError::PurposeRequired => ("Purpose required", "须说明查询用途"),
            ExchangeError::InvalidCertificateId { .. } => {
                ("Invalid certificate id", "证照标识无效")
            }
            ExchangeError::InvalidSubjectId { .. } => ("Invalid subject id", "主体标识无效"),
            ExchangeError::CertificateNotFound => ("Certificate not found", "未找到该证照"),
            ExchangeError::MalformedRequest => ("Malformed request", "请求格式错误"),
            ExchangeError::HeaderTooLarge => ("Request header too large", "请求头过大"),
            ExchangeError::UriTooLong => ("URI too long", "请求地址过长"),
            ExchangeError::RateLimited { .. } => ("Too many requests", "请求过于频繁"),
            ExchangeError::Overloaded { .. } => ("Gateway busy", "网关繁忙"),
            ExchangeError::StoreUnavailable { .. } => ("Audit store unavailable", "审计存储不可用"),
            ExchangeError::StoreUnreachable => ("Shared store unreachable", "共享存储无法访问"),
            ExchangeError::CallerGone => ("Client closed request", "调用方已断开"),
            ExchangeError::Internal => ("Internal error", "网关内部错误"),
        };
        lang.pick(en, zh)
    }

    fn detail(&self, lang: Lang) -> String {
        let zh = lang == Lang::Zh;
        match self {
            ExchangeError::Unauthenticated if zh => {
                "请在 Authorization 头中提供有效的 Bearer 令牌或使用已登记的客户端证书".to_owned()
            }
            ExchangeError::Unauthenticated => {
                "Send a valid bearer token in Authorization or a registered client certificate"
                    .to_owned()
            }
            ExchangeError::Forbidden if zh => "本部门无权执行该操作".to_owned(),
            ExchangeError::Forbidden => "Your department may not do this".to_owned(),
            ExchangeError::NotFound if zh => "请求的资源不存在".to_owned(),
            ExchangeError::NotFound => "No such resource".to_owned(),
            // A route outside the exchange path: the router sets `Allow` itself.
            ExchangeError::MethodNotAllowed { allowed } if allowed.is_empty() => lang
                .pick(
                    "This route does not accept the method; Allow lists the ones it does",
                    "该路由不接受此请求方法，可用的方法见 Allow 头",
                )
                .to_owned(),
            ExchangeError::MethodNotAllowed { allowed } => {
                let list = allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if zh {
                    format!("允许的方法：{list}")
                } else {
                    format!("Allowed methods: {list}")
                }
            }
            ExchangeError::InvalidParameter { name } if zh => format!("参数 {name} 的取值无效"),
            ExchangeError::InvalidParameter { name } => {
                format!("The value of the parameter {name} is not one this route accepts")
            }
            ExchangeError::MalformedJson { reason } if zh => {
                format!("请求体不是有效的 JSON：{reason}")
            }
            ExchangeError::MalformedJson { reason } => {
                format!("The body is not valid JSON: {reason}")
            }
            ExchangeError::DuplicateKey { pointer } if zh => {
                format!("请求体中的 JSON 对象有重复的字段名（{pointer}），无法确定以哪一个为准")
            }
            ExchangeError::DuplicateKey { pointer } => format!(
                "A JSON object in the body has two members named alike ({pointer}); parsers disagree on which one counts"
            ),
            ExchangeError::UnsupportedMediaType { expected } if zh => {
                format!("Content-Type 应为 {expected}")
            }
            ExchangeError::UnsupportedMediaType { expected } => {
                format!("Content-Type must be {expected}")
            }
            ExchangeError::PayloadTooLarge { limit } if zh => {
                format!("请求体超过 {limit} 字节的上限")
            }
            ExchangeError::PayloadTooLarge { limit } => {
                format!("The body exceeds the limit of {limit} bytes")
            }
            ExchangeError::SchemaValidation { schema, violations } if zh => {
                format!("记录有 {} 处不符合 {schema}", violations.len())
            }
            ExchangeError::SchemaValidation { schema, violations } => {
                let count = violations.len();
                let noun = if count == 1 {
                    "violation"
                } else {
                    "violations"
                };
                format!("{count} {noun} of {schema}")
            }
            ExchangeError::Translation {
                schema,
                department,
                direction,
                fault,
                violations,
            } => {
                let count = violations.len();
                let layout = match (direction, zh) {
                    (xgate_core::translate::Direction::ToShared, false) => {
                        format!(
                            "from the layout of {department} into the shared layout of {schema}"
                        )
                    }
                    (xgate_core::translate::Direction::FromShared, false) => {
                        format!(
                            "from the shared layout of {schema} into the layout of {department}"
                        )
                    }
                    (xgate_core::translate::Direction::ToShared, true) => {
                        format!("从 {department} 的数据格式转换为 {schema} 共享格式")
                    }
                    (xgate_core::translate::Direction::FromShared, true) => {
                        format!("从 {schema} 共享格式转换为 {department} 的数据格式")
                    }
                };
                match (zh, fault) {
                    (false, TranslationFault::Caller) => {
                        format!("{count} field(s) of the record cannot be translated {layout}")
                    }
                    (false, _) => format!(
                        "A record could not be translated {layout} ({count} problem(s)); it was not passed on"
                    ),
                    (true, TranslationFault::Caller) => format!("记录有 {count} 处无法{layout}"),
                    (true, _) => format!("记录有 {count} 处无法{layout}，未予转发"),
                }
            }
            ExchangeError::UpstreamUnavailable if zh => {
                "未能连接提供方服务，或连接被中断".to_owned()
            }
            ExchangeError::UpstreamUnavailable => {
                "The provider's service could not be reached or broke off".to_owned()
            }
            ExchangeError::UpstreamTimeout if zh => "提供方服务未在规定时间内响应".to_owned(),
            ExchangeError::UpstreamTimeout => {
                "The provider's service did not answer in time".to_owned()
            }
            ExchangeError::UpstreamInvalidResponse {
                schema,
                violation_count,
            } => match (zh, violation_count) {
                (true, 0) => format!("提供方的响应不是 JSON，应符合 {schema}，未予转发"),
                (true, n) => format!("提供方的响应有 {n} 处不符合 {schema}，未予转发"),
                (false, 0) => {
                    format!(
                        "The provider answered something other than JSON for {schema}; it was not passed on"
                    )
                }
                (false, n) => format!(
                    "The provider's answer has {n} violations of {schema}; it was not passed on"
                ),
            },
            ExchangeError::InvalidName(invalid) if zh => {
                format!(
                    "路径中的{}无效：须为 1 至 63 个小写字母、数字或“-”，且不以“-”开头（版本须为不带前导零的正整数）",
                    kind_zh(invalid.kind)
                )
            }
            ExchangeError::InvalidName(invalid) => {
                format!(
                    "The {} in the path is not valid: {}",
                    invalid.kind, invalid.rule
                )
            }
            ExchangeError::InvalidConfig { problems } if zh => {
                format!("配置有 {} 处问题，未重新加载，当前配置继续生效", problems.len())
            }
            ExchangeError::InvalidConfig { problems } => format!(
                "{} problem(s) in the configuration; nothing was reloaded and the running configuration stays",
                problems.len()
            ),
            ExchangeError::InvalidSchema { schema, violations } if zh => {
                format!(
                    "提交的文档不能登记为 {schema}：有 {} 处问题",
                    violations.len()
                )
            }
            ExchangeError::InvalidSchema { schema, violations } => format!(
                "The document cannot be registered as {schema}: {} problem(s) (draft 2020-12 meta-schema, references, patterns)",
                violations.len()
            ),
            ExchangeError::IncompatibleSchema { schema, mode, .. } if zh => {
                format!(
                    "{schema} 未能被证明满足兼容性模式 {}，未予登记",
                    mode.as_str()
                )
            }
            ExchangeError::IncompatibleSchema { schema, mode, .. } => format!(
                "{schema} is not proven compatible in mode {}; it was not registered",
                mode.as_str()
            ),
            ExchangeError::Conflict(conflict) => conflict_detail(conflict, lang),
            ExchangeError::PurposeRequired if zh => {
                "查询电子证照须在 Xgate-Purpose 头中说明用途（将记入审计日志）".to_owned()
            }
            ExchangeError::PurposeRequired => {
                "Certificate lookups must state their purpose in Xgate-Purpose (it is recorded for auditors)"
                    .to_owned()
            }
            ExchangeError::InvalidCertificateId { id_format } if zh => {
                format!("证照标识不符合 {id_format} 格式，未向签发部门查询")
            }
            ExchangeError::InvalidCertificateId { id_format } => {
                format!("The certificate id is not a valid {id_format}; the issuer was not asked")
            }
            ExchangeError::InvalidSubjectId { kind, id_format: Some(format) } if zh => {
                format!("{kind} 类主体的标识须符合 {format} 格式")
            }
            ExchangeError::InvalidSubjectId { kind, id_format: Some(format) } => {
                format!("A subject id of kind {kind} must be a valid {format}")
            }
            ExchangeError::InvalidSubjectId { kind, id_format: None } if zh => {
                format!("{kind} 类主体的标识须为 1 至 256 字节")
            }
            ExchangeError::InvalidSubjectId { kind, id_format: None } => {
                format!("A subject id of kind {kind} must be 1 to 256 bytes")
            }
            ExchangeError::CertificateNotFound if zh => "签发部门没有该标识的证照".to_owned(),
            ExchangeError::CertificateNotFound => {
                "The issuing department has no certificate with this id".to_owned()
            }
            ExchangeError::MalformedRequest if zh => {
                "请求的 HTTP 格式有误（请求头无法解析，或请求体中断、分块编码错误）".to_owned()
            }
            ExchangeError::MalformedRequest => {
                "The request's HTTP framing is broken (a head that does not parse, or a body that broke off or has a malformed chunk)".to_owned()
            }
            ExchangeError::HeaderTooLarge if zh => "请求头超过网关的大小或数量上限".to_owned(),
            ExchangeError::HeaderTooLarge => {
                "The request head exceeds the gateway's limit on its size or number of headers"
                    .to_owned()
            }
            ExchangeError::UriTooLong if zh => "请求地址超过网关的长度上限".to_owned(),
            ExchangeError::UriTooLong => {
                "The request target exceeds the gateway's length limit".to_owned()
            }
            ExchangeError::RateLimited {
                retry_after_seconds,
            } if zh => format!("本部门的请求超过限额，请 {retry_after_seconds} 秒后重试"),
            ExchangeError::RateLimited {
                retry_after_seconds,
            } => format!(
                "Your department is past its limit; try again in {retry_after_seconds} s (Retry-After)"
            ),
            ExchangeError::Overloaded {
                retry_after_seconds,
            } if zh => format!("网关正在处理的请求已达上限，请 {retry_after_seconds} 秒后重试"),
            ExchangeError::Overloaded {
                retry_after_seconds,
            } => format!(
                "The gateway is at its limit of calls in flight; try again in {retry_after_seconds} s (Retry-After)"
            ),
            ExchangeError::StoreUnavailable {
                retry_after_seconds,
            } if zh => format!(
                "审计记录暂时无法写入，为保证每次交换均有审计记录，请求未予转发；请 {retry_after_seconds} 秒后重试"
            ),
            ExchangeError::StoreUnavailable {
                retry_after_seconds,
            } => format!(
                "The audit trail cannot record calls right now, so none is forwarded; try again in {retry_after_seconds} s (Retry-After)"
            ),
            ExchangeError::StoreUnreachable if zh => format!(
                "共享存储（数据库）暂时无法访问，本次变更未生效；请 {} 秒后重试",
                ExchangeError::STORE_RETRY_AFTER_SECONDS
            ),
            ExchangeError::StoreUnreachable => format!(
                "The shared store (the database) cannot be reached right now, so nothing was changed; try again in {} s (Retry-After)",
                ExchangeError::STORE_RETRY_AFTER_SECONDS
            ),
            ExchangeError::CallerGone if zh => "调用方在转发前断开，请求未予转发".to_owned(),
            ExchangeError::CallerGone => {
                "The caller hung up before the call was forwarded; it was not forwarded".to_owned()
            }
            ExchangeError::Internal if zh => "网关处理请求时出错，请稍后重试".to_owned(),
            ExchangeError::Internal => {
                "The gateway failed to handle the request; try again later".to_owned()
            }
        }
    }

    /// The `Retry-After` seconds of a refusal that passes with time.
    pub(crate) fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            ExchangeError::RateLimited {
                retry_after_seconds,
            }
            | ExchangeError::Overloaded {
                retry_after_seconds,
            }
            | ExchangeError::StoreUnavailable {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            ExchangeError::StoreUnreachable => Some(ExchangeError::STORE_RETRY_AFTER_SECONDS),
            _ => None,
        }
    }

    /// The problem response for this error: the one place errors become HTTP.
    pub(crate) fn to_response(&self, lang: Lang, request_id: &str) -> Response<Body> {
        self.problem_response(lang, request_id).map(Body::from)
    }

    /// [`ExchangeError::to_response`] with the document as bytes, for the connection layer,
    /// which writes a problem response itself where hyper would answer alone (a request head
    /// that does not parse).
    pub(crate) fn problem_response(&self, lang: Lang, request_id: &str) -> Response<Bytes> {
        let status = self.status();
        let errors = match self {
            ExchangeError::SchemaValidation { violations, .. }
            | ExchangeError::InvalidSchema { violations, .. } => Some(violations.as_slice()),
            ExchangeError::InvalidConfig { problems } => Some(problems.as_slice()),
            // Only the caller's own record's problems are shown; another department's values
            // stay out of the response.
            ExchangeError::Translation {
                violations,
                fault: TranslationFault::Caller,
                ..
            } => Some(violations.as_slice()),
            _ => None,
        };
        let id_violation;
        let duplicate_violation;
        let errors = match self {
            ExchangeError::DuplicateKey { pointer } => {
                duplicate_violation = [duplicate_key_violation(pointer, lang)];
                Some(&duplicate_violation[..])
            }
            ExchangeError::InvalidCertificateId { id_format } => {
                id_violation = [Violation::new(
                    "/id",
                    "format",
                    match lang {
                        Lang::En => format!("Not a valid {id_format}"),
                        Lang::Zh => format!("不是有效的 {id_format}"),
                    },
                )];
                Some(&id_violation[..])
            }
            _ => errors,
        };
        let (reasons, difference) = match self {
            ExchangeError::IncompatibleSchema { report, .. } => (
                Some(
                    report
                        .reasons
                        .iter()
                        .map(|reason| reason.to_document(lang))
                        .collect(),
                ),
                Some(report.difference().cloned().unwrap_or_default()),
            ),
            _ => (None, None),
        };
        let document = ProblemDocument {
            problem_type: format!("urn:xgate:problem:{}", self.problem_type()),
            title: self.title(lang),
            status: status.as_u16(),
            detail: self.detail(lang),
            request_id,
            errors,
            reasons,
            difference,
        };
        // Serializing plain strings and numbers cannot fail; an empty body is the fallback.
        let body = serde_json::to_vec(&document).unwrap_or_default();
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static(lang.pick("en", "zh")),
        );
        if let ExchangeError::MethodNotAllowed { allowed } = self {
            let list = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            // An empty list leaves `Allow` to the router, which knows the route's methods.
            let value = HeaderValue::from_str(&list).ok();
            if let Some(value) = value.filter(|_| !allowed.is_empty()) {
                headers.insert(header::ALLOW, value);
            }
        }
        if let Some(seconds) = self.retry_after_seconds() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let ExchangeError::Unauthenticated = self {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"xgate\""),
            );
        }
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert(crate::headers::X_REQUEST_ID, value);
        }
        response
    }
}

/// The violation naming a duplicated member (keyword `duplicate-key`): in a problem document,
/// and as an NDJSON line's result on `/validate`.
pub(crate) fn duplicate_key_violation(pointer: &str, lang: Lang) -> Violation {
    Violation::new(
        pointer,
        "duplicate-key",
        lang.pick(
            "this member's name appears twice in its object",
            "该字段名在同一对象中出现了两次",
        )
        .to_owned(),
    )
}

/// The Chinese name of a kind of name (`InvalidName::kind`).
fn kind_zh(kind: &str) -> &'static str {
    match kind {
        "schema name" => "数据规范名称",
        "schema version" => "数据规范版本号",
        "department id" => "部门标识",
        "service name" => "服务名称",
        "certificate type" => "证照类型",
        _ => "名称",
    }
}

/// What a [`Conflict`] means, in `lang`.
fn conflict_detail(conflict: &Conflict, lang: Lang) -> String {
    match (conflict, lang) {
        (Conflict::ReferencedBy { schema, by }, Lang::En) => {
            format!("{schema} cannot be deleted: {by} references it")
        }
        (Conflict::ReferencedBy { schema, by }, Lang::Zh) => {
            format!("{schema} 不能删除：{by} 引用了它")
        }
        (Conflict::PinnedBy { schema, user }, Lang::En) => {
            format!("{schema} cannot be deleted: the configuration pins it ({user})")
        }
        (Conflict::PinnedBy { schema, user }, Lang::Zh) => {
            format!("{schema} 不能删除：配置中固定使用了该版本（{user}）")
        }
        (Conflict::LastVersionInUse { schema, user }, Lang::En) => format!(
            "{schema} cannot be deleted: it is the last version and the configuration uses the schema ({user})"
        ),
        (Conflict::LastVersionInUse { schema, user }, Lang::Zh) => {
            format!("{schema} 不能删除：它是最后一个版本，而配置仍在使用该数据规范（{user}）")
        }
        (Conflict::VersionsExhausted { schema }, Lang::En) => {
            format!("{schema} has used every version number; register under a new name")
        }
        (Conflict::VersionsExhausted { schema }, Lang::Zh) => {
            format!("{schema} 的版本号已用尽，请以新名称登记")
        }
    }
}
