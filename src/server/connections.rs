//! Accepting connections: HTTP/1 through hyper with a header-read timeout (a
//! client that sends half a request head is cut), a global connection limit
//! and a limit per client address. A connection over a limit is answered 503
//! and closed before anything is read from it. With TLS the handshake comes
//! first and must finish within the same header-read timeout; the limits,
//! timeouts and graceful shutdown are the same.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// The limits of the accept loop (`[server]` in anyu.toml).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time allowed for a request head, from the connection's first byte
    /// or the previous response.
    pub header_read_timeout: Duration,
    /// Open connections, all clients together.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
}

/// Open connections, in total and per client address.
struct Open {
    total: Arc<Semaphore>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    max_per_client: usize,
}

/// One admitted connection; leaving it frees its places.
struct Admitted {
    open: Arc<Open>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let permit = Arc::clone(&self.total).try_acquire_owned().ok()?;
        let mut per = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let n = per.entry(ip).or_insert(0);
        if *n >= self.max_per_client {
            return None;
        }
        *n += 1;
        Some(Admitted {
            open: Arc::clone(self),
            ip,
            _permit: permit,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per = self
            .open
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

/// The answer to a connection over a limit, written without waiting.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-type: application/json\r\ncontent-length: 74\r\nconnection: close\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many connections\"}}";

fn refuse(stream: TcpStream) {
    // Best effort: a full socket buffer just gets the close.
    let _ = stream.try_write(OVER_LIMIT);
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `shutdown`
/// completes, then lets requests in flight finish for up to `limits.drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Open {
        total: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        per_client: Mutex::new(HashMap::new()),
        max_per_client: limits.max_per_client.max(1),
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a reset before accept: go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(admitted) = open.admit(peer.ip()) else {
            tracing::warn!(client = %peer.ip(), "connection refused: limit reached");
            refuse(stream);
            continue;
        };
        let service = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let service = TowerToHyperService::new(service);
        let watcher = graceful.watcher();
        let http = http.clone();
        let tls = tls.clone();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let ended = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    // A client that does not finish the handshake in time is
                    // cut like one that does not finish its request head.
                    match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(admitted);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!("requests still running at shutdown were cut");
        }
    }
}

/// The caller's address as the accept loop saw it.
pub fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}
