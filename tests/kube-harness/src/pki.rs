//! Certificates and keys of the test control plane: a CA, the apiserver's serving certificate
//! (127.0.0.1 and localhost) and the service-account token signing key.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// PEM texts written into the cluster directory.
pub struct Pki {
    /// CA certificate (clients trust it).
    pub ca_cert: String,
    /// Serving certificate of the apiserver.
    pub serving_cert: String,
    /// Its key.
    pub serving_key: String,
    /// Service-account signing key (PKCS#8 ECDSA P-256).
    pub service_account_key: String,
    /// Its public key (the apiserver verifies tokens with it).
    pub service_account_public_key: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

/// Generates fresh keys and certificates.
pub fn generate() -> Result<Pki, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kube-harness-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec!["localhost".to_owned()])?;
    serving
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    let service_account_key = KeyPair::generate()?;
    Ok(Pki {
        ca_cert: ca_cert.pem(),
        serving_cert: serving_cert.pem(),
        serving_key: serving_key.serialize_pem(),
        service_account_key: service_account_key.serialize_pem(),
        service_account_public_key: service_account_key.public_key_pem(),
    })
}
