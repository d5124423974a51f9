//! The real server loop (`api::serve`) on a loopback socket: clients that send half a request
//! head or nothing at all cannot hold the shutdown past its grace, the connection cap holds, idle
//! connections are dropped after the header-read timeout, and `WEB_ALLOWED_HOSTS` answers 403
//! JSON to a foreign `Host` (DNS rebinding).

mod api_support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

use api_support::{Env, NOW, TZ};
use sentinel::api::{self, ServerLimits};

struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve(env: &Env, limits: ServerLimits) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(api::serve(
        listener,
        env.router(),
        async {
            let _ = stopped.await;
        },
        limits,
    ));
    Running { addr, stop, task }
}

/// One blocking GET with `host`; the status code (0 when the connection was closed unanswered).
fn get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

fn open(addr: SocketAddr, n: usize, prefix: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(prefix).ok()?;
            Some(s)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_and_idle_clients_cannot_hold_the_shutdown() {
    let env = Env::empty(TZ, NOW);
    let limits = ServerLimits {
        grace: Duration::from_secs(2),
        ..ServerLimits::default()
    };
    let server = serve(&env, limits).await;
    let addr = server.addr;
    let clients = tokio::task::spawn_blocking(move || {
        let mut all = open(
            addr,
            1,
            b"GET /api/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
        );
        all.extend(open(addr, 50, b""));
        all
    })
    .await
    .expect("clients");
    assert_eq!(clients.len(), 51);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let _ = server.stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("the server stopped within 10 s");
    let took = start.elapsed();
    eprintln!("server shutdown with 1 half-open and 50 idle clients: {took:?}");
    assert!(matches!(result, Ok(Ok(()))));
    assert!(
        took < Duration::from_secs(4),
        "shutdown took {took:?}, grace 2 s"
    );
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_idle_connections_time_out() {
    let env = Env::empty(TZ, NOW);
    let limits = ServerLimits {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    };
    let server = serve(&env, limits).await;
    let addr = server.addr;
    let (over_cap, after_timeout) = tokio::task::spawn_blocking(move || {
        let idle = open(addr, 8, b"");
        std::thread::sleep(Duration::from_millis(200));
        // The ninth is closed at once: no answer, no hang.
        let start = Instant::now();
        let (status, _) = get(addr, "/api/health", "127.0.0.1");
        let over = (status, start.elapsed());
        // After the header-read timeout the idle ones are gone and the API answers again.
        std::thread::sleep(Duration::from_millis(1500));
        let after = get(addr, "/api/health", "127.0.0.1").0;
        drop(idle);
        (over, after)
    })
    .await
    .expect("clients");
    eprintln!("over the cap: status {} after {:?}", over_cap.0, over_cap.1);
    assert_eq!(over_cap.0, 0, "a connection over the cap was served");
    assert!(over_cap.1 < Duration::from_secs(2), "{:?}", over_cap.1);
    assert_eq!(after_timeout, 200, "idle connections were not dropped");
    let _ = server.stop.send(());
    let _ = server.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_header_gets_403_json_when_hosts_are_listed() {
    let mut env = Env::empty(TZ, NOW);
    env.state.allowed_hosts = Arc::new(vec!["nas.lan".to_owned()]);
    let server = serve(&env, ServerLimits::default()).await;
    let addr = server.addr;
    let answers = tokio::task::spawn_blocking(move || {
        [
            "nas.lan:8080",
            "NAS.LAN",
            "127.0.0.1:8080",
            "[::1]:8080",
            "evil.example:8080",
        ]
        .map(|host| (host, get(addr, "/api/summary", host)))
    })
    .await
    .expect("clients");
    for (host, (status, body)) in answers {
        let want = if host.starts_with("evil") { 403 } else { 200 };
        assert_eq!(status, want, "{host}: {body}");
        if want == 403 {
            assert!(
                body.contains("application/json") && body.contains("WEB_ALLOWED_HOSTS"),
                "{body}"
            );
        }
    }
    let _ = server.stop.send(());
    let _ = server.task.await;
}
