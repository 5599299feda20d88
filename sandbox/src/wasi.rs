//! The job log, and the WASI 0.2 context a guest toolchain may link against:
//! every interface present, every one denied or deterministic.
//!
//! | interface                | what the guest gets                                  |
//! |--------------------------|------------------------------------------------------|
//! | `wasi:cli/environment`   | no variables, no arguments, no working directory     |
//! | `wasi:cli/stdin`         | a closed stream                                      |
//! | `wasi:cli/stdout,stderr` | the job log (capped, shared with `anyu:model/log`)   |
//! | `wasi:cli/exit`          | ends the job with `Trap { kind: "exit" }`            |
//! | `wasi:filesystem/*`      | no preopened directories: nothing to open            |
//! | `wasi:sockets/*`         | TCP, UDP and name lookup refused; every address denied|
//! | `wasi:clocks/wall-clock` | fixed at 2000-01-01T00:00:00Z                        |
//! | `wasi:clocks/monotonic`  | fixed at 0; every sleep is over at once              |
//! | `wasi:random/*`          | a fixed pseudo-random sequence, the same every job   |

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView,
    WasiView,
};

use crate::host::RunState;

/// The capped job log: `anyu:model/log.write` lines and WASI stdout/stderr.
#[derive(Clone)]
pub(crate) struct JobLog(Arc<Mutex<LogBuf>>);

struct LogBuf {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl JobLog {
    pub(crate) fn new(cap: usize) -> Self {
        JobLog(Arc::new(Mutex::new(LogBuf {
            bytes: Vec::new(),
            cap,
            truncated: false,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogBuf> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a whole line, or drops it (and marks the log truncated) if it
    /// does not fit.
    pub(crate) fn line(&self, line: &str) {
        let mut b = self.lock();
        if b.bytes.len() + line.len() + 1 > b.cap {
            b.truncated = true;
            return;
        }
        b.bytes.extend_from_slice(line.as_bytes());
        b.bytes.push(b'\n');
    }

    /// Appends raw bytes, as many as fit.
    pub(crate) fn raw(&self, bytes: &[u8]) {
        let mut b = self.lock();
        let room = b.cap.saturating_sub(b.bytes.len());
        if bytes.len() > room {
            b.truncated = true;
        }
        let n = bytes.len().min(room);
        b.bytes.extend_from_slice(&bytes[..n]);
    }

    /// The log so far (lossy UTF-8) and whether anything was dropped.
    pub(crate) fn take(&self) -> (String, bool) {
        let mut b = self.lock();
        let bytes = std::mem::take(&mut b.bytes);
        (String::from_utf8_lossy(&bytes).into_owned(), b.truncated)
    }
}

struct LogStream(JobLog);

impl OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.0.raw(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable: past the cap bytes are dropped, never blocked on.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.raw(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for JobLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for JobLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LogStream(self.clone()))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LogStream(self.clone()))
    }
}

/// 2000-01-01T00:00:00Z.
const FIXED_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// A fixed byte sequence (splitmix64 from a constant seed) that the WASI
/// random interfaces cycle through.
fn seeded_bytes(seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(4096);
    for _ in 0..512 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out
}

/// The denied-or-deterministic WASI context of one job.
pub(crate) fn context(log: &JobLog) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.stdout(log.clone())
        .stderr(log.clone())
        .wall_clock(FixedWallClock)
        .monotonic_clock(FixedMonotonicClock)
        .secure_random(Deterministic::new(seeded_bytes(0x616e_7975)))
        .insecure_random(Deterministic::new(seeded_bytes(0x006d_6f64_656c)))
        .insecure_random_seed(0x616e_7975_2d6d_6f64_656c)
        .max_random_size(1 << 20)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    b.build()
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A pollable that is always ready: what a sleep becomes.
struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

fn ready_pollable(table: &mut ResourceTable) -> wasmtime::Result<Resource<DynPollable>> {
    let r = table.push(Ready)?;
    wasmtime_wasi::p2::subscribe(table, r)
}

/// The WASI version the sandbox links; components importing any 0.2.x
/// resolve to it.
const WASI_VERSION: &str = "0.2.12";

/// Links WASI 0.2 (synchronous), then replaces the monotonic clock's
/// subscriptions: wasmtime-wasi would sleep on the host, where the epoch
/// deadline cannot interrupt, so every sleep is over at once instead (the
/// clock is fixed anyway).
pub(crate) fn link(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(&format!("wasi:clocks/monotonic-clock@{WASI_VERSION}"))?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: wasmtime::StoreContextMut<'_, RunState>, (_d,): (u64,)| {
            Ok((ready_pollable(&mut store.data_mut().table)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: wasmtime::StoreContextMut<'_, RunState>, (_t,): (u64,)| {
            Ok((ready_pollable(&mut store.data_mut().table)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Interfaces of WASI 0.2 a component may import when WASI is on (any
/// `0.2.x` version).
pub(crate) const ALLOWED_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// Whether `name` (`pkg:ns/iface@version`) is an allowed WASI import.
pub(crate) fn is_allowed_wasi(name: &str) -> bool {
    match name.split_once('@') {
        Some((iface, version)) => {
            ALLOWED_WASI.contains(&iface)
                && version
                    .strip_prefix("0.2.")
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_caps_lines_and_raw_bytes() {
        let log = JobLog::new(10);
        log.line("12345");
        log.line("123456");
        log.raw(b"abcdefgh");
        let (text, truncated) = log.take();
        assert_eq!(text, "12345\nabcd");
        assert!(truncated);
    }

    #[test]
    fn wasi_allowlist_is_by_interface_and_minor_version() {
        assert!(is_allowed_wasi("wasi:io/streams@0.2.9"));
        assert!(!is_allowed_wasi("wasi:io/streams@0.3.0"));
        assert!(!is_allowed_wasi("wasi:io/streams"));
        assert!(!is_allowed_wasi("wasi:http/outgoing-handler@0.2.0"));
        assert!(!is_allowed_wasi("wasi:io/streams@0.2.x"));
    }
}
