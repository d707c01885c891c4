//! The API's accept loop: plain TCP or TLS (rustls), a deadline on a
//! client's headers and on its TLS handshake, the peer address for rate
//! limits, and a graceful stop that lets requests in progress finish.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, rustls};
use tower::ServiceExt;

/// Longest wait for requests in progress once a stop is asked for.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Connections served at once; more wait in the listen backlog, so idle
/// or slow clients cannot use up the process's file descriptors.
const MAX_CONNECTIONS: usize = 4096;
/// HTTP/2: a ping this often on a quiet connection, closed if unanswered.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("the certificate and key do not make a TLS config: {0}")]
    Config(String),
}

/// The listener's certificate, replaceable while serving (SIGHUP).
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    acceptor: RwLock<TlsAcceptor>,
}

impl Tls {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            acceptor: RwLock::new(acceptor(cert, key)?),
        }))
    }

    /// Read both files again; on any error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = acceptor(&self.cert, &self.key)?;
        if let Ok(mut current) = self.acceptor.write() {
            *current = fresh;
        }
        Ok(())
    }

    fn current(&self) -> Option<TlsAcceptor> {
        self.acceptor.read().ok().map(|a| a.clone())
    }

    /// Reload on every SIGHUP until the process ends.
    #[cfg(unix)]
    pub fn reload_on_hangup(self: &Arc<Self>) {
        let tls = self.clone();
        tokio::spawn(async move {
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hangups.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.cert.display(), "TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS reload failed; keeping the current certificate")
                    }
                }
            }
        });
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(cert, &e))?;
    if chain.is_empty() {
        return Err(read(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tls: Option<Arc<Tls>>,
    /// Deadline for a request's headers (and a TLS handshake).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress this long is closed.
    pub idle_timeout: Duration,
    /// Connections one address (an IPv6 /64) may hold at once; `None`
    /// behind a balancer (every connection comes from its few addresses,
    /// and it limits clients itself).
    pub max_connections_per_address: Option<usize>,
}

/// Connections held per client address, so one address cannot take every
/// connection slot. IPv6 clients count per /64: one host gets a whole one.
#[derive(Debug, Default)]
struct PerAddress(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

/// One connection's place in [`PerAddress`], given back when it closes.
struct AddressSlot {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, peer: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = crate::rate_limit::client_block(peer);
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(key).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// Whether a connection is idle: requests in progress, and when the last
/// one ended.
#[derive(Debug)]
struct Activity {
    since: std::time::Instant,
    in_progress: usize,
}

impl Activity {
    fn idle_for(&self) -> Option<Duration> {
        (self.in_progress == 0).then(|| self.since.elapsed())
    }
}

/// Counts a request in progress until dropped (when its handler is done
/// or was cancelled).
struct Busy(Arc<std::sync::Mutex<Activity>>);

impl Busy {
    fn start(activity: &Arc<std::sync::Mutex<Activity>>) -> Self {
        activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .in_progress += 1;
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut activity = self.0.lock().unwrap_or_else(|e| e.into_inner());
        activity.in_progress -= 1;
        activity.since = std::time::Instant::now();
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then let requests
/// in progress finish (up to a minute).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(options.header_read_timeout);
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_address = Arc::new(PerAddress::default());
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let address_slot = match options.max_connections_per_address {
            Some(max) => match per_address.take(peer.ip(), max) {
                Some(slot) => Some(slot),
                None => {
                    // Closed at once: this address holds its share already.
                    debug_closed(peer, &"too many connections from this address");
                    continue;
                }
            },
            None => None,
        };
        let _ = stream.set_nodelay(true);
        // Set by the connection's first request: until then the client
        // gets `header_read_timeout` in all (protocol preface, TLS, HTTP/2
        // HEADERS included), not only HTTP/1's header read.
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first = started.clone();
        let activity = Arc::new(std::sync::Mutex::new(Activity {
            since: std::time::Instant::now(),
            in_progress: 0,
        }));
        let requests = activity.clone();
        let app = app.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                first.store(true, std::sync::atomic::Ordering::Relaxed);
                request.extensions_mut().insert(ConnectInfo(peer));
                let busy = Busy::start(&requests);
                let response = app.clone().oneshot(request);
                async move {
                    let response = response.await;
                    drop(busy);
                    response
                }
            },
        ));
        let idle_timeout = options.idle_timeout;
        let tls = options.tls.as_ref().and_then(|t| t.current());
        let handshake_deadline = options.header_read_timeout;
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let _address_slot = address_slot;
            let deadline = tokio::time::Instant::now() + handshake_deadline;
            let serving = async {
                match tls {
                    None => {
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        watcher.watch(conn).await
                    }
                    Some(acceptor) => {
                        let stream = acceptor.accept(stream).await?;
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        watcher.watch(conn).await
                    }
                }
            };
            tokio::pin!(serving);
            let mut first_request_due = true;
            let result = loop {
                tokio::select! {
                    result = &mut serving => break result,
                    () = tokio::time::sleep_until(deadline), if first_request_due => {
                        if !started.load(std::sync::atomic::Ordering::Relaxed) {
                            return debug_closed(peer, &"no request within the header read timeout");
                        }
                        first_request_due = false;
                    }
                    () = idle(&activity, idle_timeout) => {
                        return debug_closed(peer, &"idle past the idle timeout");
                    }
                }
            };
            if let Err(e) = result {
                debug_closed(peer, &e);
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN_LIMIT:?}; stopping anyway");
    }
    Ok(())
}

/// Resolves once the connection has had no request in progress for
/// `limit` (checked a few times per period, so it closes within 1.25 ×).
async fn idle(activity: &std::sync::Mutex<Activity>, limit: Duration) {
    let tick = (limit / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        let idle_for = activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .idle_for();
        if idle_for.is_some_and(|d| d >= limit) {
            return;
        }
    }
}

/// A client going away (or never finishing its headers) is routine.
fn debug_closed(peer: SocketAddr, e: &dyn std::fmt::Display) {
    tracing::debug!(%peer, error = %e, "connection closed");
}
