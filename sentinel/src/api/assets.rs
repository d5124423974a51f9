//! The dashboard, embedded in the binary (works offline, nothing fetched from the internet),
//! served with a content type, `Cache-Control: no-cache` and an ETag, so an upgraded binary is
//! picked up at once and an unchanged file costs a 304.

use axum::{
    extract::{Path, rejection::PathRejection},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use super::error::ApiError;

#[derive(rust_embed::Embed)]
#[folder = "../static/"]
#[exclude = "*.md"]
struct Assets;

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::NotFound(format!("/static/{path}")).into_response();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!(
        "\"{}\"",
        hash[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, file.data.into_owned()).into_response()
}

/// `GET /`: the dashboard.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /static/{*path}`.
pub async fn file(
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // A path that does not decode to UTF-8 names no embedded file (axum's own rejection would be
    // a plain-text 400).
    let Ok(Path(path)) = path else {
        return ApiError::NotFound(uri.path().to_owned()).into_response();
    };
    if path == "index.html" {
        // The page uses relative URLs and must be opened at the root.
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, HeaderValue::from_static("/"))],
        )
            .into_response();
    }
    serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_and_its_scripts_are_embedded() {
        assert!(
            Assets::get("index.html").is_some(),
            "static/index.html embedded"
        );
        assert!(
            Assets::iter().any(|p| p.ends_with(".js")),
            "scripts embedded"
        );
        assert_eq!(
            content_type("vendor/echarts.min.js"),
            "text/javascript; charset=utf-8"
        );
    }
}
