//! The image config (the parts a launch needs) and how it combines with a container
//! definition, as ECS/Docker do: the container definition's values win.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{ErrorKind, Failure};

/// What the image says about how to run it (from the OCI image config's `config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` as `KEY=VALUE` strings, in image order.
    pub env: Vec<String>,
    /// `WorkingDir` (empty: not set).
    pub working_dir: String,
    /// `User` (empty: not set).
    pub user: String,
}

/// The image config file fields we read.
#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
struct RunConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// A parsed image config file: the run config plus the layers' uncompressed digests.
#[derive(Debug, Clone)]
pub(crate) struct ParsedConfig {
    pub config: ImageConfig,
    pub diff_ids: Vec<String>,
}

/// Parses an image config blob, refusing images that are not linux/amd64.
pub(crate) fn parse_config(data: &[u8]) -> Result<ParsedConfig, Failure> {
    let f: ConfigFile = serde_json::from_slice(data).map_err(|e| {
        Failure::new(
            ErrorKind::BadContent,
            format!("image config is not valid JSON: {e}"),
        )
    })?;
    if (!f.os.is_empty() && f.os != "linux")
        || (!f.architecture.is_empty() && f.architecture != "amd64")
    {
        return Err(Failure::new(
            ErrorKind::Platform,
            format!(
                "image is {}/{}, this host runs linux/amd64",
                f.os, f.architecture
            ),
        ));
    }
    let rc = f.config.unwrap_or_default();
    Ok(ParsedConfig {
        config: ImageConfig {
            entrypoint: rc.entrypoint.unwrap_or_default(),
            cmd: rc.cmd.unwrap_or_default(),
            env: rc.env.unwrap_or_default(),
            working_dir: rc.working_dir.unwrap_or_default(),
            user: rc.user.unwrap_or_default(),
        },
        diff_ids: f.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
    })
}

/// The container definition's run settings (empty / `None`: not given).
#[derive(Debug, Clone, Default)]
pub struct ContainerOverrides<'a> {
    /// `entryPoint`.
    pub entry_point: &'a [String],
    /// `command`.
    pub command: &'a [String],
    /// `environment` as (name, value).
    pub environment: &'a [(String, String)],
    /// `workingDirectory`.
    pub working_directory: Option<&'a str>,
    /// `user`.
    pub user: Option<&'a str>,
}

/// The final process settings of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Final entry point.
    pub entry_point: Vec<String>,
    /// Final command (arguments after the entry point).
    pub command: Vec<String>,
    /// Final environment.
    pub environment: BTreeMap<String, String>,
    /// Working directory, if any.
    pub working_directory: Option<String>,
    /// User, if any.
    pub user: Option<String>,
}

impl ProcessSpec {
    /// `entry_point ++ command`: what is executed.
    pub fn argv(&self) -> Vec<String> {
        self.entry_point
            .iter()
            .chain(self.command.iter())
            .cloned()
            .collect()
    }
}

impl ImageConfig {
    /// Combines the image config with a container definition like Docker/ECS:
    /// an `entryPoint` replaces the image's Entrypoint and drops its Cmd; a `command`
    /// replaces the Cmd; environment variables override the image's by name;
    /// `workingDirectory` and `user` replace the image's.
    pub fn merge(&self, c: &ContainerOverrides<'_>) -> ProcessSpec {
        let (entry_point, command) = match (c.entry_point.is_empty(), c.command.is_empty()) {
            (true, true) => (self.entrypoint.clone(), self.cmd.clone()),
            (true, false) => (self.entrypoint.clone(), c.command.to_vec()),
            (false, _) => (c.entry_point.to_vec(), c.command.to_vec()),
        };
        let mut environment = BTreeMap::new();
        for kv in &self.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            if !k.is_empty() {
                environment.insert(k.to_string(), v.to_string());
            }
        }
        for (k, v) in c.environment {
            environment.insert(k.clone(), v.clone());
        }
        let pick = |over: Option<&str>, image: &str| {
            over.filter(|s| !s.is_empty())
                .map(str::to_string)
                .or_else(|| (!image.is_empty()).then(|| image.to_string()))
        };
        ProcessSpec {
            entry_point,
            command,
            environment,
            working_directory: pick(c.working_directory, &self.working_dir),
            user: pick(c.user, &self.user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: v(&["/bin/sh", "-c"]),
            cmd: v(&["echo hi"]),
            env: v(&["PATH=/bin", "A=1", "EMPTY="]),
            working_dir: "/srv".into(),
            user: "nobody".into(),
        }
    }

    #[test]
    fn image_defaults_apply() {
        let p = image().merge(&ContainerOverrides::default());
        assert_eq!(p.argv(), v(&["/bin/sh", "-c", "echo hi"]));
        assert_eq!(p.environment["A"], "1");
        assert_eq!(p.environment["EMPTY"], "");
        assert_eq!(p.working_directory.as_deref(), Some("/srv"));
        assert_eq!(p.user.as_deref(), Some("nobody"));
    }

    #[test]
    fn container_definition_wins() {
        let cmd = v(&["echo bye"]);
        let p = image().merge(&ContainerOverrides {
            command: &cmd,
            ..Default::default()
        });
        assert_eq!(p.argv(), v(&["/bin/sh", "-c", "echo bye"]));
        let ep = v(&["/bin/httpd", "-f"]);
        let p = image().merge(&ContainerOverrides {
            entry_point: &ep,
            ..Default::default()
        });
        assert_eq!(
            p.argv(),
            v(&["/bin/httpd", "-f"]),
            "entryPoint drops image Cmd"
        );
        let env = vec![("A".to_string(), "2".to_string())];
        let p = image().merge(&ContainerOverrides {
            entry_point: &ep,
            command: &cmd,
            environment: &env,
            working_directory: Some("/tmp"),
            user: Some("1000:1000"),
        });
        assert_eq!(p.argv(), v(&["/bin/httpd", "-f", "echo bye"]));
        assert_eq!(p.environment["A"], "2");
        assert_eq!(p.environment["PATH"], "/bin");
        assert_eq!(p.working_directory.as_deref(), Some("/tmp"));
        assert_eq!(p.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn parses_config_and_refuses_other_platforms() {
        let cfg = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["X=y"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let p = parse_config(cfg).unwrap();
        assert_eq!(p.config.cmd, v(&["sh"]));
        assert_eq!(p.diff_ids, v(&["sha256:aa"]));
        let arm = br#"{"architecture":"arm64","os":"linux"}"#;
        assert_eq!(parse_config(arm).unwrap_err().kind, ErrorKind::Platform);
        assert_eq!(
            parse_config(b"nope").unwrap_err().kind,
            ErrorKind::BadContent
        );
    }
}
