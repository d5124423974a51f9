//! JSON bodies as the seed wrote them (Flask's jsonify): keys sorted, compact, non-ASCII escaped
//! as `\uXXXX`, a trailing newline. Byte-level parity keeps naive scripts working.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// A JSON response in the seed's encoding.
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match encode(&self.0) {
            Ok(body) => {
                let mut r = body.into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => {
                super::error::ApiError::Internal(format!("encoding JSON: {e}")).into_response()
            }
        }
    }
}

/// Sorted keys (through `serde_json::Value`, whose maps are ordered), ASCII only, newline.
pub fn encode<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let sorted = serde_json::to_value(value)?;
    let text = serde_json::to_string(&sorted)?;
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn sorted_compact_escaped_with_newline() {
        #[derive(serde::Serialize)]
        struct T {
            zeta: u8,
            current_down_bps: u8,
            #[serde(rename = "current_down_Bps")]
            big: u8,
            note: &'static str,
        }
        let text = encode(&T {
            zeta: 1,
            current_down_bps: 2,
            big: 3,
            note: "手动",
        })
        .expect("encodes");
        assert_eq!(
            text,
            "{\"current_down_Bps\":3,\"current_down_bps\":2,\"note\":\"\\u624b\\u52a8\",\"zeta\":1}\n"
        );
    }
}
