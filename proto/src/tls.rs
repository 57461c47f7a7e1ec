//! TLS (rustls) for the agents' and the coordinator's servers and their clients: the `[tls]`
//! config section, and its conversion to tonic's configs. Optional: without it, plain HTTP/2.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// `[tls]` of a server's config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain the server presents.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub key_file: PathBuf,
    /// PEM CA that client certificates must chain to (mutual TLS); default none.
    pub client_ca_file: Option<PathBuf>,
}

/// Selects rustls' ring provider for the process. Several providers are compiled in (object
/// store's HTTP client brings its own), so rustls cannot choose one by itself; installing twice
/// is harmless.
fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading the TLS {what} {}: {e}", path.display()))
}

impl ServerTls {
    /// Reads the files into tonic's server config.
    ///
    /// # Errors
    /// A file that cannot be read, named.
    pub fn load(&self) -> Result<ServerTlsConfig, String> {
        ensure_crypto_provider();
        let identity = Identity::from_pem(
            read(&self.cert_file, "certificate")?,
            read(&self.key_file, "key")?,
        );
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca_file {
            config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
        }
        Ok(config)
    }
}

/// A tonic server builder, serving TLS when `tls` is given (the agents' and the coordinator's
/// servers differ only in their service).
///
/// # Errors
/// The TLS config is rejected.
pub fn server_builder(
    tls: Option<ServerTlsConfig>,
) -> Result<tonic::transport::Server, tonic::transport::Error> {
    let builder = tonic::transport::Server::builder();
    match tls {
        Some(tls) => builder.tls_config(tls),
        None => Ok(builder),
    }
}

/// A client config trusting `ca_file`, checking the server's name as `domain` (default: the
/// host of the address).
///
/// # Errors
/// The CA file cannot be read.
pub fn client(ca_file: Option<&Path>, domain: Option<&str>) -> Result<ClientTlsConfig, String> {
    ensure_crypto_provider();
    let mut config = match ca_file {
        Some(ca_file) => {
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca_file, "CA")?))
        }
        // A server with a certificate from a public or company CA the system trusts.
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let Some(domain) = domain {
        config = config.domain_name(domain);
    }
    Ok(config)
}

/// Whether `listen` (`ip:port`, `[ip]:port` or `localhost:port`) is a loopback address, where
/// plain text is no risk.
pub fn is_loopback(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen.starts_with("localhost:"),
    }
}
