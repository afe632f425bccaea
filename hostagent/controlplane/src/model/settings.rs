//! Account settings (`PutAccountSetting`, ...): their names, the values each takes,
//! and the defaults of an account that set none.

use serde::{Deserialize, Serialize};

/// An account setting as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSetting {
    /// The setting (`containerInsights`, ...).
    pub name: String,
    /// Its value.
    pub value: String,
    /// Whose it is: an IAM user or role, or the root user (whose settings are the
    /// account's defaults).
    pub principal_arn: String,
    /// `user` (set by a caller) or `aws_managed` (the default of an account).
    #[serde(rename = "type")]
    pub kind: String,
}

/// Every setting served: its name, the values it takes, and its default.
pub const ACCOUNT_SETTINGS: &[(&str, &[&str], &str)] = &[
    // Only the long ARN formats are served: "disabled" is refused.
    ("serviceLongArnFormat", &["enabled"], "enabled"),
    ("taskLongArnFormat", &["enabled"], "enabled"),
    ("containerInstanceLongArnFormat", &["enabled"], "enabled"),
    ("awsvpcTrunking", &["enabled", "disabled"], "disabled"),
    (
        "containerInsights",
        &["enabled", "disabled", "enhanced"],
        "disabled",
    ),
    ("tagResourceAuthorization", &["on", "off"], "on"),
    ("fargateTaskRetirementWaitPeriod", &["0", "7", "14"], "7"),
    ("fargateFIPSMode", &["enabled", "disabled"], "disabled"),
    ("guardDutyActivate", &["on", "off"], "off"),
    (
        "defaultLogDriverMode",
        &["blocking", "non-blocking"],
        "non-blocking",
    ),
];

/// The values `name` takes and its default, if it is a setting served.
pub fn setting(name: &str) -> Option<(&'static [&'static str], &'static str)> {
    ACCOUNT_SETTINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, d)| (*v, *d))
}

/// The root user of `account`: its settings are every principal's defaults.
pub fn root_principal(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}
