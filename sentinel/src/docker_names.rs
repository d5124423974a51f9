//! Container names from the Docker engine's socket, when it is mounted (`/var/run/docker.sock`,
//! read-only is enough): `GET /containers/json` maps each container id to the name `docker ps`
//! shows. Without the socket (the usual case) the services table keeps the 12-digit id that the
//! cgroup path gives (docs/services.md).
//!
//! One small HTTP/1.0 request over a Unix socket, with short timeouts: it runs only when the
//! listening set changes, and an engine that does not answer costs at most a second.
//! It must not know maps, the store or the API.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

/// Where Docker, and Podman's compatible service, listen.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Largest answer read (a few hundred containers fit many times over).
const MAX_ANSWER: u64 = 4 << 20;

/// Short container id (12 hex digits) -> name, from the engine at `socket`; empty when there is
/// no engine there or it does not answer as expected.
pub fn names(socket: &Path) -> HashMap<String, String> {
    match query(socket) {
        Ok(body) => parse(&body),
        Err(e) => {
            if socket.exists() {
                tracing::debug!(socket = %socket.display(), error = %e, "the Docker socket did not answer; containers keep their ids");
            }
            HashMap::new()
        }
    }
}

fn query(socket: &Path) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_millis(800)))?;
    stream.set_write_timeout(Some(Duration::from_millis(200)))?;
    // HTTP/1.0: the engine closes after the answer and sends no chunked encoding.
    stream.write_all(b"GET /containers/json HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!(
            "answer {:?}",
            head.lines().next().unwrap_or_default()
        )));
    }
    Ok(body.to_owned())
}

/// `[{"Id": "...64 hex...", "Names": ["/jellyfin"]}, ...]` -> short id -> name.
fn parse(body: &str) -> HashMap<String, String> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(body) else {
        return HashMap::new();
    };
    items
        .iter()
        .filter_map(|c| {
            let id = c.get("Id")?.as_str()?;
            let name = c.get("Names")?.as_array()?.first()?.as_str()?;
            let short = id.get(..12)?;
            Some((short.to_owned(), name.trim_start_matches('/').to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A fake engine on a socket in a temporary directory that answers one request.
    fn engine(answer: &'static str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                assert!(
                    request.starts_with("GET /containers/json HTTP/1.0\r\n"),
                    "{request}"
                );
                let _ = s.write_all(answer.as_bytes());
            }
        });
        (dir, path)
    }

    #[test]
    fn names_come_from_the_engine() {
        let (_dir, path) = engine(
            "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n\
             [{\"Id\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\
               \"Names\":[\"/jellyfin\"]},{\"Id\":\"short\",\"Names\":[\"/bad\"]},{\"Names\":[]}]",
        );
        let names = names(&path);
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(names["0123456789ab"], "jellyfin");
    }

    #[test]
    fn no_engine_or_a_refusal_means_no_names() {
        assert!(names(Path::new("/nonexistent/docker.sock")).is_empty());
        let (_dir, path) = engine("HTTP/1.0 403 Forbidden\r\n\r\n{}");
        assert!(names(&path).is_empty());
        let (_dir, path) = engine("HTTP/1.0 200 OK\r\n\r\nnot json");
        assert!(names(&path).is_empty());
    }
}
