//! `pouch login`: checks credentials against a registry before storing them.

use super::auth::Credentials;
use super::pull::PullError;

/// Checks `creds` against `registry` (`GET /v2/` with basic auth, or the bearer-token flow
/// the registry asks for). `insecure` allows plain HTTP and unverified TLS.
pub async fn check(registry: &str, creds: &Credentials, insecure: bool) -> Result<(), PullError> {
    super::pull::init_tls();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure)
        .connect_timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| PullError::Other(format!("HTTP client: {e}")))?;
    let mut last = None;
    let schemes: &[&str] = if insecure {
        &["https", "http"]
    } else {
        &["https"]
    };
    for scheme in schemes {
        let url = format!("{scheme}://{registry}/v2/");
        let res = client
            .get(&url)
            .basic_auth(&creds.username, Some(&creds.password))
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            Err(e) => {
                last = Some(PullError::Registry(format!("cannot reach {url}: {e}")));
                continue;
            }
        };
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = res
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if challenge.to_ascii_lowercase().starts_with("bearer") {
                // Token flow: ask the token server with the credentials.
                let reference = oci_client::Reference::with_tag(
                    registry.to_string(),
                    "library/pouch-login-check".into(),
                    "latest".into(),
                );
                let oc = oci_client::Client::new(oci_client::client::ClientConfig {
                    protocol: if *scheme == "http" {
                        oci_client::client::ClientProtocol::Http
                    } else {
                        oci_client::client::ClientProtocol::Https
                    },
                    accept_invalid_certificates: insecure,
                    ..Default::default()
                });
                return oc
                    .auth(
                        &reference,
                        &oci_client::secrets::RegistryAuth::Basic(
                            creds.username.clone(),
                            creds.password.clone(),
                        ),
                        oci_client::RegistryOperation::Pull,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| PullError::Unauthorized {
                        registry: registry.to_string(),
                        repository: "(login)".into(),
                        hint: format!("the token server refused them: {e}"),
                    });
            }
            return Err(PullError::Unauthorized {
                registry: registry.to_string(),
                repository: "(login)".into(),
                hint: "check the user name and password".into(),
            });
        }
        return Err(PullError::Registry(format!(
            "{url} answered {status}; is {registry} an OCI registry?"
        )));
    }
    Err(last.unwrap_or_else(|| PullError::Other("no scheme tried".into())))
}
