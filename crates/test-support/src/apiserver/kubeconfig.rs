//! Kubeconfig files for clients of the test API server, shaped like the ones real clusters
//! hand out: k3s's `/etc/rancher/k3s/k3s.yaml` (CA, client certificate and key inlined as
//! base64 `*-data` fields) and a service-account style bearer-token kubeconfig.

/// Standard base64 (RFC 4648, with padding), as kubeconfig `*-data` fields use.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn document(server: &str, ca_pem: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\n\
         clusters:\n\
         - cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: default\n\
         contexts:\n\
         - context:\n    cluster: default\n    user: default\n  name: default\n\
         current-context: default\n\
         kind: Config\n\
         preferences: {{}}\n\
         users:\n\
         - name: default\n  user:\n{user}",
        ca = base64(ca_pem.as_bytes()),
    )
}

/// A kubeconfig as k3s writes it: cluster `default` at `server` with the CA inlined, user
/// `default` with an inlined client certificate and key.
pub fn with_client_cert(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    document(
        server,
        ca_pem,
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            base64(cert_pem.as_bytes()),
            base64(key_pem.as_bytes())
        ),
    )
}

/// A kubeconfig with a bearer token (as made for a service account) and the CA inlined.
pub fn with_token(server: &str, ca_pem: &str, token: &str) -> String {
    document(server, ca_pem, &format!("    token: {token}\n"))
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
    }
}
