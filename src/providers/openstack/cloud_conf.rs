//! The cloud configuration the Cinder CSI driver reads (`cloud.conf`, gcfg format, section
//! `[Global]`), made from the same credentials forgectl uses (clouds.yaml or `OS_*`). It holds a
//! password or application-credential secret: it only ever goes into a Kubernetes Secret.

use openstack_sdk::config::CloudConfig;
use secrecy::ExposeSecret;

use super::OpenStackError;
use super::client::cloud_config;
use crate::inventory::OpenStackProvider;

/// A gcfg value, quoted: `"` and `\` escaped, no line breaks.
fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `cloud.conf` for the cloud of `settings`.
pub fn cloud_conf(settings: &OpenStackProvider) -> Result<String, OpenStackError> {
    let (name, config) = cloud_config(settings)?;
    render(&name, &config)
}

/// `cloud.conf` for `config` (named `name` in errors).
pub fn render(name: &str, config: &CloudConfig) -> Result<String, OpenStackError> {
    let auth = config
        .auth
        .as_ref()
        .ok_or_else(|| OpenStackError::Config(format!("cloud `{name}` has no auth section")))?;
    let mut keys: Vec<(&str, String)> = Vec::new();
    let mut put = |k: &'static str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            keys.push((k, v.to_string()));
        }
    };
    put("auth-url", auth.auth_url.as_deref());
    put("user-id", auth.user_id.as_deref());
    put("username", auth.username.as_deref());
    put(
        "password",
        auth.password.as_ref().map(|p| p.expose_secret()),
    );
    put("user-domain-id", auth.user_domain_id.as_deref());
    put("user-domain-name", auth.user_domain_name.as_deref());
    put("tenant-id", auth.project_id.as_deref());
    put("tenant-name", auth.project_name.as_deref());
    put("tenant-domain-id", auth.project_domain_id.as_deref());
    put("tenant-domain-name", auth.project_domain_name.as_deref());
    put("domain-id", auth.domain_id.as_deref());
    put("domain-name", auth.domain_name.as_deref());
    put(
        "application-credential-id",
        auth.application_credential_id.as_deref(),
    );
    put(
        "application-credential-name",
        auth.application_credential_name.as_deref(),
    );
    put(
        "application-credential-secret",
        auth.application_credential_secret
            .as_ref()
            .map(|s| s.expose_secret()),
    );
    put("region", config.region_name.as_deref());
    put("ca-file", config.cacert.as_deref());
    if config.verify == Some(false) {
        put("tls-insecure", Some("true"));
    }
    if !keys.iter().any(|(k, _)| *k == "auth-url") {
        return Err(OpenStackError::Config(format!(
            "cloud `{name}` has no auth_url"
        )));
    }
    let mut out = String::from("[Global]\n");
    for (k, v) in keys {
        if v.contains('\n') {
            return Err(OpenStackError::Config(format!(
                "cloud `{name}`: {k} has a line break"
            )));
        }
        out.push_str(&format!("{k} = {}\n", quoted(&v)));
    }
    out.push_str("\n[BlockStorage]\n# Nova and Cinder zones often differ: volumes follow the node's zone.\nignore-volume-az = true\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_keeps_only_what_is_set() {
        let mut c = CloudConfig::default();
        let mut auth = openstack_sdk::config::Auth {
            auth_url: Some("http://127.0.0.1:5000/v3".into()),
            username: Some("demo".into()),
            project_name: Some("proj \"x\"".into()),
            user_domain_name: Some("Default".into()),
            ..Default::default()
        };
        auth.password = Some("p\\w".to_string().into());
        c.auth = Some(auth);
        c.region_name = Some("RegionOne".into());
        let s = render("t", &c).unwrap();
        assert!(
            s.starts_with("[Global]\nauth-url = \"http://127.0.0.1:5000/v3\"\n"),
            "{s}"
        );
        assert!(s.contains("password = \"p\\\\w\"\n"), "{s}");
        assert!(s.contains("tenant-name = \"proj \\\"x\\\"\"\n"), "{s}");
        assert!(s.contains("region = \"RegionOne\"\n"), "{s}");
        assert!(!s.contains("application-credential"), "{s}");
        c.auth = Some(openstack_sdk::config::Auth::default());
        assert!(render("t", &c).is_err());
    }
}
