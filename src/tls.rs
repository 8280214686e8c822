//! TLS 1.3 for the QUIC port: the server's certificate (from the config, or self-signed in
//! the data dir on first start) and the client's verification (a CA file, a pinned SHA-256
//! fingerprint, or the certificate the local broker keeps in its data dir). There is no
//! way to skip verification.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::wire::ALPN;

/// Where `serve` keeps its self-signed certificate, inside the data dir.
pub const CERT_FILE: &str = "tls/cert.pem";
/// Its key.
pub const KEY_FILE: &str = "tls/key.pem";

/// The crypto provider (ring), chosen explicitly so no process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Normalises a fingerprint as people write it (`AB:CD...`, `abcd...`).
pub fn parse_fingerprint(s: &str) -> Result<String, String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "'{s}' is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        ));
    }
    Ok(hex)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

/// The server's certificate chain and key: the configured files, or the self-signed pair
/// in `data_dir` (made on first start, for `localhost`, `127.0.0.1` and `::1`).
pub fn server_identity(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        _ => {
            let (c, k) = (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE));
            if !c.exists() || !k.exists() {
                make_self_signed(&c, &k)?;
            }
            (c, k)
        }
    };
    let certs = read_certs(&cert)?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    Ok((certs, key))
}

fn make_self_signed(cert: &Path, key: &Path) -> Result<(), String> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    write_private(key, ck.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, ck.cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    tracing::info!("made a self-signed certificate in {}", cert.display());
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Where the stateless-reset secret is kept, inside the data dir.
pub const RESET_KEY_FILE: &str = "tls/reset.key";

/// The endpoint's stateless-reset key, kept in the data dir so that a restarted broker
/// can reset its predecessor's connections at once (clients then reconnect immediately
/// instead of waiting for their idle timeout).
/// Returns the HMAC key and a key for the connection-ID generator (whose IDs the restarted
/// broker must recognise as its own to answer them with a reset).
pub fn reset_key(data_dir: &Path) -> Result<(ring::hmac::Key, u64), String> {
    let path = data_dir.join(RESET_KEY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => b,
        Ok(_) => return Err(format!("{} is not a 32-byte key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = vec![0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                .map_err(|_| "the system random generator failed".to_string())?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            write_private(&path, &b)?;
            b
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut cid = [0u8; 8];
    cid.copy_from_slice(&ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()[..8]);
    Ok((
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes),
        u64::from_le_bytes(cid),
    ))
}

/// The rustls server config: TLS 1.3 only, ALPN `cortex/1`, no 0-RTT.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, String> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("bad certificate or key: {e}"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // 0-RTT data can be replayed: never accept it.
    tls.max_early_data_size = 0;
    Ok(tls)
}

/// How a client decides to trust the server.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Certificates signed by a CA in this PEM file (and valid for the server name).
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint (a cluster's nodes: their
    /// fingerprints, comma-separated).
    Fingerprint(String),
    /// Exactly the certificate in this PEM file (the local broker's, by default).
    CertFile(PathBuf),
}

impl Trust {
    /// The default: the certificate `serve` keeps in the data dir `data_dir`.
    pub fn local(data_dir: &Path) -> Trust {
        Trust::CertFile(data_dir.join(CERT_FILE))
    }
}

/// The SHA-256 fingerprint of the first certificate in a PEM file.
pub fn fingerprint_of(path: &Path) -> Result<String, String> {
    Ok(fingerprint(&read_certs(path)?[0]))
}

/// The rustls client config for `trust`.
pub fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let mut tls = match trust {
        Trust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(path)? {
                roots
                    .add(c)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Fingerprint(f) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprints: f
                    .split(',')
                    .map(|one| parse_fingerprint(one.trim()))
                    .collect::<Result<_, _>>()?,
                provider,
            }))
            .with_no_client_auth(),
        Trust::CertFile(path) => {
            let certs = read_certs(path).map_err(|e| {
                format!(
                    "{e}; start `cortex serve` here first, or pass --ca FILE or --fingerprint SHA256"
                )
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    fingerprints: vec![fingerprint(&certs[0])],
                    provider,
                }))
                .with_no_client_auth()
        }
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    Ok(tls)
}

/// Cluster links (`src/cluster/net.rs`): TLS 1.3 with ALPN `alpn`, a self-signed
/// certificate made at start, and any server certificate accepted *as long as its
/// handshake signature verifies*: nodes authenticate each other afterwards with the cluster
/// secret, bound to this TLS session's exporter, so a man in the middle (two sessions, two
/// exporters) cannot pass.
pub fn cluster_configs(
    alpn: &[u8],
) -> Result<(rustls::ServerConfig, rustls::ClientConfig), String> {
    let ck = rcgen::generate_simple_self_signed(vec!["cortex-cluster".to_string()])
        .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .map_err(|e| format!("bad generated key: {e}"))?;
    let mut server = server_config(vec![ck.cert.der().clone()], key)?;
    server.alpn_protocols = vec![alpn.to_vec()];
    let provider = provider();
    let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprints: Vec::new(),
            provider,
        }))
        .with_no_client_auth();
    client.alpn_protocols = vec![alpn.to_vec()];
    client.enable_early_data = false;
    Ok((server, client))
}

/// Trusts exactly the certificates with these SHA-256 fingerprints (none listed: any
/// certificate, for cluster links, which authenticate by the cluster secret), and still
/// checks that the server holds its key (the handshake signature).
#[derive(Debug)]
struct Pinned {
    fingerprints: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        if self.fingerprints.is_empty() || self.fingerprints.contains(&got) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate has fingerprint {got}, not the pinned {}",
                self.fingerprints.join(" or ")
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not allowed".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse() {
        let f = "AB:".repeat(31) + "AB";
        assert_eq!(parse_fingerprint(&f).unwrap(), "ab".repeat(32));
        assert!(parse_fingerprint("abc").is_err());
        assert_eq!(fingerprint(b"").len(), 64);
    }

    #[test]
    fn self_signed_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, _) = server_identity(None, None, dir.path()).unwrap();
        let (c2, k) = server_identity(None, None, dir.path()).unwrap();
        assert_eq!(c1, c2);
        server_config(c2, k).unwrap();
        client_config(&Trust::local(dir.path())).unwrap();
        let missing = client_config(&Trust::local(&dir.path().join("nope"))).unwrap_err();
        assert!(missing.contains("start `cortex serve`"), "{missing}");
    }
}
