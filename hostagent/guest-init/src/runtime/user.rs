//! Resolves a container's `user` (`uid[:gid]` or `name[:group]`) against the image's
//! /etc/passwd and /etc/group, without NSS (the guest init is a static binary).

/// A user or group name the image does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
}

/// Credentials a container process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

/// (name, gid, members)
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` (None = root) given the contents of /etc/passwd and /etc/group (empty
/// strings when the image has none).
pub fn resolve(spec: Option<&str>, passwd: &str, group: &str) -> Result<Ids, UserError> {
    let spec = spec.unwrap_or("0");
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid, home, name) = if let Ok(uid) = user.parse::<u32>() {
        match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, e.home.to_string(), Some(e.name.to_string())),
            None => (uid, 0, "/".to_string(), None),
        }
    } else {
        let e = passwd_entries(passwd)
            .find(|e| e.name == user)
            .ok_or_else(|| UserError::UnknownUser(user.to_string()))?;
        (e.uid, e.gid, e.home.to_string(), Some(e.name.to_string()))
    };
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|(n, _, _)| *n == g)
                .map(|(_, id, _)| id)
                .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?,
        };
    }
    let mut groups = vec![gid];
    if let (Some(name), None) = (&name, grp) {
        for (_, id, members) in group_entries(group) {
            if members.contains(&name.as_str()) && !groups.contains(&id) {
                groups.push(id);
            }
        }
    }
    Ok(Ids {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nweb:x:1000:1000::/home/web:/bin/sh\nbroken line\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nweb:x:1000:\nwheel:x:10:web,root\n";

    #[test]
    fn resolves_names_numbers_and_groups() {
        assert_eq!(
            resolve(None, PASSWD, GROUP).unwrap(),
            Ids {
                uid: 0,
                gid: 0,
                groups: vec![0, 10],
                home: "/root".into()
            }
        );
        let web = resolve(Some("web"), PASSWD, GROUP).unwrap();
        assert_eq!(
            (web.uid, web.gid, web.groups.clone(), web.home.as_str()),
            (1000, 1000, vec![1000, 10], "/home/web")
        );
        assert_eq!(
            resolve(Some("nobody:wheel"), PASSWD, GROUP).unwrap().gid,
            10
        );
        let n = resolve(Some("4242:7"), PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (4242, 7, "/"));
        assert_eq!(resolve(Some("65534"), PASSWD, GROUP).unwrap().gid, 65534);
        assert_eq!(resolve(Some("7"), "", "").unwrap().gid, 0);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(resolve(Some("ghost"), PASSWD, GROUP)
            .unwrap_err()
            .to_string()
            .contains("ghost"));
        assert!(resolve(Some("web:ghosts"), PASSWD, GROUP)
            .unwrap_err()
            .to_string()
            .contains("ghosts"));
    }
}
