//! The value rules of the ECS model that several fields share: names, images, ARNs,
//! network ids, tags, environment variables, ports. Each check returns the refusal's
//! message, naming the field (its path in the request, `containerDefinitions[0].name`).

/// A refusal message.
pub type Rule = Result<(), String>;

/// Names of families, containers, clusters, services, volumes: 1-255 letters, digits,
/// `-`, `_`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// [`is_valid_name`], as a rule on `field`.
pub fn name(field: &str, s: &str) -> Rule {
    if is_valid_name(s) {
        return Ok(());
    }
    Err(format!(
        "Invalid {field}: up to 255 letters (uppercase and lowercase), numbers, underscores, \
         and hyphens are allowed."
    ))
}

/// At most `max` characters, none of them a control character (NUL included).
pub fn text(field: &str, s: &str, max: usize) -> Rule {
    if s.chars().count() > max {
        return Err(format!("Invalid {field}: at most {max} characters."));
    }
    if s.chars().any(char::is_control) {
        return Err(format!(
            "Invalid {field}: control characters are not allowed."
        ));
    }
    Ok(())
}

/// Not empty, and [`text`].
pub fn required_text(field: &str, s: &str, max: usize) -> Rule {
    if s.is_empty() {
        return Err(format!("{field} should not be null or empty."));
    }
    text(field, s, max)
}

/// One of `allowed`.
pub fn one_of(field: &str, s: &str, allowed: &[&str]) -> Rule {
    if allowed.contains(&s) {
        return Ok(());
    }
    Err(format!(
        "Invalid {field} '{}': must be one of {}.",
        shorten(s),
        allowed.join(", ")
    ))
}

/// `lo..=hi`.
pub fn range(field: &str, v: i64, lo: i64, hi: i64) -> Rule {
    if (lo..=hi).contains(&v) {
        return Ok(());
    }
    Err(format!("Invalid {field} {v}: must be {lo} to {hi}."))
}

/// A value as it may appear in a message: at most 64 characters of it.
pub fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

/// An image reference: 1-255 letters, digits, and `-_:./#@`.
pub fn image(field: &str, s: &str) -> Rule {
    if s.trim().is_empty() {
        return Err(format!("{field} should not be null or empty."));
    }
    let ok = s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:./#@".contains(&b));
    if ok {
        return Ok(());
    }
    Err(format!(
        "Invalid {field} '{}': up to 255 letters (uppercase and lowercase), numbers, hyphens, \
         underscores, colons, periods, forward slashes, at signs and number signs are allowed.",
        shorten(s)
    ))
}

/// An ARN: `arn:partition:service:region:account:resource`, at most 2048 characters,
/// no whitespace or control characters.
pub fn arn(field: &str, s: &str) -> Rule {
    let ok = s.len() <= 2048
        && s.starts_with("arn:")
        && s.splitn(6, ':').count() == 6
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        return Ok(());
    }
    Err(format!(
        "Invalid {field} '{}': not a valid ARN.",
        shorten(s)
    ))
}

/// An IAM role: an ARN, or a role name (1-64 of letters, digits, `+=,.@_-`).
pub fn role(field: &str, s: &str) -> Rule {
    if s.starts_with("arn:") {
        return arn(field, s);
    }
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        return Ok(());
    }
    Err(format!(
        "Invalid {field} '{}': not a role ARN or name.",
        shorten(s)
    ))
}

/// A network id: `prefix` then 1-32 letters, digits, hyphens (`subnet-0a1b2c3d`,
/// `sg-web`); at most `prefix.len() + 32` characters in all.
pub fn network_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        (1..=32).contains(&rest.len())
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Characters of tag keys and values: letters, digits, spaces and `+-=._:/@`.
fn tag_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c))
}

/// A tag key a caller sets or removes: 1-128 characters, not starting with `aws:`
/// (reserved for the tags ECS manages).
pub fn tag_key(field: &str, k: &str) -> Rule {
    if k.is_empty() || k.chars().count() > 128 || !tag_chars(k) {
        return Err(format!(
            "Invalid {field} '{}': 1 to 128 letters, numbers, spaces and + - = . _ : / @.",
            shorten(k)
        ));
    }
    if k.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!(
            "Invalid {field} '{}': the aws: prefix is reserved.",
            shorten(k)
        ));
    }
    Ok(())
}

