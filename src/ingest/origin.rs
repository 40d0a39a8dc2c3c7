//! What the route records of where a batch came from, and which apps may send.

use crate::setting;

/// At most this many allowed apps: each one is a label value of the metrics.
pub const MAX_ALLOWED_APPS: usize = 100;
/// Longest app name (the batch's `app.name` is bounded the same way).
const MAX_APP_NAME_BYTES: usize = 128;

setting::component! {
    /// The batch's origin: apps and the client's address.
    pub struct OriginConfig {
        /// keep the client's address as `client.address` in the log line and the export (off: privacy)
        record_client_address: bool = false,
        /// apps a batch may name (`app.name`), comma-separated, at most 100; a batch naming another app is refused (403). Also the only values of the metrics' `app` label. Empty: any app, and no `app` label
        #[serde(deserialize_with = "setting::comma_list")]
        allowed_apps: Vec<String> = Vec::new(),
    }
}

#[derive(Debug, Clone, Default)]
pub struct OriginSettings {
    pub record_client_address: bool,
    /// Empty: any app.
    pub allowed_apps: Vec<String>,
}

impl OriginConfig {
    pub fn resolve(&self) -> Result<OriginSettings, setting::Error> {
        let apps = &self.allowed_apps;
        if apps.len() > MAX_ALLOWED_APPS {
            let reason = format!("at most {MAX_ALLOWED_APPS} apps (each is a metrics label value)");
            return Err(setting::invalid_key("allowed_apps", &apps.join(","), &reason));
        }
        for app in apps {
            if app.len() > MAX_APP_NAME_BYTES || app == "other" {
                let reason = format!("an app name is 1 to {MAX_APP_NAME_BYTES} bytes, and not `other`");
                return Err(setting::invalid_key("allowed_apps", app, &reason));
            }
        }
        Ok(OriginSettings { record_client_address: self.record_client_address, allowed_apps: apps.clone() })
    }
}
