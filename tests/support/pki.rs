//! A throwaway certificate authority for TLS tests: a CA, leaf
//! certificates it signs (written as PEM files), and a rustls client that
//! trusts it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use percore::config::CertificateConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

pub struct Pki {
    pub dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Pki {
    /// A new CA whose files go to a fresh temporary directory named `tag`.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("percore-pki-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "percore test CA");
        let ca_pem = params.self_signed(&key).unwrap().pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        Self {
            dir,
            ca: Issuer::new(params, key),
            ca_pem,
        }
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names`, valid from `not_before` to `not_after`
    /// (years), written as `file.pem` and `file.key`.
    pub fn leaf_between(&self, file: &str, names: &[&str], years: (i32, i32)) -> CertificateConfig {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let config = CertificateConfig {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
            names: Vec::new(),
        };
        std::fs::write(&config.cert, cert.pem()).unwrap();
        std::fs::write(&config.key, key.serialize_pem()).unwrap();
        config
    }

    /// A certificate for `names`, valid now.
    pub fn leaf(&self, file: &str, names: &[&str]) -> CertificateConfig {
        self.leaf_between(file, names, (2020, 4000))
    }

    /// A rustls client trusting this CA, offering `http/1.1`.
    pub fn client(&self) -> Arc<ClientConfig> {
        Arc::new(self.client_config(&[&rustls::version::TLS13, &rustls::version::TLS12]))
    }

    /// A client config limited to `versions`.
    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

use rustls::pki_types::pem::PemObject;

/// A TLS connection from a test client.
pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` asking for `name`, and completes the handshake.
pub fn connect(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let connection = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One response: status, headers (lower-case names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` and reads one response, `Content-Length` or chunked.
pub fn exchange(tls: &mut Tls, request: &[u8]) -> std::io::Result<Answer> {
    tls.write_all(request)?;
    tls.flush()?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = super::read_some(tls, &mut chunk)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    if chunked {
        let body = read_chunked(tls, data.split_off(head_end))?;
        return Ok(Answer {
            status,
            headers,
            body,
        });
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    while data.len() < head_end + length {
        let read = super::read_some(tls, &mut chunk)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&chunk[..read]);
    }
    Ok(Answer {
        status,
        headers,
        body: data[head_end..head_end + length].to_vec(),
    })
}

/// A chunked body (no trailers), `data` being what was read past the head.
fn read_chunked(tls: &mut Tls, mut data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Enough for a size line and, once its size is known, the chunk.
        let need = data.windows(2).position(|w| w == b"\r\n").map(|line| {
            let size = std::str::from_utf8(&data[..line]).unwrap();
            (line, usize::from_str_radix(size, 16).expect("a chunk size"))
        });
        if let Some((line, size)) = need
            && data.len() >= line + 2 + size + 2
        {
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&data[line + 2..line + 2 + size]);
            data.drain(..line + 2 + size + 2);
            continue;
        }
        let read = super::read_some(tls, &mut chunk)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&chunk[..read]);
    }
}
