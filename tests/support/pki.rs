//! Certificates made by the tests themselves (rcgen): a trusted CA, a server certificate
//! for 127.0.0.1 and localhost, a client certificate, and an untrusted CA with a client
//! certificate of its own, as PEM files in a scratch folder that goes when dropped.
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub struct Pki {
    pub dir: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A certificate for `names` signed by `issuer`, and its key, both PEM.
fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("params")
        .signed_by(&key, issuer)
        .expect("signed");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Files: ca.pem, rogue-ca.pem, server.pem/.key, client.pem/.key (signed by ca.pem),
    /// stranger.pem/.key (signed by rogue-ca.pem).
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("backprop-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let (trusted, rogue) = (ca("backprop test CA"), ca("someone else's CA"));
        let server = leaf(&trusted, &["127.0.0.1", "localhost"]);
        let client = leaf(&trusted, &["client.test"]);
        let stranger = leaf(&rogue, &["stranger.test"]);
        for (name, pem) in [
            ("ca.pem", trusted.pem()),
            ("rogue-ca.pem", rogue.pem()),
            ("server.pem", server.0),
            ("server.key", server.1),
            ("client.pem", client.0),
            ("client.key", client.1),
            ("stranger.pem", stranger.0),
            ("stranger.key", stranger.1),
        ] {
            std::fs::write(dir.join(name), pem).expect("write PEM");
        }
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A path as a command-line argument.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("utf-8 path").to_string()
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read PEM")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
