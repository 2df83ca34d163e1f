//! TLS with rustls: server configurations from PEM files, client
//! configurations with the system's roots or your own. ALPN is always
//! `http/1.1`: the WebSocket handshake is an HTTP/1.1 request.

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const ALPN_HTTP11: &[u8] = b"http/1.1";

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A rustls server configuration from a PEM certificate chain and a PEM
/// private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config_from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> io::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the PEM data"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid(format!("private key PEM: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(invalid)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// [`server_config_from_pem`] reading the two files.
pub fn server_config_from_files(cert_path: &Path, key_path: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let cert =
        std::fs::read(cert_path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", cert_path.display())))?;
    let key = std::fs::read(key_path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", key_path.display())))?;
    server_config_from_pem(&cert, &key)
}

/// A client configuration that trusts exactly the PEM certificates given
/// (for private CAs and tests).
pub fn client_config_with_roots(roots_pem: &[u8]) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        roots.add(cert.map_err(|e| invalid(format!("root PEM: {e}")))?).map_err(invalid)?;
    }
    client_config(roots)
}

/// The default client configuration: the operating system's trusted roots,
/// loaded once per process.
pub fn default_client_config() -> io::Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                return Err(format!("no usable system root certificates ({:?})", loaded.errors));
            }
            client_config(roots).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(invalid)
}

fn client_config(roots: RootCertStore) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}
