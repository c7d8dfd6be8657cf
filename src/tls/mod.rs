//! TLS with rustls: certificates loaded and checked at start and on every
//! reload, a `ServerConfig` built once per load and shared by the shards
//! (each with its own session cache, all with one ticketer so a session
//! resumes on any shard). The stream that drives a `ServerConnection` over
//! a shard's socket is a transport (`transport::tls`).
//!
//! Provider: aws-lc-rs, rustls's default, for its x86-64 assembly (AES-GCM,
//! `ChaCha20`, P-256 and `X25519`); see `bench/README.md` for the handshake
//! figures it gives here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

use crate::config::{CertificateConfig, Problem, TlsConfig};

/// What a shard needs to serve TLS: the config every connection starts
/// from (its session cache is replaced per shard when the shard takes it).
#[derive(Clone)]
pub(crate) struct TlsSettings {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) handshake_timeout: std::time::Duration,
    /// Sessions each shard remembers.
    session_cache: usize,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings").finish_non_exhaustive()
    }
}

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl TlsSettings {
    /// The same settings with a session cache of this shard's own.
    pub(crate) fn for_shard(&self) -> Self {
        let mut config = (*self.config).clone();
        config.session_storage = ServerSessionMemoryCache::new(self.session_cache.max(1));
        Self {
            config: Arc::new(config),
            handshake_timeout: self.handshake_timeout,
            session_cache: self.session_cache,
        }
    }
}

/// The ticket keys every shard shares (so a ticket from one shard resumes
/// on another), rotated every 6 hours; a ticket stays valid for 12.
pub(crate) fn ticketer() -> Result<Arc<dyn ProducesTickets>, String> {
    rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| format!("cannot make TLS ticket keys: {e}"))
}

/// Loads every certificate of `config` and builds the server config;
/// `None` when TLS is not configured. Every problem names its file. With
/// `http2`, ALPN offers `h2` before `http/1.1`.
pub(crate) fn load(
    config: &TlsConfig,
    ticketer: &Arc<dyn ProducesTickets>,
    http2: bool,
) -> Result<Option<TlsSettings>, Vec<Problem>> {
    if config.listen.is_empty() {
        return Ok(None);
    }
    let provider = Arc::new(provider());
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for (i, certificate) in config.certificate.iter().enumerate() {
        match load_one(certificate, &provider) {
            Ok(key) => loaded.push((certificate, key)),
            Err(why) => problems.push(Problem::new(format!("tls.certificate[{i}]"), why)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let resolver =
        Resolver::new(&loaded).map_err(|why| vec![Problem::new("tls.certificate", why)])?;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| vec![Problem::new("tls", e.to_string())])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    server.ignore_client_order = true;
    server.ticketer = Arc::clone(ticketer);
    server.max_early_data_size = 0;
    server.send_tls13_tickets = 2;
    server.session_storage = ServerSessionMemoryCache::new(config.session_cache.max(1));
    Ok(Some(TlsSettings {
        config: Arc::new(server),
        handshake_timeout: std::time::Duration::from_secs(config.handshake_timeout_secs),
        session_cache: config.session_cache,
    }))
}

/// aws-lc-rs with AES-128-GCM-SHA256 first: SHA-256 runs on the CPU's SHA
/// instructions where SHA-384 does not, and a TLS 1.3 handshake hashes its
/// transcript and derives every key with the suite's hash (measured in
/// `bench/README.md`). The server's order is used, not the client's.
pub(crate) fn provider() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite as suite;
    CryptoProvider {
        cipher_suites: vec![
            suite::TLS13_AES_128_GCM_SHA256,
            suite::TLS13_AES_256_GCM_SHA384,
            suite::TLS13_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

/// One certificate: chain, key, matching each other, valid now.
fn load_one(
    certificate: &CertificateConfig,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = read_chain(&certificate.cert)?;
    let key = read_key(&certificate.key)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unusable private key ({e})", certificate.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        format!(
            "{} does not match the certificate {}: give the key the certificate was issued for",
            certificate.key.display(),
            certificate.cert.display()
        )
    })?;
    check_validity(&certified.cert[0], &certificate.cert)?;
    Ok(Arc::new(certified))
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain ({e})", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\")",
            path.display()
        ));
    }
    Ok(chain)
}

pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "{}: no private key in it (PKCS#8, RSA or EC PEM expected: {e})",
            path.display()
        )
    })
}

/// Refuses a leaf certificate outside its validity period.
fn check_validity(leaf: &CertificateDer<'_>, path: &Path) -> Result<(), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("{}: cannot parse the certificate ({e})", path.display()))?;
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    if validity.not_after < now {
        return Err(format!(
            "{}: the certificate expired on {}; renew it",
            path.display(),
            validity.not_after
        ));
    }
    if validity.not_before > now {
        return Err(format!(
            "{}: the certificate is not valid before {}",
            path.display(),
            validity.not_before
        ));
    }
    Ok(())
}

/// The DNS names a certificate is for (its subject alternative names).
fn dns_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Picks the certificate for the name a client asks for: exact names, then
/// `*.domain` wildcards, else the default (the first configured).
#[derive(Debug)]
struct Resolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl Resolver {
    fn new(loaded: &[(&CertificateConfig, Arc<CertifiedKey>)]) -> Result<Self, String> {
        let default = loaded
            .first()
            .map(|(_, key)| Arc::clone(key))
            .ok_or("needs at least one certificate")?;
        let mut by_name = HashMap::new();
        for (config, key) in loaded {
            let names = if config.names.is_empty() {
                dns_names(&key.cert[0])
            } else {
                config
                    .names
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect()
            };
            for name in names {
                by_name.entry(name).or_insert_with(|| Arc::clone(key));
            }
        }
        Ok(Self { default, by_name })
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(Arc::clone(&self.default));
        };
        let name = name.to_ascii_lowercase();
        let wildcard = name
            .split_once('.')
            .map(|(_, parent)| format!("*.{parent}"));
        self.by_name
            .get(&name)
            .or_else(|| wildcard.and_then(|w| self.by_name.get(&w)))
            .or(Some(&self.default))
            .cloned()
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (development),
/// written as PEM to `dir`; returns the certificate and key paths and the
/// certificate's SHA-256 fingerprint.
///
/// # Errors
/// When the files cannot be written.
pub(crate) fn dev_certificate(dir: &Path) -> std::io::Result<(CertificateConfig, String)> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let cert = dir.join("dev-cert.pem");
    let key = dir.join("dev-key.pem");
    std::fs::write(&cert, certified.cert.pem())?;
    std::fs::write(&key, certified.signing_key.serialize_pem())?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certified.cert.der());
    let fingerprint = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok((
        CertificateConfig {
            cert,
            key,
            names: Vec::new(),
        },
        fingerprint,
    ))
}
