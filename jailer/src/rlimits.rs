//! Resource limits of the vmm: `--resource-limit fsize=BYTES|no-file=N`.

use nix::sys::resource::{setrlimit, Resource};

use crate::error::{Context, Error, Result, Step};

/// no-file limit when none is given (as Firecracker's jailer).
pub const DEFAULT_NO_FILE: u64 = 2048;

/// One resource limit (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    /// Largest file the vmm may write, in bytes (RLIMIT_FSIZE).
    Fsize(u64),
    /// Most open file descriptors (RLIMIT_NOFILE).
    NoFile(u64),
}

impl Rlimit {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::new(Step::Validate, format!("--resource-limit {s:?}"), why);
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| bad("expected RESOURCE=VALUE"))?;
        let value: u64 = value
            .parse()
            .map_err(|_| bad("VALUE must be a non-negative integer"))?;
        match name {
            "fsize" => Ok(Rlimit::Fsize(value)),
            "no-file" => Ok(Rlimit::NoFile(value)),
            _ => Err(bad("RESOURCE must be fsize or no-file")),
        }
    }

    /// Applies the limit to the calling process.
    pub fn apply(self) -> Result<()> {
        let (res, name, v) = match self {
            Rlimit::Fsize(v) => (Resource::RLIMIT_FSIZE, "fsize", v),
            Rlimit::NoFile(v) => (Resource::RLIMIT_NOFILE, "no-file", v),
        };
        setrlimit(res, v, v).at(Step::Rlimit, format!("{name}={v}"))
    }
}

/// Parses all limits; adds the default no-file limit when none is given.
pub fn parse_all(args: &[String]) -> Result<Vec<Rlimit>> {
    let mut out = args
        .iter()
        .map(|s| Rlimit::parse(s))
        .collect::<Result<Vec<_>>>()?;
    if !out.iter().any(|r| matches!(r, Rlimit::NoFile(_))) {
        out.push(Rlimit::NoFile(DEFAULT_NO_FILE));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(Rlimit::parse("fsize=100").unwrap(), Rlimit::Fsize(100));
        assert_eq!(Rlimit::parse("no-file=64").unwrap(), Rlimit::NoFile(64));
        for bad in ["fsize", "fsize=-1", "nofile=3", "fsize=1k", "=1"] {
            assert!(Rlimit::parse(bad).is_err(), "{bad}");
        }
        let all = parse_all(&["fsize=1".to_string()]).unwrap();
        assert_eq!(all, vec![Rlimit::Fsize(1), Rlimit::NoFile(DEFAULT_NO_FILE)]);
    }
}
