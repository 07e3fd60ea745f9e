//! health::checker::http — HTTP_GET and SSL_GET as keepalived runs them
//! (`check_http.c`): one connection per URL, `GET <path> HTTP/1.0` with
//! `User-Agent: KeepAliveClient` and `Host: <virtualhost or ip:port>`,
//! read until EOF with `connect_timeout` per I/O, then the status line
//! against `status_code` (default 200-299) and the MD5 of the body against
//! `digest`. An empty reply is a failure. Replies are read up to 1 MiB;
//! longer bodies fail rather than grow without bound.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{connect, io_reason, Check, Outcome, Url};

/// Longest reply read.
const MAX_REPLY: usize = 1 << 20;

/// Runs every URL of the check in turn; the first failure is the result.
pub async fn check(check: &Check, tls: bool, urls: &[Url], host: &str) -> Outcome {
    let mut last = Outcome::fail("no url");
    for url in urls {
        let reply = match fetch(check, tls, &url.path, host).await {
            Ok(reply) => reply,
            Err(reason) => return Outcome::fail(reason),
        };
        last = judge(&reply, url);
        if !last.ok {
            return last;
        }
    }
    last
}

/// keepalived's request.
pub fn request(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\n\r\n")
}

/// Judges a whole reply (header and body) against a URL's expectations.
pub fn judge(reply: &[u8], url: &Url) -> Outcome {
    if reply.is_empty() {
        return Outcome::fail("empty reply");
    }
    let Some(head_end) = reply.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Outcome::fail("no end of header");
    };
    let status_line = reply[..head_end]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or(&[]);
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    let Some(status) = status else {
        return Outcome::fail("no status line");
    };
    let accepted = if url.status.is_empty() {
        (200..=299).contains(&status)
    } else {
        url.status.iter().any(|r| (r.0..=r.1).contains(&status))
    };
    if !accepted {
        return Outcome::fail(format!("status {status}"));
    }
    if let Some(want) = &url.digest {
        let body = &reply[head_end + 4..];
        let got: String = Md5::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if &got != want {
            return Outcome::fail(format!("digest {got}"));
        }
    }
    Outcome::pass(format!("status {status}"))
}

/// One request over a new connection; the whole reply.
async fn fetch(check: &Check, tls: bool, path: &str, host: &str) -> Result<Vec<u8>, String> {
    let stream = connect(check.connect, check.bind, check.timeout).await?;
    let req = request(path, host);
    if tls {
        // SNI: the virtualhost's name; an address (or ip:port) names no host.
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let name = ServerName::try_from(bare.trim_matches(['[', ']']).to_string())
            .unwrap_or_else(|_| ServerName::IpAddress(check.connect.ip().into()));
        let connector = tokio_rustls::TlsConnector::from(client_config()?);
        let tls_stream = tokio::time::timeout(check.timeout, connector.connect(name, stream))
            .await
            .map_err(|_| "TLS handshake timeout".to_string())?
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(tls_stream, req.as_bytes(), check.timeout).await
    } else {
        exchange(stream, req.as_bytes(), check.timeout).await
    }
}

/// Writes the request, reads to EOF, each I/O within `limit`.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    req: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, String> {
    tokio::time::timeout(limit, stream.write_all(req))
        .await
        .map_err(|_| "write timeout".to_string())?
        .map_err(|e| io_reason(&e))?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => return Err("read timeout".to_string()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Ok(Err(e)) => return Err(io_reason(&e)),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return Ok(reply);
        }
        if reply.len() + n > MAX_REPLY {
            return Err("reply longer than 1 MiB".to_string());
        }
        reply.extend_from_slice(&buf[..n]);
    }
}

/// The TLS client configuration: ring's provider, TLS 1.2 and 1.3, and a
/// verifier that accepts any certificate (keepalived does not verify). Built
/// once; an error (no usable protocol version) fails every SSL_GET with it.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // ring rather than aws-lc-rs (no cmake/C toolchain build); its
            // lack of post-quantum key exchange does not matter to a probe.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .map(|b| {
                    Arc::new(
                        b.dangerous()
                            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                            .with_no_client_auth(),
                    )
                })
                .map_err(|e| format!("TLS: {e}"))
        })
        .clone()
}

/// Accepts any server certificate (SSL_GET checks the service, not its
/// identity, as keepalived); handshake signatures are still verified.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::conf::StatusCode;

    fn url(status: Vec<StatusCode>, digest: Option<&str>) -> Url {
        Url {
            path: "/".to_string(),
            status,
            digest: digest.map(str::to_string),
        }
    }

    #[test]
    fn status_must_be_in_status_code_default_2xx() {
        let ok = b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n";
        let bad = b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy";
        assert!(judge(ok, &url(vec![], None)).ok);
        assert_eq!(judge(bad, &url(vec![], None)), Outcome::fail("status 503"));
        assert!(
            judge(
                bad,
                &url(vec![StatusCode(200, 200), StatusCode(500, 599)], None)
            )
            .ok
        );
        assert!(!judge(ok, &url(vec![StatusCode(200, 200)], None)).ok);
        assert_eq!(judge(b"", &url(vec![], None)), Outcome::fail("empty reply"));
    }

    #[test]
    fn digest_is_md5_of_the_body_after_the_header() {
        // md5("hello\n") = b1946ac92492d2347c6235b4d2611184
        let reply = b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";
        assert!(
            judge(
                reply,
                &url(vec![], Some("b1946ac92492d2347c6235b4d2611184"))
            )
            .ok
        );
        let other = judge(
            reply,
            &url(vec![], Some("00000000000000000000000000000000")),
        );
        assert_eq!(
            other,
            Outcome::fail("digest b1946ac92492d2347c6235b4d2611184")
        );
    }

    #[test]
    fn request_is_keepalived_s() {
        assert_eq!(
            request("/health", "10.0.0.1:80"),
            "GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 10.0.0.1:80\r\n\r\n"
        );
    }
}
