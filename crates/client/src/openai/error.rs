use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error as the OpenAI API reports it:
/// `{"error":{"message","type","param","code"}}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong, for a person.
    pub message: String,
    /// `invalid_request_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request parameter at fault, if any.
    pub param: Option<String>,
    /// Machine-readable code.
    pub code: Option<String>,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// A 400 about one parameter.
    pub fn invalid(param: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: Some(code.to_string()),
            retry_after: None,
        }
    }

    /// A 4xx about the request as a whole.
    pub fn request(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some(code.to_string()),
            retry_after: None,
        }
    }

    /// A 5xx: the network could not answer.
    pub fn server(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: Some(code.to_string()),
            retry_after: None,
        }
    }

    /// Every worker is busy and the proxy's line is full: 429 with
    /// `Retry-After`, as OpenAI answers when it is overloaded.
    pub fn overloaded(message: impl Into<String>, retry_after: u32) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: message.into(),
            kind: "requests",
            param: None,
            code: Some("queue_full".into()),
            retry_after: Some(retry_after.max(1)),
        }
    }

    /// The JSON error object (also used as an SSE error event).
    pub fn body(&self) -> Vec<u8> {
        cocoon_openai::ErrorBody {
            error: cocoon_openai::ErrorObject {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        }
        .to_json()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body()).into_response();
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}
