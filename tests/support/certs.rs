//! A private certificate authority made by the test with the `openssl` command: a server
//! certificate for 127.0.0.1 and localhost, and a client certificate, both signed by it. Files live
//! in a temporary directory removed when dropped.

use std::{path::PathBuf, process::Command, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

pub struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    pub fn generate(name: &str) -> TestCa {
        let dir = std::env::temp_dir().join(format!("ct-ca-{name}-{}-{}", std::process::id(), super::free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa { dir };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        ca.openssl(
            &["req", "-x509"],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"],
            &[
                "-subj",
                &format!("/CN={name} test CA"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        for (leaf, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            ca.openssl(
                &["req"],
                &ec,
                &["-keyout", &format!("{leaf}.key"), "-out", &format!("{leaf}.csr")],
                &["-subj", &format!("/CN={leaf}")],
            );
            let ext = format!(
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
            );
            std::fs::write(ca.dir.join(format!("{leaf}.ext")), ext).unwrap();
            ca.openssl(
                &["x509", "-req"],
                &[],
                &["-in", &format!("{leaf}.csr"), "-out", &format!("{leaf}.crt")],
                &[
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{leaf}.ext"),
                ],
            );
        }
        ca
    }

    fn openssl(&self, command: &[&str], key: &[&str], files: &[&str], rest: &[&str]) {
        let output = Command::new("openssl")
            .current_dir(&self.dir)
            .args(command)
            .args(key)
            .args(files)
            .args(rest)
            .output()
            .expect("the openssl command is needed by these tests; scripts/test.sh installs it");
        assert!(output.status.success(), "openssl {command:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// `ca.crt`, `server.crt`, `server.key`, `client.crt`, `client.key`.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// A rustls server configuration with the server certificate; when `clients` is set, only clients
    /// with a certificate from this CA are let in.
    pub fn server_config(&self, clients: bool) -> Arc<rustls::ServerConfig> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.path("server.crt")).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).unwrap();
        let builder = rustls::ServerConfig::builder();
        let builder = if clients {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_file(self.path("ca.crt")).unwrap()).unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap(),
            )
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(builder.with_single_cert(chain, key).unwrap())
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