/// Tags: at most 50; keys 1-128 characters not starting with `aws:`; values at most
/// 256 characters; keys unique.
pub fn tags(field: &str, tags: &[crate::model::Tag]) -> Rule {
    if tags.len() > 50 {
        return Err(format!("Invalid {field}: at most 50 tags are allowed."));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in tags.iter().enumerate() {
        let k = &t.key;
        tag_key(&format!("{field}[{i}].key"), k)?;
        if t.value.chars().count() > 256 || !tag_chars(&t.value) {
            return Err(format!(
                "Invalid {field}[{i}].value: at most 256 letters, numbers, spaces and + - = . _ : / @."
            ));
        }
        if !seen.insert(k.as_str()) {
            return Err(format!(
                "Invalid {field}: duplicate tag key '{}'.",
                shorten(k)
            ));
        }
    }
    Ok(())
}

/// The largest environment of one container (names and values, bytes).
pub const MAX_ENVIRONMENT_BYTES: usize = 32 * 1024;

/// Environment variables: names 1-255 characters without `=`; no control characters
/// in names, no NUL in values; at most [`MAX_ENVIRONMENT_BYTES`] in all.
pub fn environment(field: &str, env: &[crate::model::KeyValuePair]) -> Rule {
    let mut total = 0;
    for (i, e) in env.iter().enumerate() {
        required_text(&format!("{field}[{i}].name"), &e.name, 255)?;
        if e.name.contains('=') {
            return Err(format!("Invalid {field}[{i}].name: '=' is not allowed."));
        }
        if e.value.contains('\0') {
            return Err(format!("Invalid {field}[{i}].value: NUL is not allowed."));
        }
        total += e.name.len() + e.value.len();
    }
    if total > MAX_ENVIRONMENT_BYTES {
        return Err(format!(
            "Invalid {field}: {total} bytes of names and values, more than {MAX_ENVIRONMENT_BYTES}."
        ));
    }
    Ok(())
}

/// Strings of a command or entry point: no NUL.
pub fn argv(field: &str, args: &[String]) -> Rule {
    match args.iter().position(|a| a.contains('\0')) {
        Some(i) => Err(format!("Invalid {field}[{i}]: NUL is not allowed.")),
        None => Ok(()),
    }
}

/// A port, 0-65535.
pub fn port(field: &str, p: i64) -> Rule {
    range(field, p, 0, 65535)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tag;

    #[test]
    fn names() {
        assert!(is_valid_name("scorekeep-api_1"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(256)));
        assert!(name("family", "a/b").unwrap_err().contains("family"));
    }

    #[test]
    fn network_ids() {
        assert!(network_id("subnet-0a1b2c3d", "subnet-"));
        assert!(network_id("sg-web", "sg-"));
        assert!(!network_id("subnet-", "subnet-"));
        assert!(!network_id(
            &format!("subnet-{}", "a".repeat(249)),
            "subnet-"
        ));
        assert!(!network_id("subnet-a b", "subnet-"));
        assert!(!network_id("vpc-1", "subnet-"));
    }

    #[test]
    fn arns_and_roles() {
        assert!(arn("x", "arn:aws:iam::111122223333:role/r").is_ok());
        assert!(arn("x", "arn:aws:iam").is_err());
        assert!(arn("x", &format!("arn:aws:iam::1:role/{}", "r".repeat(2048))).is_err());
        assert!(role("x", "ecsTaskExecutionRole").is_ok());
        assert!(role("x", "bad role").is_err());
    }

    #[test]
    fn tag_rules() {
        let t = |k: &str, v: &str| Tag {
            key: k.into(),
            value: v.into(),
        };
        assert!(tags("tags", &[t("team", "a b:c")]).is_ok());
        assert!(tags("tags", &[t("aws:x", "")]).is_err());
        assert!(tags("tags", &[t("", "")]).is_err());
        assert!(tags("tags", &[t("k", &"v".repeat(257))]).is_err());
        assert!(tags("tags", &[t("k", "v"), t("k", "w")]).is_err());
        let many: Vec<Tag> = (0..51).map(|i| t(&format!("k{i}"), "")).collect();
        assert!(tags("tags", &many).is_err());
    }

    #[test]
    fn environments() {
        use crate::model::KeyValuePair as Kv;
        let e = |n: &str, v: &str| Kv {
            name: n.into(),
            value: v.into(),
        };
        assert!(environment("environment", &[e("A", "b=c")]).is_ok());
        assert!(environment("environment", &[e("A=B", "")]).is_err());
        assert!(environment("environment", &[e("", "x")]).is_err());
        assert!(environment("environment", &[e("A", "\0")]).is_err());
        assert!(environment("environment", &[e("A", &"x".repeat(40_000))]).is_err());
    }
}
