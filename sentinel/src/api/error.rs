//! API errors: every one answers with a status and `{"error": "<message>"}` (the seed answered
//! 404, 405 and 500 with HTML pages).

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// An error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad parameters: 400.
    #[error("{0}")]
    BadRequest(String),
    /// Unknown path: 404.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// Wrong method: 405.
    #[error("method {0} is not allowed here; use GET or HEAD")]
    MethodNotAllowed(String),
    /// Missing or wrong credentials: 401.
    #[error("authentication required")]
    Unauthorized,
    /// A failure of ours: 500 (logged).
    #[error("internal error: {0}")]
    Internal(String),
    /// The request took longer than allowed: 408.
    #[error("the request took longer than {0} s")]
    Timeout(u64),
    /// A `Host` header not in `WEB_ALLOWED_HOSTS` (DNS rebinding): 403.
    #[error("host {0:?} is not allowed here (WEB_ALLOWED_HOSTS)")]
    HostNotAllowed(String),
    /// Not ready or overloaded: 503.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::HostNotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(msg) = &self {
            tracing::error!(error = msg, "API request failed");
        }
        let status = self.status();
        let mut response = (
            status,
            super::json::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(
                    "Basic realm=\"NetTraffic-Sentinel\", charset=\"UTF-8\"",
                ),
            );
        }
        response
    }
}
