//! TLS termination in the server (`[server.tls]`), for deployments without
//! a reverse proxy: rustls with the ring provider (pure Rust, no C build),
//! TLS 1.2 and 1.3, HTTP/1.1 by ALPN. The certificate chain and its key are
//! read once at start; a file that cannot be read, holds no certificate or
//! key, or a key that is not the certificate's stops the start, named.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// The acceptor for `config`, or why the server must not start.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, String> {
    let (cert_file, key_file) = (&config.cert_file, &config.key_file);
    let certs = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("TLS key {}: {}", key_file.display(), pem_error(&e)))?;
    // rustls 0.23.48 deprecates the ring provider for lacking post-quantum
    // key exchange; that needs aws-lc-rs (cmake and a C build), which this
    // build avoids. Classical X25519/P-256 key exchange, as most clients use.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // The key must be the leaf certificate's: checked here, not at the
    // first handshake.
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("TLS key {}: {e}", key_file.display()))?;
    rustls::sign::CertifiedKey::new(certs.clone(), signing_key)
        .keys_match()
        .map_err(|_| {
            format!(
                "TLS certificate {} and key {} do not match",
                cert_file.display(),
                key_file.display()
            )
        })?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "TLS certificate {} and key {} do not match: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let named = |why: String| format!("TLS certificate {}: {why}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| named(pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| named(pem_error(&e)))?;
    if certs.is_empty() {
        return Err(named("no certificate in the file".into()));
    }
    Ok(certs)
}

/// A PEM error in words; file contents are never echoed.
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => io.to_string(),
        E::NoItemsFound => "no PEM item of the expected kind in the file".into(),
        _ => "not a readable PEM file".into(),
    }
}
