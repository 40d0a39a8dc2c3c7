//! TLS material from files: a private certificate authority to trust and an optional client
//! certificate (mutual TLS), for Redis and for the OTLP collector.
//!
//! Files are read and checked once, at start-up, so a bad path or PEM stops the gateway with the name
//! of the setting; what is kept is the PEM text, which both the `redis` crate and rustls take.

use std::{fmt, sync::Arc};

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// Which settings name the files, for error messages (e.g. `CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CA_FILE`).
pub struct FileSettings<'a> {
    pub ca: (&'a str, &'a str),
    pub client_cert: (&'a str, &'a str),
    pub client_key: (&'a str, &'a str),
}

/// A file that could not be used: the setting that named it, the path, and why.
#[derive(Debug)]
pub struct TlsFileError {
    pub setting: String,
    pub path: String,
    pub reason: String,
}

/// Loaded and checked PEM: `None` where the setting was empty.
#[derive(Clone, Default)]
pub struct TlsFiles {
    /// Trusted instead of the bundled web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Certificate chain and private key presented to the server.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client_pem.is_some())
            .finish()
    }
}

impl TlsFiles {
    /// Reads the files the settings name (empty: not set). A client certificate needs its key and the
    /// reverse; the pair must match.
    pub fn load(files: &FileSettings<'_>) -> Result<Self, TlsFileError> {
        let ca_pem = match files.ca.1.trim() {
            "" => None,
            path => Some(read_certificates(files.ca.0, path)?.0),
        };
        let client_pem = match (files.client_cert.1.trim(), files.client_key.1.trim()) {
            ("", "") => None,
            (_, "") => return Err(missing(files.client_key.0, files.client_cert.0)),
            ("", _) => return Err(missing(files.client_cert.0, files.client_key.0)),
            (cert_path, key_path) => {
                let (cert_pem, chain) = read_certificates(files.client_cert.0, cert_path)?;
                let key_pem = read(files.client_key.0, key_path)?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsFileError {
                    setting: files.client_key.0.to_string(),
                    path: key_path.to_string(),
                    reason: format!("no PEM private key: {error}"),
                })?;
                // Building a configuration checks that the key belongs to the certificate.
                ClientConfig::builder()
                    .with_root_certificates(RootCertStore::empty())
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| TlsFileError {
                        setting: files.client_key.0.to_string(),
                        path: key_path.to_string(),
                        reason: format!("does not go with {}: {error}", files.client_cert.0),
                    })?;
                Some((cert_pem, key_pem))
            }
        };
        Ok(Self { ca_pem, client_pem })
    }

    pub fn is_empty(&self) -> bool {
        self.ca_pem.is_none() && self.client_pem.is_none()
    }

    /// For the `redis` crate (`rediss://` only).
    pub fn redis_certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client_pem
                .clone()
                .map(|(client_cert, client_key)| redis::ClientTlsConfig { client_cert, client_key }),
            root_cert: self.ca_pem.clone(),
        }
    }

    /// A rustls client configuration: the CA if set, else the bundled web roots; the client
    /// certificate if set. The files were checked by `load`, so this does not fail.
    pub fn rustls_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        match &self.ca_pem {
            Some(pem) => {
                roots.add_parsable_certificates(CertificateDer::pem_slice_iter(pem).flatten());
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let config = match &self.client_pem {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert).flatten().collect();
                let key = PrivateKeyDer::from_pem_slice(key).expect("checked by load");
                builder.with_client_auth_cert(chain, key).expect("checked by load")
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

fn missing(setting: &str, because: &str) -> TlsFileError {
    TlsFileError { setting: setting.to_string(), path: String::new(), reason: format!("required with {because}") }
}

fn read(setting: &str, path: &str) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|error| TlsFileError {
        setting: setting.to_string(),
        path: path.to_string(),
        reason: format!("cannot read: {error}"),
    })
}

/// The file's text, and its certificates (at least one).
fn read_certificates(setting: &str, path: &str) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), TlsFileError> {
    let pem = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok((pem, certs)),
        Ok(_) => Err(TlsFileError {
            setting: setting.to_string(),
            path: path.to_string(),
            reason: "no PEM certificate in the file".into(),
        }),
        Err(error) => Err(TlsFileError {
            setting: setting.to_string(),
            path: path.to_string(),
            reason: format!("not a PEM certificate: {error}"),
        }),
    }
}
